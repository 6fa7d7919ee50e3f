"""Triggers received now and processed a moment later: POST /triggers with ``Prefer: respond-async`` (PostgreSQL).

Taking a trigger in this way costs one narrow row (``received_triggers``: its body as it came, its dedupe key and the
id its trigger will have) and no flow matching at all, so a sender that does not need the actions in the answer,
like Klaviyo's and Segment's event APIs, is answered sooner and more of them fit on the same CPUs. The dispatcher
then folds what waits, in the order it came, a batch at a time, through the same set-based path as
POST /triggers/bulk (``hub.bulk_ingest``): the triggers, customers and actions are what posting each trigger on
its own would have made, with the batch's one difference (an order stopper in the batch stops its order for the
whole batch). A received row and what it becomes are exchanged in one transaction, so a trigger is processed once.

The database stays the truth: the answer comes after the row is committed, and Redis is not involved.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from hub import bulk_ingest, pgraw
from hub.caches import StoreConfigCache
from hub.db import Database, any_of
from hub.models import ReceivedTrigger, Store, Trigger, table_of
from hub.runtime import collector_paused

log = logging.getLogger(__name__)

FOLD_BATCH = 1000  # received triggers folded a transaction: what POST /triggers/bulk takes a request
# One folder at a time (pg_try_advisory_xact_lock), so two dispatchers never fold a store's triggers out of order.
FOLD_LOCK = 0x7469_6469_6E67  # "tiding"

_RECEIVED = table_of(ReceivedTrigger)


@functools.cache
def _receive_sql(rows: int) -> str:
    """``rows`` triggers received unless processed before (triggers) or received before (the unique key): no row
    then. Each one's id is taken from the triggers' sequence now, for the answer to name it; rows go in the order
    given."""
    values = ", ".join(
        f"(${4 * n + 1}::integer, ${4 * n + 2}::text, ${4 * n + 3}::text, ${4 * n + 4}::text, {n})" for n in range(rows)
    )
    triggers = table_of(Trigger).name
    return f"""
INSERT INTO {_RECEIVED.name} (store_id, trigger_id, dedupe_key, idempotency_key, body, received_at)
SELECT v.store_id, nextval('{triggers}_id_seq'), v.dedupe_key, v.idempotency_key, v.body, now()
FROM (VALUES {values}) AS v (store_id, dedupe_key, idempotency_key, body, n)
WHERE NOT EXISTS (SELECT 1 FROM {triggers} t WHERE t.store_id = v.store_id AND t.dedupe_key = v.dedupe_key)
ORDER BY v.n
ON CONFLICT (store_id, dedupe_key) DO NOTHING
RETURNING store_id, dedupe_key, trigger_id
"""


MAX_GROUP = 32  # received triggers written together at most (a process has a few request threads)


class ReceiveError(RuntimeError):
    """A received trigger's write failed (its cause is the database's error); nothing of it was stored."""


@dataclass(eq=False)
class _Arrival:
    store_id: int
    key: str
    idempotency_key: str | None
    body: str
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to write the next group, not with its answer
    trigger_id: int | None = None
    error: BaseException | None = None


class Receiver:
    """Receives triggers for one process, writing those that arrive together in one statement and one commit.

    A commit costs PostgreSQL a flush of its log: measured here ~60–70 µs of its CPU a row when each of eight
    connections commits its own row, ~26–35 µs when each commits rows two to four at a time. The first request to
    arrive writes at once; those that arrive while it writes wait, and the first of them then writes them all
    (there is no writer thread: a request alone pays nothing more). Each is answered only after the commit that
    holds its row, as before. PostgreSQL only."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._waiting: list[_Arrival] = []
        self._writing = False

    def receive(self, store_id: int, key: str, idempotency_key: str | None, body: str) -> int | None:
        """Store a trigger to be processed; the id its trigger will have, or None when a trigger with the same dedupe
        key was received or processed before."""
        arrival = _Arrival(store_id, key, idempotency_key, body)
        with self._lock:
            self._waiting.append(arrival)
            lead = not self._writing
            self._writing = True
        if not lead:
            arrival.done.wait()
            if not arrival.lead:
                return self._answer(arrival)
        self._write_group()
        return self._answer(arrival)

    @staticmethod
    def _answer(arrival: _Arrival) -> int | None:
        if arrival.error is not None:
            # The group's one error, chained to a new exception in each of its requests' threads.
            raise ReceiveError("the trigger could not be stored") from arrival.error
        return arrival.trigger_id

    def _write_group(self) -> None:
        """Write what waits (this thread's trigger among it), answer each, then hand the writing on."""
        with self._lock:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
        try:
            written = self._write(group)
            for arrival in group:
                # A key twice in one group: the first is received, the other is a duplicate of it.
                arrival.trigger_id = written.pop((arrival.store_id, arrival.key), None)
        except BaseException as error:  # each request of the group fails with it
            for arrival in group:
                arrival.error = error
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].done.set()
                else:
                    self._writing = False
            for arrival in group:
                arrival.done.set()

    def _write(self, group: list[_Arrival]) -> dict[tuple[int, str], int]:
        params: list[Any] = []
        for arrival in group:
            params += (arrival.store_id, arrival.key, arrival.idempotency_key, arrival.body)
        with self._db.statements() as work:
            cursor = pgraw.raw_cursor(work)
            cursor.execute(_receive_sql(len(group)), params)
            return {(store_id, key): int(trigger_id) for store_id, key, trigger_id in cursor.fetchall()}


