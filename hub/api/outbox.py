"""Steering the outbox: the Queue and Incomplete views, operations on one action, the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import jsonify
from sqlalchemy import Select, select

from hub import audit, operations, queries
from hub import explain as explanation
from hub.api import Blueprint, authenticate, current_actor, current_store, db_session, runtime
from hub.api.actions import shaped
from hub.api.paging import cut, keyset_parameters, named_keyset, page_of
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
    IncompleteRowOut,
    QueuePage,
    QueueQuery,
    QueueRowOut,
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


# What a row of the Queue and of Incomplete shows, in QueueRowOut's and IncompleteRowOut's order, read as plain values
# (the flow's name by a join): the pages are built from them without ORM objects or marshmallow, as /events and
# /actions are; tests/test_outbox.py checks the answers are exactly what QueuePage and IncompletePage dump.
QUEUE_COLUMNS = (
    Action.id,
    Action.state,
    Action.run_at,
    Action.scheduled_at,
    Action.kind,
    Action.app,
    Action.channel,
    Action.event_name,
    Action.target,
    Action.order_id,
    Action.flow_id,
    Flow.name,
    Action.trigger,
    Action.reason_code,
    Action.reason_text,
)
QUEUE_KEYS = tuple(QueueRowOut._declared_fields)
INCOMPLETE_COLUMNS = (*QUEUE_COLUMNS, Action.caused_by, Action.updated_at, Action.attempt_count)
INCOMPLETE_KEYS = tuple(IncompleteRowOut._declared_fields)
_TIMES = {
    n
    for n, column in enumerate(INCOMPLETE_COLUMNS)
    if column in (Action.run_at, Action.scheduled_at, Action.updated_at)
}


def plain_row(keys: tuple[str, ...], values: Any) -> dict[str, Any]:
    """A Queue or Incomplete row as its schema dumps it: the times in ISO form, the rest as read."""
    row = dict(zip(keys, values, strict=True))
    for n in _TIMES:
        if n < len(keys) and values[n] is not None:
            row[keys[n]] = values[n].isoformat()
    return row


def _with_flow_names(statement: Select[Any], columns: tuple[Any, ...]) -> Select[Any]:
    return statement.with_only_columns(*columns).outerjoin(Flow, Flow.id == Action.flow_id)


@blp.route("/queue", methods=["GET"])
@blp.arguments(QueueQuery, location="query")
@blp.response(200, QueuePage)
def queue(query: dict[str, Any]) -> Any:
    """The Queue: pending and held actions, soonest first, through the shared filter."""
    f = {**query, "state": query.get("state") or list(QUEUE_STATES)}
    cursor = query.get("cursor")
    statement = shaped(
        ("queue", queries.shape(f), bool(cursor)),
        lambda: _with_flow_names(queries.named_queue(f, bool(cursor)), QUEUE_COLUMNS),
    )
    parameters = {**queries.parameters(current_store().id, f), "limit": query["limit"] + 1}
    if cursor:
        micros, last_id = cursor
        parameters.update(cursor_at=EPOCH + timedelta(microseconds=micros), cursor_id=last_id)
    found = db_session().connection().execute(statement, parameters).all()
    found, more = found[: query["limit"]], len(found) > query["limit"]
    next_cursor = None
    if more and found:
        last = found[-1]
        next_cursor = encode_queue_cursor((last.run_at - EPOCH) // timedelta(microseconds=1), last.id)
    return jsonify({"data": [plain_row(QUEUE_KEYS, row) for row in found], "next_cursor": next_cursor})


@blp.route("/incomplete", methods=["GET"])
@blp.arguments(IncompleteQuery, location="query")
@blp.response(200, IncompletePage)
def incomplete(query: dict[str, Any]) -> Any:
    """Incomplete: cancelled, skipped and failed actions with their reason and who caused it, newest first."""
    f = {**query, "state": query.get("state") or list(INCOMPLETE_STATES)}
    cursor = bool(query.get("cursor"))
    statement = shaped(
        ("incomplete", queries.shape(f), cursor),
        lambda: named_keyset(_with_flow_names(queries.named_actions(f), INCOMPLETE_COLUMNS), Action.id, cursor),
    )
    parameters = {**queries.parameters(current_store().id, f), **keyset_parameters(query)}
    found = db_session().connection().execute(statement, parameters).all()
    rows_, next_cursor = cut(list(found), query["limit"])
    return jsonify({"data": [plain_row(INCOMPLETE_KEYS, row) for row in rows_], "next_cursor": next_cursor})


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
