"""Export exactly the current filter as CSV or XLSX, streamed, with no size cap.

Rows are read in keyset batches with a session of the export's own (the response outlives the request's
session). Cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage return)
are prefixed with a single quote. No secret is exported: actions hold none (credentials live encrypted on
the integration), and the payload snapshot is not part of the export.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub import queries
from hub.models import Action, Flow

if TYPE_CHECKING:
    from hub.db import Database

BATCH = 1000
XLSX_MAX_ROWS = 1_048_576  # a sheet's limit; more rows continue on the next sheet
CHUNK_BYTES = 64 * 1024
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = (
    "id",
    "created_at",
    "scheduled_at",
    "run_at",
    "state",
    "kind",
    "app",
    "channel",
    "event",
    "email",
    "phone",
    "external_id",
    "order_id",
    "flow",
    "trigger",
    "reason_code",
    "reason",
    "caused_by",
    "attempts",
    "last_status",
    "delivered_at",
    "idempotency_key",
)


def safe(value: Any) -> Any:
    """A cell no spreadsheet will evaluate (OWASP: CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def records(db: Database, store_id: int, f: dict[str, Any]) -> Iterator[list[Any]]:
    """The filtered actions as rows of COLUMNS, oldest first. Each batch is read in a short transaction of
    its own, so a long download holds no database lock (SQLite's writers would wait for it) or snapshot."""
    with db.session() as session:
        flows = {i: n for i, n in session.execute(select(Flow.id, Flow.name).where(Flow.store_id == store_id))}
    last = 0
    while True:
        with db.session() as session:
            batch = [
                _record(a, flows)
                for a in session.scalars(
                    queries.actions(store_id, f).where(Action.id > last).order_by(Action.id).limit(BATCH)
                )
            ]
        if not batch:
            return
        yield from batch
        last = batch[-1][0]


def _record(a: Action, flows: dict[int, str]) -> list[Any]:
    target = a.target or {}
    return [
        a.id,
        a.created_at,
        a.scheduled_at,
        a.run_at,
        a.state,
        a.kind,
        a.app,
        a.channel,
        a.event_name,
        target.get("email"),
        target.get("phone"),
        target.get("external_id"),
        a.order_id,
        flows.get(a.flow_id) if a.flow_id else None,
        a.trigger,
        a.reason_code,
        a.reason_text,
        a.caused_by,
        a.attempt_count,
        a.last_status,
        a.delivered_at,
        a.idempotency_key,
    ]


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else safe(value)


def csv_stream(db: Database, store_id: int, f: dict[str, Any]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for count, row in enumerate(records(db, store_id, f), 1):
        writer.writerow([_text(v) for v in row])
        if count % BATCH == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def xlsx_stream(db: Database, store_id: int, f: dict[str, Any]) -> Iterator[bytes]:
    """XLSX is a zip finished only at the end: the workbook is written row by row to a temporary file with
    xlsxwriter's constant_memory mode (one row in memory), then streamed out and removed."""
    import xlsxwriter

    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        options = {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False}
        workbook = xlsxwriter.Workbook(path, options)
        header = workbook.add_format({"bold": True})
        when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        sheet, line, sheets = None, XLSX_MAX_ROWS, 0
        for row in records(db, store_id, f):
            if line >= XLSX_MAX_ROWS:
                sheets += 1
                sheet = workbook.add_worksheet("actions" if sheets == 1 else f"actions {sheets}")
                sheet.write_row(0, 0, COLUMNS, header)
                line = 1
            assert sheet is not None
            for col, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, datetime):
                    sheet.write_datetime(line, col, value.replace(tzinfo=None), when)  # UTC
                elif isinstance(value, int | float):
                    sheet.write_number(line, col, value)
                else:
                    sheet.write_string(line, col, safe(str(value)))
            line += 1
        if sheet is None:
            workbook.add_worksheet("actions").write_row(0, 0, COLUMNS, header)
        workbook.close()
        with open(path, "rb") as file:
            while chunk := file.read(CHUNK_BYTES):
                yield chunk
    finally:
        os.unlink(path)