@dataclass(frozen=True)
class Waiting:
    """A received trigger not processed yet (or that failed to be)."""

    trigger_id: int
    type: str | None
    received_at: datetime
    error: str | None


def waiting(
    session: Session, store_id: int, *, key: str | None = None, trigger_id: int | None = None
) -> Waiting | None:
    """The store's received trigger with this dedupe key or trigger id, if it waits to be processed."""
    statement = select(_RECEIVED.c.trigger_id, _RECEIVED.c.body, _RECEIVED.c.received_at, _RECEIVED.c.error).where(
        _RECEIVED.c.store_id == store_id
    )
    if key is not None:
        statement = statement.where(_RECEIVED.c.dedupe_key == key)
    if trigger_id is not None:
        statement = statement.where(_RECEIVED.c.trigger_id == trigger_id)
    row = session.execute(statement.limit(1)).first()
    if row is None:
        return None
    return Waiting(row.trigger_id, _type_of(row.body), row.received_at, row.error)


def _type_of(body: str) -> str | None:
    try:
        found = orjson.loads(body).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def fold_once(db: Database, cache: StoreConfigCache | None = None, limit: int = FOLD_BATCH) -> int:
    """Process up to ``limit`` received triggers, oldest first, in one transaction; how many were taken.

    A store's triggers go through ``bulk_ingest.ingest_many`` together, in a savepoint: if that fails, its rows stay,
    marked failed with the error (logged), and are not taken again; the other stores' go ahead. The rows of a store
    that no longer exists are dropped. Nothing to do (or another folder at work, or SQLite) answers 0."""
    if not db.is_postgresql:
        return 0
    # The collector paused, as for a bulk request (hub.api.triggers): a batch is tens of thousands of objects alive
    # until it is written, which collections set off meanwhile would walk again and again.
    with collector_paused(), db.session() as session:
        if not session.scalar(select(func.pg_try_advisory_xact_lock(FOLD_LOCK))):
            return 0
        rows = session.execute(
            _oldest(
                failed=False,
                columns=("id", "store_id", "trigger_id", "idempotency_key", "body", "received_at"),
                limit=limit,
            )
        ).all()
        if not rows:
            session.rollback()
            return 0
        by_store: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            by_store[row.store_id].append(row)
        failed: dict[int, str] = {}
        for store_id, group in by_store.items():
            store = session.get(Store, store_id)
            if store is None:
                continue  # deleted since: its rows go
            try:
                with session.begin_nested():
                    failed.update(_fold(session, store, group, cache))
            except Exception as error:  # one store's failure must not hold up the others
                log.exception("could not process %d received triggers of store %s", len(group), store_id)
                failed.update((row.id, f"{type(error).__name__}: {error}") for row in group)
        now = datetime.now(UTC)
        for row_id, why in failed.items():
            session.execute(update(_RECEIVED).where(_RECEIVED.c.id == row_id).values(failed_at=now, error=why[:2000]))
        done = [row.id for row in rows if row.id not in failed]
        if done:
            session.execute(delete(_RECEIVED).where(any_of(_RECEIVED.c.id, done, "postgresql")))
        session.commit()
        return len(rows)


