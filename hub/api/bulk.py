"""Bulk operations: over ids, a filter or an uploaded CSV; dry runs, background progress, undo."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hub import bulk
from hub.api import Blueprint, authenticate, current_actor, current_store, db_session, runtime
from hub.api.outbox import rows
from hub.api.paging import page_of
from hub.models import BulkOperation
from hub.operations import OperationError
from schemas.common import PageQuery
from schemas.outbox import BulkIn, BulkOut, BulkPage, UploadFile, UploadIn

blp = Blueprint("bulk", __name__, description="Operations over many actions at once.")
blp.before_request(authenticate)

MAX_UPLOAD_ROWS = 100_000


def present(op: BulkOperation | None, preview: bulk.Preview | None = None, operation: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"dry_run": op is None}
    if op is not None:
        body.update(
            id=op.id,
            operation=op.operation,
            state=op.state,
            total=op.total,
            done=op.done,
            changed=op.changed,
            progress=round(op.done / op.total, 4) if op.total else 1.0,
            created_by=op.created_by,
            created_at=op.created_at,
            finished_at=op.finished_at,
            undo_until=op.undo_until,
            error=op.error,
        )
    else:
        body.update(id=None, operation=operation, state="dry_run", total=preview.total if preview else 0, done=0)
    if preview is not None:
        body.update(
            sample=rows(preview.sample),
            by_app=preview.by_app,
            not_applicable=preview.not_applicable,
            unmatched=preview.unmatched,
        )
    return body


def _status(op: BulkOperation | None) -> int:
    return 202 if op is not None and op.state in ("queued", "running") else 200


@blp.route("/bulk-operations", methods=["POST"])
@blp.arguments(BulkIn)
@blp.response(200, BulkOut)
@blp.alt_response(202, schema=BulkOut, description="Started as a background job: follow it at its address")
@blp.alt_response(404, description="Some ids are not actions of this store")
def create(data: dict[str, Any]) -> Any:
    """Send now, delay, cancel, restore or replay a list of ids or everything matching a filter.

    Only actions in a state the operation can change are touched (cancel: pending and held; restore: cancelled
    and not yet due; replay: failed); the others are counted in `not_applicable`. With `dry_run` nothing
    changes: the answer has the count, a sample and a per-app breakdown. More than 10,000 actions run in the
    background (202); read the progress at /bulk-operations/{id}. A bulk cancel can be undone for a day.
    """
    op, preview = bulk.start(runtime(), db_session(), current_store().id, current_actor(), data)
    return present(op, preview, data["operation"]), _status(op)


@blp.route("/bulk-operations/upload", methods=["POST"])
@blp.arguments(UploadIn, location="form")
@blp.arguments(UploadFile, location="files")
@blp.response(200, BulkOut)
@blp.alt_response(202, schema=BulkOut, description="Started as a background job")
def upload(data: dict[str, Any], files: dict[str, Any]) -> Any:
    """An operation over the actions an uploaded CSV selects: one email, phone or order id a line (a header
    row may name the column). The answer lists the rows that matched nothing."""
    raw = files["file"].read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OperationError(422, "The file is not UTF-8 text.", fields={"file": ["Upload a UTF-8 CSV."]}) from None
    parsed = bulk.read_upload(text, data.get("match"))
    if not parsed:
        raise OperationError(422, "The file has no values.", fields={"file": ["No emails, phones or order ids."]})
    if len(parsed) > MAX_UPLOAD_ROWS:
        raise OperationError(422, "Too many rows.", fields={"file": [f"At most {MAX_UPLOAD_ROWS} rows."]})
    session = db_session()
    ids, unmatched = bulk.match_upload(session, current_store().id, data["operation"], parsed)
    if not ids:
        preview = bulk.Preview(unmatched=unmatched)
        return present(None, preview, data["operation"]), 200
    op, preview = bulk.start(runtime(), session, current_store().id, current_actor(), {**data, "ids": ids})
    preview.unmatched = unmatched
    return present(op, preview, data["operation"]), _status(op)


@blp.route("/bulk-operations", methods=["GET"])
@blp.arguments(PageQuery, location="query")
@blp.response(200, BulkPage)
def list_operations(query: dict[str, Any]) -> Any:
    statement = select(BulkOperation).where(BulkOperation.store_id == current_store().id)
    found = page_of(statement, BulkOperation, query)
    return {**found, "data": [present(op) for op in found["data"]]}


@blp.route("/bulk-operations/<int:operation_id>", methods=["GET"])
@blp.response(200, BulkOut)
@blp.alt_response(404, description="No such bulk operation in this store")
def get_operation(operation_id: int) -> Any:
    """A bulk operation and its progress."""
    return present(bulk.find(db_session(), current_store().id, operation_id))


@blp.route("/bulk-operations/<int:operation_id>/undo", methods=["POST"])
@blp.response(200, BulkOut)
@blp.alt_response(409, description="Not a bulk cancel, not finished, or its undo window has closed")
def undo_operation(operation_id: int) -> Any:
    """Undo a bulk cancel: the actions it cancelled come back, unless their time has passed."""
    op, restored = bulk.undo(runtime(), db_session(), current_store().id, operation_id, current_actor())
    return {**present(op), "restored": restored}
