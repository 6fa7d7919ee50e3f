"""The outbox state machine. Every transition is a conditional UPDATE whose row count is checked.

    pending ──claim_due / claim_one──► sending ──► delivered | failed | skipped
       ▲                                   │  (lease expired: claimed again, a new token)
       └──── retry ────────────────────────┤
    held ◄── credentials rejected / integration paused
    pending | held ──cancel──► cancelled

A claim moves actions straight to ``sending`` under a lease token that travels in the rq job with the ids;
the worker reads its batch by ids, state and token (``read_for_delivery``) without writing, and every outcome
is conditional on the same token. ``queued`` is left from earlier versions (jobs that carry no token):
``claim_for_delivery`` still takes those, and the lost-lease scan still covers them.

Claims use FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite (which has no row locks and silently
drops SKIP LOCKED) the same conditional UPDATE runs alone, since SQLite serialises writers.

The scans for open actions (due, lost leases, an integration's pending or held ones) read ``open_actions``
(hub.models.OpenAction), a narrow copy of the open actions' run_at, state, lease and integration that triggers
on ``actions`` keep exact (hub.open_actions); code never writes it. No index of ``actions`` names a column a
transition changes, so on PostgreSQL a claim and an outcome rewrite the action row as a HOT update (the table
keeps half of each page free for them, migration 0011) and only the narrow row and its index entries are
rewritten beside it. The transitions themselves are unchanged: conditional UPDATEs of ``actions``, whose row
counts say what moved.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

import orjson
from sqlalchemy import BigInteger, Text, and_, any_, bindparam, case, cast, column, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from hub import pgraw
from hub.db import Database, sql_literal
from hub.models import Action, ActionState, OpenAction


def now() -> datetime:
    return datetime.now(UTC)


def new_lease() -> str:
    return secrets.token_hex(8)


class Delivering(NamedTuple):
    """What a worker reads of each action it delivers: a plain tuple, because the batch path reads these fields
    many times per action and a SQLAlchemy Row's attribute access costs about a microsecond each."""

    id: int
    store_id: int
    integration_id: int | None
    payload: dict[str, Any]
    attempt_count: int
    failure_count: int
    rate_limited_count: int
    # What the guards look at just before delivery (hub.guards.Subject).
    app: str | None
    channel: str | None
    event_type: str | None
    event_name: str | None
    target: dict[str, Any]
    customer_id: int | None
    order_id: str | None
    trigger: str
    scheduled_at: datetime
    run_at: datetime
    ignore_quiet_hours: bool


CLAIMED_COLUMNS = tuple(getattr(Action, name) for name in Delivering._fields)
# The worker reads its JSON columns as text and decodes them itself (_delivering): orjson takes a third of
# json.loads's time for a payload, and psycopg would decode them with json.loads.
_JSON_FIELDS = ("payload", "target")
_READ_COLUMNS = tuple(cast(c, Text).label(c.key) if c.key in _JSON_FIELDS else c for c in CLAIMED_COLUMNS)
_JSON_AT = tuple(Delivering._fields.index(name) for name in _JSON_FIELDS)
# The times, in UTC as the columns' type (hub.models.UTCDateTime) gives them: psycopg's are in the session's zone.
_TIME_AT = tuple(Delivering._fields.index(name) for name in ("scheduled_at", "run_at"))
# A run of 19 digits or more, where orjson might read a number otherwise than json.loads. Looked for in the UTF-8
# bytes with every digit mapped to "0" and everything else to " " (1.4 µs for a 350-character payload here, against
# 6.2 for the regular expressions it replaced): a run inside a string is a false alarm that costs a json.loads.
_DIGITS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_RUN = b"0" * 19


