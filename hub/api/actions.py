"""Reading the outbox: actions with their attempts, and the Sent → Events view."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import jsonify
from flask_smorest import abort
from sqlalchemy import Select, bindparam, func, or_, select, true
from sqlalchemy.orm import defer

from hub import outbox, queries
from hub.api import Blueprint, authenticate, current_store, db_session
from hub.api.paging import cut, keyset, keyset_parameters, named_keyset
from hub.db import sql_literal
from hub.models import Action, Attempt, OpenAction
from schemas.actions import ActionDetailOut, ActionOut, ActionPage, ActionsQuery, EventPage, EventsQuery, action_row
from schemas.common import MAX_ID

blp = Blueprint("actions", __name__, description="The outbox: actions and the events sent.")
blp.before_request(authenticate)

# Sent → Events shows events that went out or were tried; what only waits is in the Queue.
SENT_STATES = ("sending", "delivered", "failed")
EVENT_COLUMNS = (
    Action.id,
    func.coalesce(Action.delivered_at, Action.updated_at).label("date"),  # the row's date: one time to read, not two
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
# What a row of Sent → Events shows of its action's latest attempt.
LAST_ATTEMPT = (Attempt.started_at, Attempt.duration_ms, Attempt.http_status, Attempt.outcome)


# What a row of /actions shows: ActionOut's columns, in its order (schemas.actions.action_row makes its dump).
ACTION_COLUMNS = tuple(getattr(Action, name) for name in ActionOut._declared_fields)


def event_status(state: str, attempts: int) -> str:
    """The Events view's result: an action that was tried before and is waiting or being sent again is retrying."""
    if state in ("pending", "queued", "sending") and attempts:
        return "retrying"
    return state


def page(statement: Select[tuple[Action]], query: dict[str, Any]) -> tuple[list[Action], str | None]:
    """A page of Action objects, without the event snapshot (lists never show it)."""
    rows = db_session().scalars(keyset(statement.options(defer(Action.payload)), Action.id, query)).all()
    return cut(list(rows), query["limit"])


# The list statements made so far, by shape of request (which filters, states, status, whether a cursor): run again
# with the next request's values as parameters, the same statement object skips building the statement, deriving
# its cache key, and adapting the cached compiled form's result columns to a new statement's (~25 % of a page of
# /events). The shapes are few; the bound only guards against a client that tries every combination.
_statements: dict[tuple[Any, ...], Select[Any]] = {}
MAX_STATEMENTS = 512


def shaped(key: tuple[Any, ...], build: Callable[[], Select[Any]]) -> Select[Any]:
    """The statement made for ``key``, made by ``build`` the first time."""
    statement = _statements.get(key)
    if statement is None:
        if len(_statements) >= MAX_STATEMENTS:
            _statements.clear()
        statement = _statements[key] = build()
    return statement


@blp.route("/actions", methods=["GET"])
@blp.arguments(ActionsQuery, location="query")
@blp.response(200, ActionPage)
def list_actions(query: dict[str, Any]) -> Any:
    """Actions of every state, newest first, through the shared filter."""
    cursor = bool(query.get("cursor"))
    statement = shaped(
        ("actions", queries.shape(query), cursor),
        lambda: named_keyset(queries.named_actions(query).with_only_columns(*ACTION_COLUMNS), Action.id, cursor),
    )
    # Plain rows of ActionOut's columns, and JSON built here rather than through ORM objects and marshmallow, as
    # for /events: tests/test_outbox.py checks the answer is exactly what ActionPage dumps of the same actions.
    parameters = {**queries.parameters(current_store().id, query), **keyset_parameters(query)}
    found = db_session().connection().execute(statement, parameters).all()
    rows, next_cursor = cut(list(found), query["limit"])
    data = [action_row(row) for row in rows]
    return jsonify({"data": data, "next_cursor": next_cursor})


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


@blp.route("/events", methods=["GET"])
@blp.arguments(EventsQuery, location="query")
@blp.response(200, EventPage)
def list_events(query: dict[str, Any]) -> Any:
    """Sent → Events: integration events that were sent or settled, newest first."""
    f = {**query, "kind": "event"}
    wanted, cursor = query.get("status"), bool(query.get("cursor"))
    connection = db_session().connection()
    dialect = connection.dialect.name
    statement = shaped(
        ("events", dialect, queries.shape(f), wanted, cursor), lambda: events_statement(f, wanted, cursor, dialect)
    )
    parameters = {**queries.parameters(current_store().id, f), **keyset_parameters(query)}
    # Plain rows of the columns shown, and JSON built here rather than through marshmallow: on a page of 50
    # that halves the call. tests/test_outbox.py checks the answer is exactly what EventPage would dump.
    found = connection.execute(statement, parameters).all()
    rows, next_cursor = cut(list(found), query["limit"])
    data = []
    for row in rows:
        (id_, date, event, app, target, trigger, state, attempts, last_status, reason_text, run_at,
         last_at, last_duration_ms, last_http_status, last_outcome) = row  # fmt: skip
        status = event_status(state, attempts)
        data.append(
            {
                "id": id_,
                "date": _iso(date),
                "event": event,
                "app": app,
                "target": target,
                "trigger": trigger,
                "status": status,
                "attempts": attempts,
                "last_status": last_status,
                "reason_text": reason_text,
                "next_attempt_at": _iso(run_at) if status == "retrying" else None,
                "last_attempt": {
                    "at": _iso(last_at),
                    "duration_ms": last_duration_ms,
                    "http_status": last_http_status,
                    "outcome": last_outcome,
                }
                if attempts and last_at is not None
                else None,
            }
        )
    return jsonify({"data": data, "next_cursor": next_cursor})


def events_statement(f: dict[str, Any], status: str | None, cursor: bool, dialect: str) -> Select[Any]:
    """Sent → Events' statement for one shape of request, its values as parameters (``queries.parameters``,
    ``keyset_parameters``): integration events that were sent or settled, newest first, each with its latest
    attempt (``LAST_ATTEMPT``) in the same statement."""
    sent = Action.state.in_([sql_literal(state) for state in SENT_STATES])  # in the text: nothing to expand per call
    statement = queries.named_actions(f).where(or_(sent, Action.attempt_count > 0))
    if status == "retrying":
        waiting = ("pending", "queued", "sending")
        # Picked from open_actions, as queries.conditions does for open states: retrying actions are few beside a
        # store's delivered ones, which the store's index of actions would walk through looking for them.
        store: Any = bindparam("store_id")
        statement = statement.where(
            Action.id.in_(outbox.open_ids(OpenAction.store_id == store, OpenAction.state.in_(waiting))),
            Action.state.in_(waiting),
            Action.attempt_count > 0,
        )
    elif status:
        statement = statement.where(Action.state == status)
    statement = statement.with_only_columns(*EVENT_COLUMNS)
    if dialect == "postgresql":
        # One probe of the (action_id, id) index per row of the page, made only for the rows the page keeps.
        last = (
            select(*LAST_ATTEMPT)
            .where(Attempt.action_id == Action.id)
            .order_by(Attempt.id.desc())
            .limit(1)
            .lateral("last_attempt")
        )
        statement = statement.outerjoin(last, true()).add_columns(*last.c)
    else:  # SQLite has no LATERAL: a subquery per column, as cheap on its small tables
        statement = statement.add_columns(
            *(
                select(column).where(Attempt.action_id == Action.id).order_by(Attempt.id.desc()).limit(1)
                .scalar_subquery().label(column.key)
                for column in LAST_ATTEMPT
            )
        )  # fmt: skip
    return named_keyset(statement, Action.id, cursor)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