def _oldest(*, failed: bool, columns: tuple[str, ...], limit: int) -> Select[Any]:
    """The received triggers that failed to be processed, or those that wait, oldest first."""
    condition = _RECEIVED.c.failed_at.is_not(None) if failed else _RECEIVED.c.failed_at.is_(None)
    return select(*(_RECEIVED.c[name] for name in columns)).where(condition).order_by(_RECEIVED.c.id).limit(limit)


def _fold(session: Session, store: Store, rows: Sequence[Any], cache: StoreConfigCache | None) -> dict[int, str]:
    """One store's received triggers, as a bulk request of them would be taken; the rows that could not be, with
    why (a body that no longer loads: the schema changed since it was received)."""
    items: list[Any] = []
    for row in rows:
        data = orjson.loads(row.body)
        if isinstance(data, dict):
            data.pop("idempotency_key", None)  # a single trigger's comes from its header
            if row.idempotency_key is not None:
                data["idempotency_key"] = row.idempotency_key
            if data.get("occurred_at") is None:
                data["occurred_at"] = row.received_at.isoformat()  # it happened when it was received, not now
        items.append(data)
    valid, rejected = bulk_ingest.validate(items)
    failed = {rows[r.index].id: f"invalid: {orjson.dumps(r.errors).decode()}" for r in rejected}
    bulk_ingest.ingest_many(
        session, store, valid, cache=cache, trigger_ids={index: rows[index].trigger_id for index, _ in valid}
    )
    return failed


def backlog(session: Session, store_id: int | None = None) -> tuple[int, int]:
    """How many received triggers wait to be processed, and how many failed to be (of one store, or of all)."""
    statement = select(
        func.count().filter(_RECEIVED.c.failed_at.is_(None)),
        func.count().filter(_RECEIVED.c.failed_at.is_not(None)),
    )
    if store_id is not None:
        statement = statement.where(_RECEIVED.c.store_id == store_id)
    waiting_count, failed_count = session.execute(statement).one()
    return int(waiting_count), int(failed_count)


@dataclass(frozen=True)
class Failed:
    trigger_id: int
    store_id: int
    received_at: datetime
    failed_at: datetime
    error: str


def failed(session: Session, store_id: int | None = None, limit: int = 100) -> list[Failed]:
    """Received triggers that could not be processed, oldest first (of one store, or of all)."""
    statement = _oldest(
        failed=True, columns=("trigger_id", "store_id", "received_at", "failed_at", "error"), limit=limit
    )
    if store_id is not None:
        statement = statement.where(_RECEIVED.c.store_id == store_id)
    return [Failed(*row) for row in session.execute(statement)]


def retry(session: Session, store_id: int | None = None) -> int:
    """Let the dispatcher take the failed received triggers (of one store, or of all) again; how many. The caller
    commits."""
    statement = update(_RECEIVED).where(_RECEIVED.c.failed_at.is_not(None)).values(failed_at=None, error=None)
    if store_id is not None:
        statement = statement.where(_RECEIVED.c.store_id == store_id)
    return session.execute(statement).rowcount  # type: ignore[attr-defined,no-any-return]