def _json(text: str | None) -> Any:
    """JSON text as json.loads reads it, by orjson when that gives the same: orjson reads an integer past 64 bits
    as a float and refuses a number past a double's range, where json.loads keeps the integer and gives inf."""
    if text is None:
        return None
    if _LONG_RUN not in text.encode().translate(_DIGITS):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _delivering(row: Sequence[Any]) -> Delivering:
    """A row of ``_READ_COLUMNS`` (from psycopg or through SQLAlchemy) as the worker uses it."""
    values = list(row)
    for at in _JSON_AT:
        values[at] = _json(values[at])
    for at in _TIME_AT:
        values[at] = _utc(values[at])
    return Delivering._make(values)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC, as UTCDateTime reads it (SQLite keeps no zone; psycopg gives the session's)."""
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Claimed(NamedTuple):
    id: int
    integration_id: int | None
    app: str | None = None  # lets the dispatcher size jobs for connectors that send in batches
    lease: str | None = None  # the claim's lease token, handed to the worker in the job


def _due(at: Any, row: Any = Action):  # type: ignore[no-untyped-def]
    return and_(row.state == ActionState.PENDING, row.run_at <= at)


def _lease_lost(at: Any, row: Any = Action):  # type: ignore[no-untyped-def]
    # A job lost with Redis, or a worker killed mid-delivery: its lease runs out and it is claimed again.
    in_flight = [sql_literal(state) for state in (ActionState.QUEUED, ActionState.SENDING)]  # no expanding IN: raw
    return and_(row.state.in_(in_flight), row.lease_expires_at < at)


def open_ids(*conditions: Any) -> Any:
    """The ids of open actions matching ``conditions`` on OpenAction: a subquery for ``Action.id.in_(…)``, served
    by the indexes of open_actions (those of actions name no state)."""
    return select(OpenAction.action_id).where(*conditions)


def of_integration(integration_id: int, *states: ActionState) -> tuple[Any, ...]:
    """The conditions for an integration's actions in ``states`` (open ones): found through open_actions, and
    checked again on the action rows an UPDATE locks."""
    found = open_ids(OpenAction.integration_id == integration_id, OpenAction.state.in_(states))
    return Action.id.in_(found), Action.integration_id == integration_id, Action.state.in_(states)


def claim_due(db: Database, limit: int, lease_seconds: float, at: datetime | None = None) -> list[Claimed]:
    """Claim up to ``limit`` due actions for the dispatcher: state → sending, under a fresh lease whose token
    goes into the jobs. The lease covers the wait in the queue and the delivery (``lease_seconds``).

    Lost leases first, then pending actions soonest first: two statements, each finding its candidates through
    a partial index of open_actions (ix_open_actions_leased, ix_open_actions_due), in one transaction.
    """
    at = at or now()
    if at.tzinfo is None:
        raise ValueError("naive datetime given to claim_due")  # as the column's type refuses one
    token = new_lease()
    claimed: list[Claimed] = []
    expires = at + timedelta(seconds=lease_seconds)
    # Built once, run on a plain connection: the dispatcher claims round after round, mostly finding nothing,
    # and building the statements and the ORM's bulk UPDATE around them cost more than PostgreSQL's part. On
    # PostgreSQL they go straight to psycopg (hub.pgraw), in the connection's transaction: SQLAlchemy's result
    # rows for 1,000 claimed actions cost more than the tuples made here from psycopg's.
    with db.engine.begin() as connection:
        if db.is_postgresql:
            driver = connection.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor:
                for raw in _raw_claims():
                    room = limit - len(claimed)
                    if room <= 0:
                        break
                    params = {**raw.constants, "at": at, "room": room, "token": token, "expires": expires}
                    rows = cursor.execute(raw.sql, params).fetchall()
                    claimed.extend([Claimed(id_, integration_id, app, token) for id_, integration_id, app in rows])
            return claimed
        for statement in _claim_statements(False):
            room = limit - len(claimed)
            if room <= 0:
                break
            rows = connection.execute(statement, {"at": at, "room": room, "token": token, "expires": expires})
            claimed.extend(Claimed(id_, integration_id, app, token) for id_, integration_id, app in rows)
    return claimed


@cache
def _raw_claims() -> tuple[pgraw.RawStatement, ...]:
    return tuple(pgraw.RawStatement(statement) for statement in _claim_statements(True))


def next_due(db: Database) -> datetime | None:
    """When the soonest pending action comes due (the first entry of ix_open_actions_due), or None."""
    with db.session() as session:
        moment = session.scalar(select(func.min(OpenAction.run_at)).where(OpenAction.state == ActionState.PENDING))
    return _aware(moment) if moment is not None else None


@cache
def _claim_statements(postgresql: bool) -> tuple[Any, ...]:
    at = bindparam("at", type_=Action.run_at.type)
    statements = []
    for scan, order in ((_lease_lost, OpenAction.lease_expires_at), (_due, OpenAction.run_at)):
        condition = scan(at)
        if postgresql:
            # Candidates from open_actions' index, in its order; the rows locked (and skipped when locked) are the
            # actions', as every writer of actions locks them before its trigger writes open_actions: locking the
            # open_actions rows first would deadlock with a cancel or an outcome of the same action.
            ids = (
                select(Action.id)
                .join(OpenAction, OpenAction.action_id == Action.id)
                .where(scan(at, OpenAction), condition)
                .order_by(order)
                .limit(bindparam("room"))
                .with_for_update(of=Action, skip_locked=True)
            )
            # = ANY(ARRAY(subquery)): the ids are picked once, then fetched by primary key. With IN (subquery)
            # the planner may run the subquery once per candidate row (seen on a table not yet analyzed).
            picked = Action.id == any_(func.array(ids.scalar_subquery()))
        else:
            ids = select(OpenAction.action_id).where(scan(at, OpenAction)).order_by(order).limit(bindparam("room"))
            picked = Action.id.in_(ids.scalar_subquery())
        statements.append(
            update(Action)
            .where(picked, condition)
            .values(
                state=ActionState.SENDING,
                lease_token=bindparam("token"),
                lease_expires_at=bindparam("expires"),
                updated_at=at,
            )
            .returning(Action.id, Action.integration_id, Action.app)
        )
    return tuple(statements)


def claim_one(session: Session, action_id: int, lease_seconds: float) -> str | None:
    """The fast path ("Send now", manual test events): pending → sending without waiting for the dispatcher.
    Returns the lease token for the job, or None when the action was no longer pending."""
    at = now()
    token = new_lease()
    result = session.execute(
        update(Action)
        .where(Action.id == action_id, Action.state == ActionState.PENDING)
        .values(
            state=ActionState.SENDING,
            run_at=at,
            lease_token=token,
            lease_expires_at=at + timedelta(seconds=lease_seconds),
            updated_at=at,
        )
        .execution_options(synchronize_session=False)
    )
    return token if result.rowcount == 1 else None  # type: ignore[attr-defined]


def read_for_delivery(session: Session, ids: list[int], lease: str, lease_seconds: float) -> list[Delivering]:
    """A worker reads the actions of its job that are still its own: in ``sending`` under the job's lease token,
    the lease not run out. A read, not a write: the claim that put them there is the dispatcher's.

    An action whose lease ran out is left to the lost-lease scan (a dispatcher claims it again under a new
    token). When the lease has less than half of ``lease_seconds`` left (the job waited long in the queue),
    it is extended first, conditionally on state and token, so the delivery has time to finish under it.
    """
    at = now()
    connection = session.connection()  # Core rows: the ORM adds nothing to a select of columns
    mine = (id_in(session, ids), Action.state == ActionState.SENDING, Action.lease_token == lease)
    # The expiry is checked here rather than in SQL (migration 0009: a condition on lease_expires_at drew the planner
    # to the lease index, which held every action in flight; that index is open_actions' now, migration 0011).
    if session.get_bind().dialect.name == "postgresql":
        # Straight from psycopg (hub.pgraw), in the session's transaction: SQLAlchemy's result processing of 1,000
        # rows of 19 columns cost more than psycopg's reading of them. _delivering does what the column types did.
        raw = _raw_read()
        driver = connection.connection.driver_connection
        assert driver is not None
        # In binary: psycopg takes the integers and times as they are instead of parsing their text.
        with driver.cursor(binary=True) as cursor:
            found = cursor.execute(raw.sql, {**raw.constants, "ids": list(ids), "lease": lease}).fetchall()
    else:
        found = connection.execute(select(Action.lease_expires_at, *_READ_COLUMNS).where(*mine)).all()
    rows = [row for row in found if _aware(row[0]) > at]
    half_left = at + timedelta(seconds=lease_seconds / 2)
    if any(_aware(row[0]) < half_left for row in rows):
        rows = list(
            connection.execute(
                update(Action)
                .where(*mine, Action.lease_expires_at > at)
                .values(lease_expires_at=at + timedelta(seconds=lease_seconds), updated_at=at)
                .returning(Action.lease_expires_at, *_READ_COLUMNS)
            ).all()
        )
    return [_delivering(row[1:]) for row in rows]


@cache
def _raw_read() -> pgraw.RawStatement:
    ids = bindparam("ids", type_=ARRAY(BigInteger))
    return pgraw.RawStatement(
        select(Action.lease_expires_at, *_READ_COLUMNS).where(
            Action.id == any_(ids),
            Action.state == sql_literal(ActionState.SENDING),
            Action.lease_token == bindparam("lease"),
        )
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite keeps no zone


def claim_for_delivery(session: Session, ids: list[int], lease_seconds: float) -> tuple[str, list[Delivering]]:
    """A worker takes queued actions (a job without a lease token, enqueued by an earlier version):
    queued → sending under its own lease token.

    Returns the token and, for each action it got, what delivery needs (one round trip, no ORM objects).
    An action claimed twice (a job re-enqueued after its lease ran out) is taken by one worker only.
    """
    at = now()
    token = new_lease()
    rows = session.execute(
        update(Action)
        .where(id_in(session, ids), Action.state == ActionState.QUEUED)
        .values(
            state=ActionState.SENDING,
            lease_token=token,
            lease_expires_at=at + timedelta(seconds=lease_seconds),
            updated_at=at,
        )
        .returning(*_READ_COLUMNS)
        .execution_options(synchronize_session=False)
    ).all()
    return token, [_delivering(row) for row in rows]


def transition(
    session: Session,
    action_id: int,
    *,
    expected: ActionState | tuple[ActionState, ...],
    lease_token: str | None = None,
    **values: object,
) -> bool:
    """Move one action out of ``expected`` (and the caller's lease, when given). False if it moved already."""
    states = (expected,) if isinstance(expected, ActionState) else expected
    conditions = [Action.id == action_id, Action.state.in_(states)]
    if lease_token is not None:
        conditions.append(Action.lease_token == lease_token)
    values.setdefault("updated_at", now())
    result = session.execute(
        update(Action).where(*conditions).values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def transition_many(
    session: Session,
    changes: list[tuple[int, dict[str, Any]]],
    *,
    expected: ActionState,
    lease_token: str,
    state: ActionState,
) -> set[int]:
    """Move many actions out of ``expected`` under the caller's lease, each with its own values (every row
    with the same keys). Returns the ids that moved; the others had moved on already.

    On PostgreSQL one UPDATE for them all, still conditional on state and lease token row by row: the values every
    row shares as single parameters, the others ``FROM unnest(…)`` (a VALUES list given as one array per column);
    elsewhere one conditional UPDATE each.
    """
    if not changes:
        return set()
    if session.get_bind().dialect.name != "postgresql":
        return {
            action_id
            for action_id, values in changes
            if transition(session, action_id, expected=expected, lease_token=lease_token, state=state, **values)
        }
    keys = sorted(changes[0][1])
    columns = Action.__table__.c
    first = changes[0][1]
    # A value every row shares (a batch's delivered_at, its status, the cleared reason) is one parameter; only
    # the values that differ go into arrays. Dumping an array of 1,000 timestamps costs psycopg about 6 ms.
    varying = [key for key in keys if any(values[key] != first[key] for _, values in changes)]
    shared = {key: first[key] for key in keys if key not in varying}
    ids = bindparam("ids", [action_id for action_id, _ in changes], type_=ARRAY(BigInteger))
    if varying:
        # One array parameter per column, unnested into rows: the statement's text is the same for any number of
        # actions (a VALUES list would be compiled anew with a parameter per value).
        arrays = [ids] + [
            bindparam(f"v_{key}", [values[key] for _, values in changes], type_=ARRAY(columns[key].type))
            for key in varying
        ]
        rows = (
            func.unnest(*arrays)
            .table_valued(column("id", BigInteger), *(column(key, columns[key].type) for key in varying))
            .render_derived(name="changes", with_types=False)
        )
        # The ids twice: as the join, and as an array the planner can take to the primary key (it cannot see into
        # the unnest, and its statistics hardly ever count an action in flight).
        which = and_(Action.id == rows.c.id, Action.id == any_(ids))
        per_row = {key: rows.c[key] for key in varying}
        # Planned for its own arrays every time. psycopg prepares a statement it has run five times, and PostgreSQL's
        # generic plan then counts 10 rows in the unnest and one action, and joins them by a nested loop without an
        # index: a million comparisons for a job of 1,000 (~125 ms, seen in a worker's sixth job onwards).
        session.execute(_CUSTOM_PLANS)
    else:
        which, per_row = Action.id == any_(ids), {}
    moved = session.scalars(
        update(Action)
        .where(which, Action.state == expected, Action.lease_token == lease_token)
        .values(state=state, updated_at=now(), **shared, **per_row)
        .returning(Action.id)
        .execution_options(synchronize_session=False)
    )
    return set(moved)


_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")  # until the transaction ends


def id_in(session: Session, ids: list[int]) -> Any:
    """``actions.id`` among ``ids``: one array parameter on PostgreSQL rather than one parameter per id."""
    if session.get_bind().dialect.name == "postgresql":
        return Action.id == any_(bindparam("ids", list(ids), type_=ARRAY(BigInteger)))
    return Action.id.in_(ids)


def hold_integration(session: Session, integration_id: int, reason_code: str, reason_text: str) -> int:
    """Hold every pending action of an integration (credentials rejected, paused). Returns how many."""
    result = session.execute(
        update(Action)
        .where(*of_integration(integration_id, ActionState.PENDING))
        .values(state=ActionState.HELD, reason_code=reason_code, reason_text=reason_text, updated_at=now())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount  # type: ignore[attr-defined,no-any-return]


def release_integration(session: Session, integration_id: int, policy: str = "all", hours: float | None = None) -> int:
    """Held actions go back to pending when their integration resumes. Returns how many were released.

    The catch-up policy says what happens to those that fell due while it waited: ``all`` are due now;
    ``skip_older_than`` skips those due more than ``hours`` ago; ``spread`` spreads the overdue ones evenly
    over the next ``hours``. Actions whose time is still ahead keep it.
    """
    at = now()
    held = of_integration(integration_id, ActionState.HELD)
    if policy == "skip_older_than" and hours:
        session.execute(
            update(Action)
            .where(*held, Action.run_at < at - timedelta(hours=hours))
            .values(
                state=ActionState.SKIPPED,
                reason_code="catch_up_skipped",
                reason_text=f"due more than {hours:g} hours before the app resumed; skipped by the catch-up policy",
                caused_by="merchant",
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
    spread = 0
    if policy == "spread" and hours:
        overdue = session.scalars(
            select(Action.id).where(*held, Action.run_at <= at).order_by(Action.run_at, Action.id)
        )
        ids = list(overdue)
        step = timedelta(hours=hours) / max(len(ids), 1)
        for n, action_id in enumerate(ids):
            spread += transition(
                session,
                action_id,
                expected=ActionState.HELD,
                state=ActionState.PENDING,
                run_at=at + step * n,
                reason_code="catch_up_spread",
                reason_text=f"spread over {hours:g} hours after the app resumed",
            )
    result = session.execute(
        update(Action)
        .where(*held)
        .values(
            state=ActionState.PENDING,
            run_at=case((Action.run_at < at, at), else_=Action.run_at),
            reason_code=None,
            reason_text=None,
            updated_at=at,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount + spread  # type: ignore[attr-defined,no-any-return]
