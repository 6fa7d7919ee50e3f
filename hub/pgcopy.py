"""Many new rows at once: COPY on PostgreSQL, with their ids taken from the table's sequence first.

A multi-row INSERT ... RETURNING of a thousand rows is one statement, but its text is long and the driver
parses it on every call (too long to be cached); COPY sends rows as data. The ids come first, in one
``SELECT nextval(...) FROM generate_series(...)``, so the caller can link rows before they are written.
Elsewhere (SQLite) the same call is a multi-row INSERT ... RETURNING.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.orm import Session

MIN_ROWS = 50  # below this a multi-row INSERT is as cheap, and needs no second query for the ids


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (every row with the same keys, no ``id``) and return their ids, in order."""
    if not rows:
        return []
    connection = session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < MIN_ROWS:
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(session.execute(statement, list(rows)).scalars())
    ids = list(
        session.execute(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
            {"table": table.name, "n": len(rows)},
        ).scalars()
    )
    names = list(rows[0])
    json_columns = {name for name in names if _is_json(table, name)}
    driver = connection.connection.driver_connection
    assert driver is not None
    columns = ", ".join(["id", *names])
    with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
        for row_id, row in zip(ids, rows, strict=True):
            copy.write_row([row_id, *(_value(row[n], n in json_columns) for n in names)])
    return ids


def _value(value: Any, is_json: bool) -> Any:
    if value is None:
        return None
    if is_json:
        return json.dumps(value)
    return value.value if isinstance(value, enum.Enum) else value  # a StrEnum goes as its value, not its name


def _is_json(table: Table, name: str) -> bool:
    column_type = table.c[name].type
    variant = getattr(column_type, "_variant_mapping", {}).get("postgresql", column_type)
    return variant.__class__.__name__ in ("JSON", "JSONB")
