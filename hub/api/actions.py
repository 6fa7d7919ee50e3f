"""Reading the outbox: actions with their attempts, and the Sent → Events view."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import jsonify
from flask_smorest import Blueprint, abort
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, defer

from hub import outbox, queries
from hub.api import authenticate, current_store, db_session
from hub.api.paging import cut, keyset
from hub.models import Action, Attempt, OpenAction
from schemas.actions import ActionDetailOut, ActionOut, ActionPage, ActionsQuery, EventPage, EventsQuery, action_out
from schemas.common import MAX_ID

blp = Blueprint("actions", __name__, description="The outbox: actions and the events sent.")
blp.before_request(authenticate)

# Sent → Events shows events that went out or were tried; what only waits is in the Queue.
SENT_STATES = ("sending", "delivered", "failed")
EVENT_COLUMNS = (
    Action.id,
    Action.delivered_at,
    Action.updated_at,
    Action.event_name,
    Action.app,
    Action.target,
    Action.trigger,
    Action.state,
    Action.attempt_count,
    Action.last_status,
    Action.reason_text,
    Action.run_at,
)


# What a row of /actions shows: ActionOut's columns (its dump is schemas.actions.action_out).
ACTION_COLUMNS = tuple(getattr(Action, name) for name in ActionOut._declared_fields)


def event_status(action: Any) -> str:
    """The Events view's result: an action that was tried before and is waiting or being sent again is retrying."""
    if action.state in ("pending", "queued", "sending") and action.attempt_count:
        return "retrying"
    return action.state


def page(statement: Select[tuple[Action]], query: dict[str, Any]) -> tuple[list[Action], str | None]:
    """A page of Action objects, without the event snapshot (lists never show it)."""
    rows = db_session().scalars(keyset(statement.options(defer(Action.payload)), Action.id, query)).all()
    return cut(list(rows), query["limit"])


@blp.route("/actions", methods=["GET"])
@blp.arguments(ActionsQuery, location="query")
@blp.response(200, ActionPage)
def list_actions(query: dict[str, Any]) -> Any:
    """Actions of every state, newest first, through the shared filter."""
    statement = queries.actions(current_store().id, query)
    # Plain rows of ActionOut's columns, and JSON built here rather than through ORM objects and marshmallow, as
    # for /events: tests/test_outbox.py checks the answer is exactly what ActionPage dumps of the same actions.
    found = db_session().execute(keyset(statement.with_only_columns(*ACTION_COLUMNS), Action.id, query)).all()
    rows, cursor = cut(list(found), query["limit"])
    data = [action_out(row) for row in rows]
    return jsonify({"data": data, "next_cursor": cursor})


@blp.route("/actions/<int:action_id>", methods=["GET"])
@blp.response(200, ActionDetailOut)
@blp.alt_response(404, description="No such action in this store")
def get_action(action_id: int) -> Any:
    """One action with every attempt: the request as sent (secrets redacted) and the platform's answer."""
    if action_id > MAX_ID:  # no such row can exist; asking the database would overflow its integer type
        abort(404, message=f"No action {action_id} in this store.")
    session = db_session()
    action = session.scalars(
        select(Action).where(Action.id == action_id, Action.store_id == current_store().id)
    ).first()
    if action is None:
        abort(404, message=f"No action {action_id} in this store.")
        raise AssertionError("abort raises")  # for the type checker: flask-smorest's abort is not typed NoReturn
    attempts = session.scalars(select(Attempt).where(Attempt.action_id == action.id).order_by(Attempt.id)).all()
    action.attempt_list = attempts  # type: ignore[attr-defined]
    return action


def last_attempts(session: Session, action_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The latest attempt of each action, for a page of rows: one query, whatever the page size (the newest id
    per action comes from the (action_id, id) index)."""
    if not action_ids:
        return {}
    newest = select(func.max(Attempt.id)).where(Attempt.action_id.in_(action_ids)).group_by(Attempt.action_id)
    found = session.execute(
        select(Attempt.action_id, Attempt.started_at, Attempt.duration_ms, Attempt.http_status, Attempt.outcome)
        .where(Attempt.id.in_(newest.scalar_subquery()))
    )  # fmt: skip
    return {
        row.action_id: {
            "at": _iso(row.started_at),
            "duration_ms": row.duration_ms,
            "http_status": row.http_status,
            "outcome": row.outcome,
        }
        for row in found
    }


@blp.route("/events", methods=["GET"])
@blp.arguments(EventsQuery, location="query")
@blp.response(200, EventPage)
def list_events(query: dict[str, Any]) -> Any:
    """Sent → Events: integration events that were sent or settled, newest first."""
    store_id = current_store().id
    statement = queries.actions(store_id, {**query, "kind": "event"}).where(
        or_(Action.state.in_(SENT_STATES), Action.attempt_count > 0)
    )
    if query.get("status") == "retrying":
        waiting = ("pending", "queued", "sending")
        # Picked from open_actions, as queries.conditions does for open states: retrying actions are few beside a
        # store's delivered ones, which the store's index of actions would walk through looking for them.
        statement = statement.where(
            Action.id.in_(outbox.open_ids(OpenAction.store_id == store_id, OpenAction.state.in_(waiting))),
            Action.state.in_(waiting),
            Action.attempt_count > 0,
        )
    elif query.get("status"):
        statement = statement.where(Action.state == query["status"])
    # Plain rows of the columns shown, and JSON built here rather than through marshmallow: on a page of 50
    # that halves the call. tests/test_outbox.py checks the answer is exactly what EventPage would dump.
    found = db_session().execute(keyset(statement.with_only_columns(*EVENT_COLUMNS), Action.id, query)).all()
    rows, cursor = cut(list(found), query["limit"])
    last = last_attempts(db_session(), [a.id for a in rows if a.attempt_count])
    data = []
    for a in rows:
        status = event_status(a)
        data.append(
            {
                "id": a.id,
                "date": _iso(a.delivered_at or a.updated_at),
                "event": a.event_name,
                "app": a.app,
                "target": a.target,
                "trigger": a.trigger,
                "status": status,
                "attempts": a.attempt_count,
                "last_status": a.last_status,
                "reason_text": a.reason_text,
                "next_attempt_at": _iso(a.run_at) if status == "retrying" else None,
                "last_attempt": last.get(a.id),
            }
        )
    return jsonify({"data": data, "next_cursor": cursor})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
