"""Steering the outbox: the Queue and Incomplete views, operations on one action, the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select

from hub import audit, operations, queries
from hub import explain as explanation
from hub.api import Blueprint, authenticate, current_actor, current_store, db_session, runtime
from hub.api.actions import page
from hub.api.paging import page_of
from hub.models import Action, AuditEntry, Flow
from schemas.actions import ActionOut
from schemas.outbox import (
    AuditPage,
    AuditQuery,
    CancelIn,
    DelayIn,
    ExplainOut,
    IncompletePage,
    IncompleteQuery,
    QueuePage,
    QueueQuery,
    ReplayIn,
    encode_queue_cursor,
)

blp = Blueprint("outbox", __name__, description="Steer the outbox: the Queue, Incomplete, and operations on actions.")
blp.before_request(authenticate)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
QUEUE_STATES = ("pending", "held")
INCOMPLETE_STATES = ("cancelled", "skipped", "failed")


def flow_names(actions: list[Action]) -> dict[int, str]:
    ids = {a.flow_id for a in actions if a.flow_id}
    if not ids:
        return {}
    return {fid: name for fid, name in db_session().execute(select(Flow.id, Flow.name).where(Flow.id.in_(ids)))}


def row(action: Action, flows: dict[int, str]) -> dict[str, Any]:
    return {
        "id": action.id,
        "state": action.state,
        "run_at": action.run_at,
        "scheduled_at": action.scheduled_at,
        "kind": action.kind,
        "app": action.app,
        "channel": action.channel,
        "event_name": action.event_name,
        "target": action.target,
        "order_id": action.order_id,
        "flow_id": action.flow_id,
        "flow": flows.get(action.flow_id) if action.flow_id else None,
        "trigger": action.trigger,
        "reason_code": action.reason_code,
        "reason_text": action.reason_text,
        "caused_by": action.caused_by,
        "updated_at": action.updated_at,
        "attempts": action.attempt_count,
    }


def rows(actions: list[Action]) -> list[dict[str, Any]]:
    flows = flow_names(actions)
    return [row(a, flows) for a in actions]


@blp.route("/queue", methods=["GET"])
@blp.arguments(QueueQuery, location="query")
@blp.response(200, QueuePage)
def queue(query: dict[str, Any]) -> Any:
    """The Queue: pending and held actions, soonest first, through the shared filter."""
    f = {**query, "state": query.get("state") or list(QUEUE_STATES)}
    statement = queries.queue(current_store().id, f)
    if query.get("cursor"):
        micros, last_id = query["cursor"]
        at = EPOCH + timedelta(microseconds=micros)
        run_at, action_id = queries.QUEUE_ORDER
        statement = statement.where(or_(run_at > at, and_(run_at == at, action_id > last_id)))
    found = list(db_session().scalars(statement.order_by(*queries.QUEUE_ORDER).limit(query["limit"] + 1)))
    more = len(found) > query["limit"]
    found = found[: query["limit"]]
    cursor = None
    if more and found:
        last = found[-1]
        cursor = encode_queue_cursor((last.run_at - EPOCH) // timedelta(microseconds=1), last.id)
    return {"data": rows(found), "next_cursor": cursor}


@blp.route("/incomplete", methods=["GET"])
@blp.arguments(IncompleteQuery, location="query")
@blp.response(200, IncompletePage)
def incomplete(query: dict[str, Any]) -> Any:
    """Incomplete: cancelled, skipped and failed actions with their reason and who caused it, newest first."""
    f = {**query, "state": query.get("state") or list(INCOMPLETE_STATES)}
    found, cursor = page(queries.actions(current_store().id, f), query)
    return {"data": rows(found), "next_cursor": cursor}


def _operate(action_id: int, operation: str, params: dict[str, Any]) -> Action:
    return operations.operate(
        runtime(), db_session(), current_store().id, action_id, operation, params, current_actor()
    )


CONFLICT = "The action is in a state this operation cannot change; the body names its current state."


@blp.route("/actions/<int:action_id>/send-now", methods=["POST"])
@blp.response(202, ActionOut)
@blp.alt_response(404, description="No such action in this store")
@blp.alt_response(409, description=CONFLICT)
def send_now(action_id: int) -> Any:
    """Send a pending or held action now, ahead of the dispatcher's poll."""
    return _operate(action_id, "send_now", {})


@blp.route("/actions/<int:action_id>/delay", methods=["POST"])
@blp.arguments(DelayIn)
@blp.response(200, ActionOut)
@blp.alt_response(404, description="No such action in this store")
@blp.alt_response(409, description=CONFLICT)
def delay(data: dict[str, Any], action_id: int) -> Any:
    """Delay a pending or held action by N days, or until a time."""
    return _operate(action_id, "delay", data)


@blp.route("/actions/<int:action_id>/cancel", methods=["POST"])
@blp.arguments(CancelIn)
@blp.response(200, ActionOut)
@blp.alt_response(404, description="No such action in this store")
@blp.alt_response(409, description=CONFLICT)
def cancel(data: dict[str, Any], action_id: int) -> Any:
    """Cancel a pending or held action, with a reason. Queued and sending actions are already in a worker's
    hands and cannot be cancelled."""
    return _operate(action_id, "cancel", data)


@blp.route("/actions/<int:action_id>/restore", methods=["POST"])
@blp.response(200, ActionOut)
@blp.alt_response(404, description="No such action in this store")
@blp.alt_response(409, description=CONFLICT)
def restore(action_id: int) -> Any:
    """Put a cancelled action back in the Queue, while its time has not passed."""
    return _operate(action_id, "restore", {})


@blp.route("/actions/<int:action_id>/replay", methods=["POST"])
@blp.arguments(ReplayIn)
@blp.response(202, ActionOut)
@blp.alt_response(404, description="No such action in this store")
@blp.alt_response(409, description=CONFLICT)
def replay(data: dict[str, Any], action_id: int) -> Any:
    """Send a failed, skipped or delivered action again, now: new attempts with the same idempotency key (the
    platform drops a repeat), or, with `new_key`, a new action with a new key."""
    return _operate(action_id, "replay", data)


@blp.route("/actions/<int:action_id>/audit", methods=["GET"])
@blp.response(200, AuditPage)
@blp.alt_response(404, description="No such action in this store")
def action_audit(action_id: int) -> Any:
    """Every manual operation on this action: who, when, what."""
    action = operations.find(db_session(), current_store().id, action_id)
    return {"data": audit.for_action(db_session(), current_store().id, action.id), "next_cursor": None}


@blp.route("/actions/<int:action_id>/explain", methods=["GET"])
@blp.response(200, ExplainOut)
@blp.alt_response(404, description="No such action in this store")
def explain(action_id: int) -> Any:
    """Why this action is where it is: every guard with the value it saw, the timing (trigger time, the
    step's delay, retries) and the attempts."""
    session = db_session()
    action = operations.find(session, current_store().id, action_id)
    return explanation.explain(runtime(), session, action)


@blp.route("/audit", methods=["GET"])
@blp.arguments(AuditQuery, location="query")
@blp.response(200, AuditPage)
def audit_log(query: dict[str, Any]) -> Any:
    """Every manual operation on the outbox, newest first."""
    statement = select(AuditEntry).where(AuditEntry.store_id == current_store().id)
    for name in ("operation", "action_id", "bulk_operation_id"):
        if query.get(name):
            statement = statement.where(getattr(AuditEntry, name) == query[name])
    return page_of(statement, AuditEntry, query)
