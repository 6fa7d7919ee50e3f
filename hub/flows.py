"""Triggers become actions: match the store's enabled flows, one action per step and app."""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from sqlalchemy import (
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from hub import guards, pgcopy, pgraw, quiet
from hub.caches import FlowConfig, StepConfig, StoreConfig, StoreConfigCache
from hub.db import Statements
from hub.models import (
    TARGET_KEYS,
    Action,
    ActionState,
    Actor,
    Customer,
    Flow,
    FlowStep,
    Integration,
    IntegrationState,
    Store,
    Suppression,
    Trigger,
    table_of,
)
from hub.stores import event_name
from schemas.events import event_payload
from schemas.triggers import ORDER_STOPPERS


class PlainRow:
    """A row being created by ingest, as plain attributes named like its table's columns (absent ones None).

    Ingest builds thousands of these per second; an ORM instance costs several times more to make and to read
    (attribute instrumentation), and ingest writes with Core statements anyway. Read like the ORM row
    (``action.id``, ``action.state``), so guards and response schemas take either."""

    COLUMNS: frozenset[str] = frozenset()

    def __init__(self, **values: Any) -> None:
        if not self.COLUMNS.issuperset(values):
            raise TypeError(f"{type(self).__name__} has no column {', '.join(set(values) - self.COLUMNS)}")
        self.__dict__.update(values)  # the others read as the class's None

    @classmethod
    def adopt(cls, values: dict[str, Any]) -> Any:
        """A row of ``values``, the dict itself: for a caller that names the columns in its own code (its tests
        check them), without the keyword arguments and the check, which cost several times more."""
        row = cls.__new__(cls)
        row.__dict__ = values
        return row


def _plain_row(name: str, table: Any) -> type[PlainRow]:
    columns = frozenset(c.key for c in table.c)
    return type(name, (PlainRow,), {"COLUMNS": columns, **dict.fromkeys(columns)})


if TYPE_CHECKING:  # typed as the ORM rows they stand in for: they have the same attributes
    NewAction = Action
    NewTrigger = Trigger
else:
    NewAction = _plain_row("NewAction", table_of(Action))
    NewTrigger = _plain_row("NewTrigger", table_of(Trigger))


R = TypeVar("R")


@dataclass
class Ingested:
    trigger: Trigger | NewTrigger
    actions: list[Action] | list[NewAction]
    duplicate: bool
    cancelled: int = 0  # actions an order.cancelled / order.refunded trigger took out of the Queue


def idempotency_key(*parts: object) -> str:
    """Deterministic: the same trigger, step and app always give the same key, across retries and replays."""
    return key_of(":".join(str(p) for p in parts))


def key_of(joined: str) -> str:
    """``idempotency_key`` of parts already joined by ":"."""
    return hashlib.sha256(joined.encode()).hexdigest()[:40]


def dedupe_key(data: dict[str, Any], header_key: str | None) -> str:
    if header_key:
        return f"key:{header_key}"
    if data["type"] == "review.submitted" and data.get("review", {}).get("id"):
        return f"{data['type']}:{data['review']['id']}"
    if data.get("order", {}).get("id"):
        return f"{data['type']}:{data['order']['id']}"
    body = json.dumps(data, sort_keys=True, default=str)
    return f"body:{hashlib.sha256(body.encode()).hexdigest()}"


def target_of(customer: dict[str, Any]) -> dict[str, str]:
    return {k: customer[k] for k in TARGET_KEYS if customer.get(k)}


def event_properties(store_name: str, data: dict[str, Any], flow: FlowConfig | None) -> dict[str, Any]:
    properties: dict[str, Any] = {"store": store_name, "trigger": data["type"]}
    if flow is not None:
        properties["flow"] = flow.name
    order = data.get("order")
    if order:
        properties["order_id"] = order["id"]
        properties["items"] = [{k: (str(v) if k == "price" else v) for k, v in item.items()} for item in order["items"]]
    if data.get("review"):
        properties["review"] = dict(data["review"])
    return properties


def ingest(
    work: Session | Statements,
    store: Store,
    data: dict[str, Any],
    header_key: str | None = None,
    *,
    cache: StoreConfigCache | None = None,
) -> Ingested:
    """Record a trigger and create its actions, or return the ones created the first time it came.

    The round trips are few, since every trigger pays for them: one query reads what ingest needs to know
    before writing (whether the trigger was seen, the customer, the store's config version, and whether
    any suppression, order stopper, review or earlier action could concern it), then one statement each
    writes the customer (when new or changed), the trigger and its actions. The caller commits.

    On PostgreSQL the customer, the trigger and its actions are one statement, so ingest can run on an autocommit
    session (``Database.statements``: no BEGIN or COMMIT round trips); an order stopper, which also cancels
    what waits for its order, then opens a transaction of its own for both. With the store's config in ``cache``
    the look-ahead and the write are one statement too (``_fold``): one round trip for the usual trigger; when what
    it reads does not allow that, it writes nothing and the path above follows from what it read. That one
    statement goes to the driver connection of ``work`` (``Database.statements``), whose session is then never made.
    """
    if isinstance(work, Session):
        work = Statements.of(work)
    key = dedupe_key(data, header_key)
    customer_in = data["customer"]
    order_id = (data.get("order") or {}).get("id")
    postgresql = work.dialect == "postgresql"
    stopper = data["type"] in ORDER_STOPPERS
    cached = cache.latest(store.id) if cache is not None and postgresql and not stopper else None
    if cached is not None:
        # The usual case in one round trip: the look-ahead and the write in one statement, which writes only when
        # what it reads allows it, and otherwise answers as the look-ahead does, for the path below to follow.
        folded = _fold(work, store, cached, data, key, order_id)
        if isinstance(folded, Ingested):
            return folded
        front = folded
    session = work.session  # the path below reads and writes through it too
    if cached is None:
        front = _look_ahead(session, store.id, key, customer_in, order_id)
    if front.existing_trigger is not None:
        return _existing(session, store.id, key) or _race_lost(session, store.id, key)
    config = store_config(session, store.id, front.config_version, cache)
    trigger = _new_trigger(store, data, key, order_id)
    if postgresql:
        # Ids were taken in the look-ahead: the customer, the trigger and its actions are written together below.
        customer_id = front.customer["id"] if front.customer else front.new_customer_id
        assert customer_id is not None and front.new_trigger_id is not None
        trigger.customer_id, trigger.id = customer_id, front.new_trigger_id
    else:
        trigger.customer_id = write_customer(session, store.id, front.customer, customer_in)
        trigger_id = session.execute(
            insert_trigger_statement("sqlite"), columns_of(trigger, table_of(Trigger), skip=("id",))
        ).scalar()
        if trigger_id is None:
            # The same trigger arrived concurrently and won the race: answer with what it created.
            return _race_lost(session, store.id, key)
        trigger.id = trigger_id

    actions = build_actions(store, config, data, trigger)
    known_empty = {name for name, found in front.concerns.items() if not found}
    if stopper:
        known_empty.discard("stopped_orders")  # this very trigger stops its order
    if data["type"] == "review.submitted":
        known_empty.discard("reviewed")  # this very review counts

    def schedule() -> int:
        cancelled = stop_order(session, store.id, data["type"], trigger.order_id) if stopper else 0
        apply_guards(
            session,
            actions,
            config.integrations_by_id(),
            known_empty=known_empty,
            quiet_hours={store.id: config.quiet_hours},
        )
        return cancelled

    if postgresql:
        try:
            # On an autocommit session the write is one statement, atomic by itself; a stopper also cancels what
            # waits for its order, in the same transaction as the write.
            with pgraw.atomic(session) if stopper else nullcontext():
                cancelled = schedule()
                _write_pg(session, front.customer, customer_in, trigger, actions)
        except psycopg.errors.UniqueViolation:
            # The same trigger arrived concurrently and won the race: answer with what it created.
            return _race_lost(session, store.id, key)
    else:
        cancelled = schedule()
        insert_actions(session, actions)
    return Ingested(trigger=trigger, actions=actions, duplicate=False, cancelled=cancelled)


# What json.dumps(data, default=str) writes, from one encoder: json.dumps makes a new one for every call given
# ``default``, which cost as much as the encoding of a trigger itself.
TRIGGER_JSON = json.JSONEncoder(default=str)


def _new_trigger(
    store: Store, data: dict[str, Any], key: str, order_id: str | None, payload_text: str | None = None
) -> NewTrigger:
    """The trigger row to write (its id, and its customer's, come from the database). Its payload is the trigger as
    JSON would give it back (``payload_text`` when the caller has it already)."""
    return NewTrigger(
        store_id=store.id,
        type=data["type"],
        dedupe_key=key,
        order_id=order_id,
        occurred_at=data.get("occurred_at") or datetime.now(UTC),
        payload=json.loads(payload_text if payload_text is not None else TRIGGER_JSON.encode(data)),
        created_at=datetime.now(UTC),
    )


@dataclass
class _Front:
    config_version: int
    existing_trigger: int | None
    customer: dict[str, Any] | None  # the customer the trigger names, as stored
    concerns: dict[str, bool]  # guard lookup → might it find something (False: it surely finds nothing)
    new_trigger_id: int | None = None  # PostgreSQL: ids taken from the sequences for what ingest writes
    new_customer_id: int | None = None  # (only when the customer is new)


CUSTOMER_FIELDS = ("email", "phone", "first_name", "last_name", "external_id")
IDENTITY_FIELDS = ("external_id", "email", "phone")


def _customer_match(store_id: Any, customer: Any, fields: tuple[str, ...]) -> Any:
    """Customers are found by external id, email or phone: the oldest that matches any of them."""
    return and_(Customer.store_id == store_id, or_(*(getattr(Customer, k) == customer[k] for k in fields)))


@functools.lru_cache(maxsize=64)
def _look_ahead_statement(fields: tuple[str, ...], with_order: bool, dialect: str) -> Any:
    """The look-ahead query for one shape of trigger (which identities it has, whether it has an order),
    built once: building a statement costs more Python than running it."""
    store_id: BindParameter[Any] = bindparam("store_id")
    key: BindParameter[Any] = bindparam("key")
    order_id: BindParameter[Any] = bindparam("order_id")
    given: dict[str, BindParameter[Any]] = {k: bindparam(k) for k in fields}
    table = table_of(Customer)
    found = (
        select(*(table.c[k] for k in ("id", *CUSTOMER_FIELDS)))
        .where(_customer_match(store_id, given, fields))
        .order_by(table.c.id)
        .limit(1)
        .subquery("customer")
    )
    anchor = select(literal(1).label("one")).subquery("anchor")
    checks: dict[str, Any] = {
        "suppressions": exists().where(
            Suppression.store_id == store_id,
            # One parameter per identity the shape has (guards.identities: as many as ``fields``), so the text is
            # the same for every trigger of this shape, with no array for the driver to build.
            Suppression.value.in_([bindparam(f"identity_{n}") for n in range(len(fields))]),
        ),
        "reviewed": exists().where(
            Trigger.store_id == store_id,
            guards.IS_REVIEW,
            Trigger.customer_id.in_(select(Customer.id).where(_customer_match(store_id, given, fields))),
        ),
    }
    if with_order:
        checks["stopped_orders"] = exists().where(
            Trigger.store_id == store_id,
            Trigger.order_id == order_id,
            guards.IS_ORDER_STOPPER,
        )
        checks["duplicates"] = exists().where(
            Action.store_id == store_id,
            Action.order_id == order_id,
            guards.IS_LIVE_AUTO_ACTION,
        )
    ids: list[Any] = []
    if dialect == "postgresql":  # ids for what ingest will write, so it can write it all in one statement
        ids.append(func.nextval(_sequence(Trigger)).label("new_trigger_id"))
        ids.append(case((found.c.id.is_(None), func.nextval(_sequence(Customer)))).label("new_customer_id"))
    return select(
        select(Store.config_version).where(Store.id == store_id).scalar_subquery().label("config_version"),
        select(Trigger.id)
        .where(Trigger.store_id == store_id, Trigger.dedupe_key == key)
        .scalar_subquery()
        .label("existing_trigger"),
        *(check.label(name) for name, check in checks.items()),
        *found.c,
        *ids,
    ).select_from(anchor.outerjoin(found, true()))


def _sequence(model: type[Any]) -> str:
    return f"{table_of(model).name}_id_seq"  # the sequence a serial (or bigserial) id column owns


@functools.lru_cache(maxsize=64)
def _look_ahead_raw(fields: tuple[str, ...], with_order: bool) -> pgraw.RawStatement:
    return pgraw.RawStatement(_look_ahead_statement(fields, with_order, "postgresql"))


def _look_ahead_params(
    store_id: int, key: str, customer: dict[str, Any], order_id: str | None
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The look-ahead's shape (the identities the trigger gives) and its parameters."""
    fields = tuple(k for k in IDENTITY_FIELDS if customer.get(k))
    params = {"store_id": store_id, "key": key}
    params.update({k: customer[k] for k in fields})
    params.update({f"identity_{n}": value for n, value in enumerate(guards.identities(target_of(customer)))})
    if order_id:
        params["order_id"] = order_id
    return fields, params


def _look_ahead(session: Session, store_id: int, key: str, customer: dict[str, Any], order_id: str | None) -> _Front:
    """Everything ingest reads before it writes, in one query."""
    fields, params = _look_ahead_params(store_id, key, customer, order_id)
    row: Mapping[str, Any] | None
    if session.get_bind().dialect.name == "postgresql":
        row = _look_ahead_raw(fields, bool(order_id)).row(session, params)
    else:
        row = dict(session.execute(_look_ahead_statement(fields, bool(order_id), "sqlite"), params).one()._mapping)
    assert row is not None  # the anchor makes one row
    return _front_of(row)


def _front_of(row: Mapping[str, Any]) -> _Front:
    concerns = {name: bool(row[name]) if name in row else False for name in guards.LOOKUPS}
    stored = {k: row[k] for k in ("id", *CUSTOMER_FIELDS)} if row["id"] is not None else None
    return _Front(
        row["config_version"] or 0,
        row["existing_trigger"],
        stored,
        concerns,
        new_trigger_id=row.get("new_trigger_id"),
        new_customer_id=row.get("new_customer_id"),
    )


def _fold(
    work: Statements, store: Store, config: StoreConfig, data: dict[str, Any], key: str, order_id: str | None
) -> Ingested | _Front:
    """PostgreSQL, a trigger that stops no order, with the store's config in the cache: the look-ahead and the write
    in one statement (``_fold_statement``). The actions are built and judged by the pure guards (the integration,
    the identity, staleness, quiet hours) beforehand, from the cached config; the statement writes them, the
    customer and the trigger only if that config is still current, the trigger is new, and none of the guards'
    lookups could find anything. Then the trigger and its actions, with their ids; else what the look-ahead would
    have answered (it wrote nothing), for the usual path to follow."""
    customer = data["customer"]
    fields, params = _look_ahead_params(store.id, key, customer, order_id)
    payload_text = TRIGGER_JSON.encode(data)  # encoded once: it is also what the statement writes
    trigger = _new_trigger(store, data, key, order_id, payload_text)
    actions = build_actions(store, config, data, trigger)
    # Judged as if every lookup found nothing, needing no session: the statement writes nothing unless that is so.
    verdicts = guards.judge(
        [guards.Subject.of(a, key=n) for n, a in enumerate(actions)],
        integrations=config.integrations_by_id(),
        quiet_hours={store.id: config.quiet_hours},
    )
    _apply_verdicts(actions, verdicts)
    given = customer_values(None, customer)
    statement = _fold_statement(fields, bool(order_id), tuple(given), len(actions))
    params.update(statement.constants)
    params["fold_version"] = config.version
    params["fold_now"] = datetime.now(UTC)
    params.update({f"c_{name}": value for name, value in given.items()})
    triggers = table_of(Trigger)
    for name, value in zip(
        FOLD_TRIGGER_VALUES,
        pgraw.values(triggers, FOLD_TRIGGER_VALUES, [getattr(trigger, name) for name in FOLD_TRIGGER_VALUES]),
        strict=True,
    ):
        params[f"t_{name}"] = value
    params["t_payload"] = payload_text
    if actions:
        names, rows = action_rows(actions, skip=FOLD_ACTION_IDS)
        table = table_of(Action)
        for n, row in enumerate(rows):
            params.update(zip(statement.action_params[n], pgraw.values(table, names, row), strict=True))
    try:
        cursor = pgraw.raw_cursor(work)
        cursor.execute(statement.sql, [params[name] for name in statement.order])
        found = cursor.fetchall()
        columns = statement.columns
        if columns is None:  # psycopg builds the description's objects anew on every call
            columns = statement.columns = [column.name for column in cursor.description or ()]
    except psycopg.errors.UniqueViolation:
        # The same trigger arrived concurrently and won the race: answer with what it created.
        return _race_lost(work.session, store.id, key)
    first = dict(zip(columns, found[0], strict=True))
    if first["written_trigger_id"] is None:
        return _front_of(first)
    trigger.id = first["written_trigger_id"]
    trigger.customer_id = first["id"] if first["id"] is not None else first["new_customer_id"]
    written = {row[-1]: row[-2] for row in found}  # action_key → action_id, the statement's last two columns
    for action in actions:
        action.id = written[action.idempotency_key]
        action.trigger_id, action.customer_id = trigger.id, trigger.customer_id
    return Ingested(trigger=trigger, actions=actions, duplicate=False)


# What the folded statement takes from the database rather than from its parameters: the trigger's id and its
# customer's (from the sequences, or the customer found).
FOLD_TRIGGER_COLUMNS = tuple(c.key for c in table_of(Trigger).c if c.key not in ("id", "customer_id"))
FOLD_TRIGGER_VALUES = tuple(name for name in FOLD_TRIGGER_COLUMNS if name != "payload")  # the payload goes as text
FOLD_ACTION_IDS = ("trigger_id", "customer_id")


@dataclass
class _FoldStatement:
    sql: str  # with PostgreSQL's own placeholders ($1, $2, ...), for a psycopg RawCursor
    order: tuple[str, ...]  # the parameters' names, by number
    constants: dict[str, Any]  # the look-ahead's own constants
    action_params: list[tuple[str, ...]]  # the parameters' names of each action's row
    columns: list[str] | None = None  # the result's column names, read from the first result


@functools.lru_cache(maxsize=256)
def _fold_statement(fields: tuple[str, ...], with_order: bool, given: tuple[str, ...], actions: int) -> _FoldStatement:
    """One statement for one shape of trigger (its identities, whether it has an order, the customer fields it
    gives, how many actions it makes): the look-ahead (``front``), and data-modifying CTEs that write the customer
    (new, or what the trigger says differently), the trigger and its actions only when ``go`` has its row, which it
    has when the store's config version is the one the actions were built from, the trigger is new, and no guard's
    lookup could find anything. One row per action written (one row when none is), each with the look-ahead's
    columns, ``written_trigger_id`` (NULL when nothing was written) and the action's id and idempotency key.

    Its text is fixed for its shape, so psycopg prepares it. The foreign keys are checked at the end of the
    statement, as for the write alone, and a trigger that lost a race fails the trigger's unique key."""
    ahead = _look_ahead_raw(fields, with_order)
    checks = ["suppressions", "reviewed", *(("stopped_orders", "duplicates") if with_order else ())]
    customers, triggers, table = table_of(Customer), table_of(Trigger), table_of(Action)

    now = f"%(fold_now)s::{pgraw.cast_of(customers, 'created_at')}"
    given_values = [f"%(c_{k})s::{pgraw.cast_of(customers, k)}" for k in given]
    parts = [
        f"front AS MATERIALIZED ({ahead.sql})",
        "go AS (SELECT new_trigger_id, coalesce(id, new_customer_id) AS customer_id, id AS stored_id, new_customer_id"
        " FROM front WHERE config_version = %(fold_version)s::integer AND existing_trigger IS NULL"
        + "".join(f" AND NOT {check}" for check in checks)
        + ")",
        f"new_customer AS (INSERT INTO customers (id, store_id, {', '.join((*given, 'created_at', 'updated_at'))})"
        f" SELECT new_customer_id, %(store_id)s::INTEGER, {', '.join((*given_values, now, now))}"
        " FROM go WHERE stored_id IS NULL)",
    ]
    if given:  # a stored customer gets what the trigger says differently (all it gives: the same values)
        assignments = ", ".join(f"{k} = {v}" for k, v in zip(("updated_at", *given), (now, *given_values), strict=True))
        differs = " OR ".join(f"customers.{k} IS DISTINCT FROM {v}" for k, v in zip(given, given_values, strict=True))
        parts.append(
            f"changed_customer AS (UPDATE customers SET {assignments} FROM go"
            f" WHERE customers.id = go.stored_id AND ({differs}))"
        )
    trigger_values = ", ".join(f"%(t_{k})s::{pgraw.cast_of(triggers, k)}" for k in FOLD_TRIGGER_COLUMNS)
    parts.append(
        f"new_trigger AS (INSERT INTO triggers (id, customer_id, {', '.join(FOLD_TRIGGER_COLUMNS)})"
        f" SELECT new_trigger_id, customer_id, {trigger_values} FROM go RETURNING id)"
    )
    names = tuple(c.key for c in table.c if c.key != "id" and c.key not in FOLD_ACTION_IDS)
    action_params = [tuple(f"a{n}_{i}" for i in range(len(names))) for n in range(actions)]
    if actions:
        rows = ", ".join(
            "(" + ", ".join(f"%({p})s::{pgraw.cast_of(table, name)}" for p, name in zip(row, names, strict=True)) + ")"
            for row in action_params
        )
        parts.append(
            f"new_actions AS (INSERT INTO actions ({', '.join((*names, *FOLD_ACTION_IDS))})"
            f" SELECT v.*, go.new_trigger_id, go.customer_id FROM go CROSS JOIN (VALUES {rows}) AS v"
            " RETURNING id, idempotency_key)"
        )
        result = (
            "SELECT front.*, new_trigger.id AS written_trigger_id, new_actions.id AS action_id,"
            " new_actions.idempotency_key AS action_key"
            " FROM front LEFT JOIN new_trigger ON true LEFT JOIN new_actions ON true"
        )
    else:
        result = "SELECT front.*, new_trigger.id AS written_trigger_id FROM front LEFT JOIN new_trigger ON true"
    sql, order = pgraw.numbered_by_name("WITH " + ", ".join(parts) + " " + result)
    return _FoldStatement(sql, order, dict(ahead.constants), action_params)


def customer_values(stored: dict[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """What to write of the customer a trigger names: every field it gives for a new customer, and for a stored
    one only what it says differently (a trigger without a field leaves the stored value alone)."""
    values = {k: given[k] for k in CUSTOMER_FIELDS if given.get(k)}
    if stored is None:
        return values
    return {k: v for k, v in values.items() if stored.get(k) != v}


def write_customer(session: Session, store_id: int, stored: dict[str, Any] | None, given: dict[str, Any]) -> int:
    """Create the customer, or update what the trigger says differently; the customer's id."""
    table = table_of(Customer)
    now = datetime.now(UTC)
    changed = customer_values(stored, given)
    if stored is None:
        return session.execute(  # type: ignore[no-any-return]
            _INSERT_CUSTOMER, {"store_id": store_id, "created_at": now, "updated_at": now, **changed}
        ).scalar_one()
    if changed:
        session.execute(update(table).where(table.c.id == stored["id"]).values(updated_at=now, **changed))
    return stored["id"]  # type: ignore[no-any-return]


_INSERT_CUSTOMER = insert(table_of(Customer)).returning(table_of(Customer).c.id)


def store_config(session: Session, store_id: int, version: int, cache: StoreConfigCache | None) -> StoreConfig:
    """The store's enabled flows and usable integrations, from the cache when its version is current."""
    config = cache.get(store_id, version) if cache is not None else None
    if config is None:
        config = load_store_config(session, store_id, version)
        if cache is not None:
            cache.put(store_id, config)
    return config


def load_store_config(session: Session, store_id: int, version: int) -> StoreConfig:
    integrations = {}
    table = table_of(Integration)
    for row in session.execute(
        select(*(c for c in table.c if c.key != "credentials")).where(
            table.c.store_id == store_id, table.c.state != IntegrationState.DISCONNECTED
        )
    ):
        integrations[row.app] = Integration(**row._mapping)  # a transient copy, credentials left out
    flow_rows = session.execute(
        select(Flow.id, Flow.name, Flow.trigger)
        .where(Flow.store_id == store_id, Flow.enabled.is_(True))
        .order_by(Flow.id)
    ).all()
    steps: dict[int, list[StepConfig]] = {}
    if flow_rows:
        step_table = table_of(FlowStep)
        for row in session.execute(
            select(step_table)
            .where(step_table.c.flow_id.in_([f.id for f in flow_rows]))
            .order_by(step_table.c.flow_id, step_table.c.position)
        ):
            values = dict(row._mapping)
            steps.setdefault(values.pop("flow_id"), []).append(StepConfig(**values))
    flows = tuple(FlowConfig(f.id, f.name, f.trigger, tuple(steps.get(f.id, ()))) for f in flow_rows)
    settings = session.execute(
        select(Store.timezone, Store.quiet_hours_start, Store.quiet_hours_end, Store.quiet_hours_applies_to).where(
            Store.id == store_id
        )
    ).one()
    return StoreConfig(
        version=version,
        flows=flows,
        integrations=integrations,
        quiet_hours=quiet.QuietHours.of(settings),  # type: ignore[arg-type]
    )


def build_actions(
    store: Store, config: StoreConfig, data: dict[str, Any], trigger: Trigger | NewTrigger
) -> list[NewAction]:
    """One action per step of every enabled flow the trigger starts, and per app the step goes to."""
    return ActionBuilder(store, config).build(data, trigger)


@dataclass(frozen=True)
class _Slot:
    """An action every trigger of one type makes in a store's config: one event step of a flow, to one app."""

    step_id: int
    integration_id: int
    app: str
    event_name: str  # with the store's prefix
    event_type: str
    delay: timedelta
    key_suffix: str  # the idempotency key's parts after the trigger's (see ActionBuilder.build)
    state: ActionState
    reason_code: str | None
    reason_text: str | None


class ActionBuilder:
    """``build_actions`` for the triggers of one store and config: what their actions share (the flows a type starts,
    their event steps and apps, the event names, an integration's hold) is worked out once per trigger type, so a
    bulk ingest does that once a batch rather than once a trigger."""

    def __init__(self, store: Store, config: StoreConfig) -> None:
        self.store = store
        self.config = config
        self.store_id = store.id
        self.store_name = store.name
        self._plans: dict[str, list[tuple[FlowConfig, list[_Slot]]]] = {}
        # The triggers of a batch often share their time, and the actions of a flow their step's delay.
        self._isoformat = pgcopy.IsoFormat()

    def _plan(self, trigger_type: str) -> list[tuple[FlowConfig, list[_Slot]]]:
        by_app = self.config.integrations
        plan = []
        for flow in self.config.by_trigger.get(trigger_type, ()):
            slots = []
            for step in flow.steps:
                if step.kind != "event":
                    # Native email/SMS steps are admitted by the model; their delivery comes with the messages issue.
                    continue
                for app in [step.app] if step.app else sorted(by_app):
                    integration = by_app.get(app)
                    if integration is None:
                        continue
                    state, reason_code, reason_text = ActionState.PENDING, None, None
                    if integration.state != IntegrationState.CONNECTED:
                        state, reason_code, reason_text = hold_reason(integration)
                    slots.append(
                        _Slot(
                            step_id=step.id,
                            integration_id=integration.id,
                            app=integration.app,
                            event_name=event_name(self.store, step.event_name or "Event"),
                            event_type=step.event_type or "event",
                            delay=timedelta(seconds=step.delay_seconds),
                            key_suffix=f":{step.id}:{app}",
                            state=state,
                            reason_code=reason_code,
                            reason_text=reason_text,
                        )
                    )
            plan.append((flow, slots))
        return plan

    def build(self, data: dict[str, Any], trigger: Trigger | NewTrigger) -> list[NewAction]:
        """The trigger's actions: as ``new_event_action`` makes them, with the flow's step, the trigger and its
        customer and order."""
        plan = self._plans.get(data["type"])
        if plan is None:
            plan = self._plans[data["type"]] = self._plan(data["type"])
        actions: list[NewAction] = []
        occurred_at = trigger.occurred_at
        customer = data["customer"]
        # idempotency_key(store id, dedupe key, step id, app): the same text, joined once per trigger.
        key_prefix = f"{self.store_id}:{trigger.dedupe_key}"
        for flow, slots in plan:
            # Built once per flow and shared by its actions' payloads (each payload copies the top level only).
            properties = event_properties(self.store_name, data, flow)
            properties["trigger_occurred_at"] = self._isoformat(occurred_at)
            for slot in slots:
                # The flow step's event happens when the step comes due, not when the order shipped: platforms
                # judge an event's age by this time (Attentive ignores custom events older than 12 hours).
                run_at = occurred_at + slot.delay
                key = key_of(key_prefix + slot.key_suffix)
                payload = event_payload(
                    id=key,
                    name=slot.event_name,
                    type=slot.event_type,
                    occurred_at=run_at,
                    occurred_at_text=self._isoformat(run_at),
                    customer=customer,
                    properties=properties,
                    test=False,
                )
                action: NewAction = NewAction.adopt(  # type: ignore[attr-defined]  # the columns new_event_action gives, and the flow's and trigger's
                    {
                        "store_id": self.store_id,
                        "flow_id": flow.id,
                        "step_id": slot.step_id,
                        "trigger_id": trigger.id,
                        "customer_id": trigger.customer_id,
                        "integration_id": slot.integration_id,
                        "kind": "event",
                        "app": slot.app,
                        "event_name": slot.event_name,
                        "event_type": slot.event_type,
                        "target": target_of(customer),
                        "trigger": "auto",
                        "state": slot.state,
                        "reason_code": slot.reason_code,
                        "reason_text": slot.reason_text,
                        "scheduled_at": run_at,
                        "run_at": run_at,
                        "idempotency_key": key,
                        "payload": payload,
                        "order_id": trigger.order_id,
                    }
                )
                actions.append(action)
        return actions


@functools.cache
def action_defaults() -> dict[str, Any]:
    """The model's scalar column defaults, which a Core insert (unlike the ORM) would not fill in."""
    return {
        c.key: c.default.arg  # type: ignore[union-attr,attr-defined]
        for c in table_of(Action).c
        if c.default is not None and c.default.is_scalar and c.key not in ("created_at", "updated_at")
    }


def insert_actions(session: Session, actions: Sequence[Action | NewAction]) -> None:
    """Write new actions in one statement (COPY, or a multi-row INSERT ... RETURNING) and give them their ids."""
    if not actions:
        return
    names, rows = action_rows(actions)
    ids = pgcopy.insert_tuples(session, table_of(Action), names, rows)
    for action, action_id in zip(actions, ids, strict=True):
        action.id = action_id


def action_rows(
    actions: Sequence[Action | NewAction], skip: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """New actions' column names (all but ``id`` and ``skip``) and values, with the model's defaults and the times
    filled in."""
    now = datetime.now(UTC)
    defaults = action_defaults().items()
    for action in actions:
        for name, value in defaults:
            if getattr(action, name) is None:
                setattr(action, name, value)
        action.created_at = action.updated_at = now
    names = _action_columns(skip)
    values_of = operator.attrgetter(*names)
    return names, [values_of(action) for action in actions]


@functools.cache
def _action_columns(skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(c.key for c in table_of(Action).c if c.key != "id" and c.key not in skip)


def _write_pg(
    session: Session,
    stored: dict[str, Any] | None,
    given: dict[str, Any],
    trigger: NewTrigger,
    actions: Sequence[NewAction],
) -> None:
    """PostgreSQL: the customer (new, or what the trigger says differently), the trigger and its actions in one
    statement (data-modifying CTEs; the foreign keys are checked at its end), with the ids the look-ahead took.
    The actions' ids come back by idempotency key. A trigger that lost a race raises UniqueViolation."""
    now = datetime.now(UTC)
    parts: list[str] = []
    params: list[Any] = []
    changed = customer_values(stored, given)
    customers = table_of(Customer)
    if stored is None:
        names = ("id", "store_id", *changed, "created_at", "updated_at")
        parts.append(pgraw.insert_values(customers, names))
        params += [trigger.customer_id, trigger.store_id, *changed.values(), now, now]
    elif changed:
        assignments = ", ".join(f"{k} = %s" for k in ("updated_at", *changed))
        parts.append(f"UPDATE customers SET {assignments} WHERE id = %s")
        params += [now, *changed.values(), stored["id"]]
    triggers = table_of(Trigger)
    trigger_columns = tuple(c.key for c in triggers.c)
    parts.append(pgraw.insert_values(triggers, trigger_columns))
    params += pgraw.values(triggers, trigger_columns, [getattr(trigger, name) for name in trigger_columns])
    if actions:
        names, rows = action_rows(actions)
        table = table_of(Action)
        parts.append(pgraw.insert_values(table, names, len(rows)) + " RETURNING id, idempotency_key")
        for row in rows:
            params += pgraw.values(table, names, row)
    *ctes, main = parts
    sql = ("WITH " + ", ".join(f"w{n} AS ({cte})" for n, cte in enumerate(ctes)) + " " if ctes else "") + main
    with psycopg.RawCursor(pgraw.driver(session)) as cursor:
        cursor.execute(pgraw.numbered(sql), params)
        if actions:
            ids = dict((key, action_id) for action_id, key in cursor.fetchall())
            for action in actions:
                action.id = ids[action.idempotency_key]


def columns_of(instance: Any, table: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: getattr(instance, c.key) for c in table.c if c.key not in skip}


@functools.cache
def insert_trigger_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (store_id, dedupe_key) DO NOTHING RETURNING id, on PostgreSQL and SQLite alike:
    a trigger that lost a race returns no row."""
    table = table_of(Trigger)
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return statement.on_conflict_do_nothing(index_elements=["store_id", "dedupe_key"]).returning(
        table.c.id, table.c.dedupe_key
    )


def _race_lost(session: Session, store_id: int, key: str) -> Ingested:
    session.rollback()  # nothing of ours is kept: the customer write goes too
    found = _existing(session, store_id, key)
    if found is None:
        raise RuntimeError(f"trigger {key!r} conflicted, and then was not found")
    return found


def apply_guards(
    session: Session,
    actions: Sequence[Action | NewAction],
    integrations: dict[int, Integration],
    known_empty: Collection[str] = (),
    quiet_hours: dict[int, quiet.QuietHours | None] | None = None,
) -> None:
    """Guards at scheduling: an action that must not go is created skipped, with the guard's reason; one due in
    the store's quiet hours is scheduled for their end."""
    results = guards.evaluate(
        session,
        [guards.Subject.of(a, key=n) for n, a in enumerate(actions)],
        integrations=integrations,
        known_empty=known_empty,
        quiet_hours=quiet_hours,
    )
    _apply_verdicts(actions, results)


def _apply_verdicts(actions: Sequence[Action | NewAction], results: dict[Any, list[guards.GuardResult]]) -> None:
    """The guards' results (keyed by the actions' positions) on the actions they judged."""
    for n, action in enumerate(actions):
        failed = guards.first_failure(results[n])
        if failed is not None and failed.until is not None:  # quiet hours: the flow's time moves to their end
            action.run_at = action.scheduled_at = failed.until
            action.reason_code, action.reason_text = failed.code, failed.text
        elif failed is not None and not failed.hold:
            action.state, action.reason_code, action.reason_text = ActionState.SKIPPED, failed.code, failed.text
            action.caused_by = Actor.RULE


def stop_order(session: Session, store_id: int, trigger_type: str, order_id: str | None) -> int:
    """An order was cancelled or refunded: what still waits for it is cancelled (by a rule)."""
    if not order_id:
        return 0
    word = trigger_type.split(".")[1]
    result = session.execute(
        update(Action)
        .where(
            Action.store_id == store_id,
            Action.order_id == order_id,
            Action.state.in_((ActionState.PENDING, ActionState.HELD)),
        )
        .values(
            state=ActionState.CANCELLED,
            reason_code=f"order_{word}",
            reason_text=f"order {order_id} was {word}",
            caused_by=Actor.RULE,
            updated_at=datetime.now(UTC),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount  # type: ignore[attr-defined,no-any-return]


def new_event_action(
    store: Store,
    integration: Integration,
    *,
    name: str,
    event_type: str,
    customer: dict[str, Any],
    properties: dict[str, Any],
    occurred_at: datetime,
    run_at: datetime,
    trigger: str,
    key: str | None = None,
    test: bool = False,
    row: Callable[..., R] = Action,  # type: ignore[assignment]
) -> R:
    """A new event action (not yet stored): an ORM ``Action`` to add to a session, or, for ingest, a ``NewAction``
    that insert_actions writes."""
    key = key or idempotency_key(store.id, "manual", uuid.uuid4().hex)
    full_name = event_name(store, name)
    payload = event_payload(
        id=key,
        name=full_name,
        type=event_type,
        occurred_at=occurred_at,
        customer=customer,
        properties=properties,
        test=test,
    )
    state, reason_code, reason_text = ActionState.PENDING, None, None
    if integration.state != IntegrationState.CONNECTED:
        state, reason_code, reason_text = hold_reason(integration)
    return row(
        store_id=store.id,
        integration_id=integration.id,
        kind="event",
        app=integration.app,
        event_name=full_name,
        event_type=event_type,
        target=target_of(customer),
        trigger=trigger,
        state=state,
        reason_code=reason_code,
        reason_text=reason_text,
        scheduled_at=run_at,
        run_at=run_at,
        idempotency_key=key,
        payload=payload,
    )


def hold_reason(integration: Integration) -> tuple[ActionState, str, str]:
    if integration.state == IntegrationState.PAUSED:
        return ActionState.HELD, "integration_paused", f"{integration.app} is paused"
    return (
        ActionState.HELD,
        "integration_needs_attention",
        f"{integration.app} needs attention: {integration.last_error or 'its credentials were rejected'}",
    )


def _existing(session: Session, store_id: int, key: str) -> Ingested | None:
    return recorded(session, store_id, Trigger.dedupe_key == key)


def recorded(session: Session, store_id: int, which: ColumnElement[bool]) -> Ingested | None:
    """The store's trigger that ``which`` picks and the actions it created, as a repeat of it is answered."""
    trigger = session.scalars(select(Trigger).where(Trigger.store_id == store_id, which)).first()
    if trigger is None:
        return None
    actions = session.scalars(select(Action).where(Action.trigger_id == trigger.id).order_by(Action.id)).all()
    return Ingested(trigger=trigger, actions=list(actions), duplicate=True)
