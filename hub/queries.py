"""The shared filter (schemas.filters.ActionFilter) as SQL: every action list, the stats, the bulk operations
and the export select through here, so "what the merchant filtered" means one thing everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from hub.models import OPEN_STATES, TARGET_KEYS, Action, OpenAction, Trigger
from hub.outbox import open_ids

DATE_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "created": Action.created_at,
    "scheduled": Action.run_at,
    "updated": Action.updated_at,
}


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def states_of(f: dict[str, Any]) -> list[str]:
    """The states a filter names (none: any state)."""
    if not f.get("state"):
        return []
    return list(f["state"]) if isinstance(f["state"], list) else [f["state"]]


def conditions(store_id: int, f: dict[str, Any]) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a filter, always scoped to one store.

    A filter on open states only (pending, held, queued, sending) also picks the ids from open_actions: no index
    of actions names the state, and a store's open actions are few beside its delivered ones."""
    return _where(store_id, f, named=False)


def named_conditions(f: dict[str, Any]) -> list[ColumnElement[bool]]:
    """``conditions`` with the store and the filter's values as bound parameters named after them (``parameters``
    gives their values): for a statement made once per ``shape`` of filter and run again with other values."""
    return _where(None, f, named=True)


def _where(store_id: int | None, f: dict[str, Any], named: bool) -> list[ColumnElement[bool]]:
    where = _conditions(store_id, f, named)
    states = states_of(f)
    if states and set(states) <= set(OPEN_STATES):
        store: Any = bindparam("store_id") if named else store_id
        where.append(Action.id.in_(open_ids(OpenAction.store_id == store, OpenAction.state.in_(states))))
    return where


# The filter's keys whose values a named statement takes as parameters (of the same name); the others (the states,
# which date) are written into the statement, and belong to its shape.
NAMED = ("kind", "app", "trigger", "order_id", "caused_by", "flow", "customer", "trigger_type", "date_from", "date_to")


def shape(f: dict[str, Any]) -> tuple[Any, ...]:
    """What a named statement of this filter depends on besides its parameters: which filters are set, the states
    and the date field. Filters with the same shape share one statement."""
    return (
        tuple(name for name in NAMED if f.get(name)),
        tuple(states_of(f)),
        f.get("date_by") or "created",
        bool(f.get("q")),
    )


def parameters(store_id: int, f: dict[str, Any]) -> dict[str, Any]:
    """The values of a named statement's parameters for this store and filter (see ``conditions``)."""
    values = {"store_id": store_id, **{name: f[name] for name in NAMED if f.get(name)}}
    if f.get("q"):
        values["q"] = _like(f["q"].strip().lower())
    return values


def _conditions(store_id: int | None, f: dict[str, Any], named: bool = False) -> list[ColumnElement[bool]]:
    def value(name: str, given: Any) -> Any:
        return bindparam(name) if named else given

    store = value("store_id", store_id)
    where: list[ColumnElement[bool]] = [Action.store_id == store]
    if states := states_of(f):
        where.append(Action.state.in_(states) if len(states) > 1 else Action.state == states[0])
    for name in ("kind", "app", "trigger", "order_id", "caused_by"):
        if f.get(name):
            where.append(getattr(Action, name) == value(name, f[name]))
    if f.get("flow"):
        where.append(Action.flow_id == value("flow", f["flow"]))
    if f.get("customer"):
        where.append(Action.customer_id == value("customer", f["customer"]))
    if f.get("trigger_type"):
        where.append(
            Action.trigger_id.in_(
                select(Trigger.id).where(
                    Trigger.store_id == store, Trigger.type == value("trigger_type", f["trigger_type"])
                )
            )
        )
    column = DATE_COLUMNS[f.get("date_by") or "created"]
    if f.get("date_from"):
        where.append(column >= value("date_from", f["date_from"]))
    if f.get("date_to"):
        where.append(column < value("date_to", f["date_to"]))
    if f.get("q"):
        pattern = value("q", _like(f["q"].strip().lower()))
        # The recipient's values, not the text of its JSON: "email" or a quote must not match every action.
        recipient = [Action.target[key].as_string().ilike(pattern, escape="\\") for key in TARGET_KEYS]
        where.append(
            or_(
                *recipient,
                Action.order_id.ilike(pattern, escape="\\"),
                Action.event_name.ilike(pattern, escape="\\"),
            )
        )
    return where


def actions(store_id: int, f: dict[str, Any]) -> Select[Any]:
    return select(Action).where(*conditions(store_id, f))


def named_actions(f: dict[str, Any]) -> Select[Any]:
    """``actions`` with its values as named parameters (``named_conditions``)."""
    return select(Action).where(*named_conditions(f))


def queue(store_id: int, f: dict[str, Any]) -> Select[Any]:
    """The Queue's rows (the filter's states, pending and held by default), to be ordered by ``QUEUE_ORDER``
    (soonest first): walked in the order of open_actions' queue index, each action fetched by its key, however
    many closed actions the store has."""
    states = states_of(f) or ["pending", "held"]
    return (
        select(Action)
        .join(OpenAction, OpenAction.action_id == Action.id)
        .where(*_conditions(store_id, {**f, "state": states}), OpenAction.store_id == store_id)
        .where(OpenAction.state.in_(states))
    )


QUEUE_ORDER = (OpenAction.run_at, OpenAction.action_id)  # the same values as the action's run_at and id


def named_queue(f: dict[str, Any], cursor: bool) -> Select[Any]:
    """``queue`` with the store and the filter's values as named parameters (``parameters``), ordered by
    ``QUEUE_ORDER``, for a statement made once per shape of filter and run again: after a cursor, the parameters
    ``cursor_at`` and ``cursor_id`` (the last row's run_at and id), and ``limit``."""
    states = states_of(f) or ["pending", "held"]
    statement = (
        select(Action)
        .join(OpenAction, OpenAction.action_id == Action.id)
        .where(*_conditions(None, {**f, "state": states}, named=True), OpenAction.store_id == bindparam("store_id"))
        .where(OpenAction.state.in_(states))
    )
    if cursor:
        run_at, action_id = QUEUE_ORDER
        at = bindparam("cursor_at", type_=OpenAction.run_at.type)
        statement = statement.where(or_(run_at > at, and_(run_at == at, action_id > bindparam("cursor_id"))))
    return statement.order_by(*QUEUE_ORDER).limit(bindparam("limit", type_=Integer))


def ids_in_batches(
    session: Session,
    store_id: int,
    f: dict[str, Any],
    *,
    batch: int = 1000,
    max_id: int | None = None,
    extra: tuple[ColumnElement[bool], ...] = (),
) -> Iterator[list[int]]:
    """Ids matching a filter, ascending, a batch at a time (keyset: rows arriving meanwhile shift nothing)."""
    last = 0
    while True:
        statement = select(Action.id).where(*conditions(store_id, f), *extra, Action.id > last)
        if max_id is not None:
            statement = statement.where(Action.id <= max_id)
        ids = list(session.scalars(statement.order_by(Action.id).limit(batch)))
        if not ids:
            return
        yield ids
        last = ids[-1]
