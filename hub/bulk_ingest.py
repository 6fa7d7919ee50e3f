"""Many triggers at once (POST /triggers/bulk, `hub triggers import`): the same outcome as posting each in turn,
written set-based in one transaction.

Each trigger is validated on its own, so a bad one is rejected with its field errors and the rest go in.
Repeats are found within the batch and against the database by the same dedupe keys as a single trigger.
The writes are a handful of multi-row statements whatever the batch size: customers (new ones in one
INSERT, changed ones in one executemany), triggers (one INSERT ... ON CONFLICT DO NOTHING RETURNING),
the order stoppers' cancellations, the guards' four lookups, and the actions (one INSERT ... RETURNING).

Where a batch differs from posting one by one: an order stopper (order.cancelled, order.refunded) anywhere
in the batch stops its order for the whole batch, so a review request for that order earlier in the same
batch is created skipped (order_cancelled) rather than pending and then cancelled.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.orm import Session

from hub import flows, pgcopy
from hub.caches import StoreConfigCache
from hub.db import any_of
from hub.models import Action, ActionState, Actor, Customer, Store, Trigger, table_of
from hub.runtime import collector_paused
from schemas.triggers import ORDER_STOPPERS, BulkTriggerIn

_item_schema = BulkTriggerIn()  # valid items take its compiled fast path (TriggerIn.load)


@dataclass
class ItemResult:
    index: int
    status: str  # accepted | duplicate | rejected
    trigger_id: int | None = None
    actions: list[int] = field(default_factory=list)
    cancelled: int = 0
    errors: dict[str, list[str]] | None = None


def validate(items: Sequence[Any]) -> tuple[list[tuple[int, dict[str, Any]]], list[ItemResult]]:
    """Each item loaded on its own: (index, data) of the valid ones, and a rejected result for each other."""
    from hub.api import flatten  # the API's dotted field paths, so the CLI reports the same names

    valid: list[tuple[int, dict[str, Any]]] = []
    rejected: list[ItemResult] = []
    for index, item in enumerate(items):
        if isinstance(item, ItemError):
            rejected.append(ItemResult(index, "rejected", errors={"_body": [item.message]}))
            continue
        try:
            valid.append((index, _item_schema.load(item)))
        except ma.ValidationError as error:
            rejected.append(ItemResult(index, "rejected", errors=flatten(error.messages)))
    return valid, rejected


@dataclass(frozen=True)
class ItemError:
    """An item that could not even be read (a line of NDJSON that is not JSON)."""

    message: str


def parse_ndjson(text: str) -> list[Any]:
    """One JSON object per line; blank lines are skipped, an unreadable line becomes an ItemError."""
    return [item for _, item in read_ndjson(text.splitlines())]


def read_ndjson(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(line number, trigger or ItemError) for each line that is not blank."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            yield number, ItemError(f"Not valid JSON: {error.msg} at column {error.colno}.")


def read_csv(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(line number, trigger or ItemError) for each row of a CSV whose header names each column by its field's
    dotted path, as field errors name them: ``type``, ``customer.email``, ``order.id``, ``order.items.0.name``
    (a number is a position in a list), ``review.rating``. Empty cells are left out."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    paths = csv_columns(header)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(paths):
            yield reader.line_num, ItemError(f"{len(row)} cells, but the header names {len(paths)} columns.")
            continue
        item: dict[str, Any] = {}
        for path, cell in zip(paths, row, strict=False):
            if cell.strip():
                _put(item, path, cell.strip())
        yield reader.line_num, item


class HeaderError(ValueError):
    """A CSV header whose columns cannot all be fields of one trigger."""


def csv_columns(header: list[str]) -> list[list[str | int]]:
    """Each column's path; HeaderError when one is empty, repeated, or contradicts another (``customer`` and
    ``customer.email``; ``order.items.0`` and ``order.items.name``)."""
    paths: list[list[str | int]] = []
    shapes: dict[tuple[str | int, ...], str] = {}  # a prefix → "list" | "dict" | "value"
    done: set[tuple[str | int, ...]] = set()
    for name in header:
        parts = name.strip().split(".")
        if not all(parts) or parts[0].isdigit():
            raise HeaderError(f"column {name!r}: name a field by its dotted path, e.g. customer.email")
        path: list[str | int] = [int(p) if p.isdigit() else p for p in parts]
        for depth in range(len(path)):
            prefix = tuple(path[: depth + 1])
            shape = "value" if depth == len(path) - 1 else ("list" if isinstance(path[depth + 1], int) else "dict")
            seen = shapes.setdefault(prefix, shape)
            if seen != shape or (shape == "value" and prefix in done):
                raise HeaderError(f"column {name!r} contradicts another column")
        done.add(tuple(path))
        paths.append(path)
    return paths


def _put(tree: Any, path: list[str | int], value: Any) -> None:
    for key, following in itertools.pairwise(path):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(tree, list):
            assert isinstance(key, int)
            while len(tree) <= key:
                tree.append(None)
            if tree[key] is None:
                tree[key] = empty
            tree = tree[key]
        else:
            tree = tree.setdefault(key, empty)
    last = path[-1]
    if isinstance(tree, list):
        assert isinstance(last, int)
        while len(tree) <= last:
            tree.append(None)
    tree[last] = value


@dataclass
class ImportReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, dict[str, list[str]]]] = field(default_factory=list)  # (line, field errors)


def import_triggers(
    database: Any,
    store_id: int,
    items: Iterable[tuple[int, Any]],
    *,
    chunk: int = 1000,
    cache: StoreConfigCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Ingest numbered items (from read_ndjson or read_csv) in chunks, each committed on its own, as
    POST /triggers/bulk would; what became of them, with the line and field errors of each rejected one."""
    report = ImportReport()
    for batch in _chunks(items, chunk):
        with collector_paused():
            valid, rejected = validate([item for _, item in batch])
            with database.transaction() as session:
                store = session.get(Store, store_id)
                results = ingest_many(session, store, valid, cache=cache)
        report.accepted += sum(1 for r in results if r.status == "accepted")
        report.duplicates += sum(1 for r in results if r.status == "duplicate")
        report.rejected.extend((batch[r.index][0], r.errors or {}) for r in rejected)
        if progress is not None:
            progress(len(batch))
    return report


def ingest_many(
    session: Session,
    store: Store,
    items: Sequence[tuple[int, dict[str, Any]]],
    *,
    cache: StoreConfigCache | None = None,
    trigger_ids: Mapping[int, int] | None = None,
) -> list[ItemResult]:
    """Record valid triggers (``(index, data)``, data as BulkTriggerIn loads it) and their actions.

    ``trigger_ids`` gives the id a trigger is to have, by index, when one was taken for it beforehand (a received
    trigger's, hub.inbox). The caller commits. Results come in the order of ``items``.
    """
    results: dict[int, ItemResult] = {}
    keyed = [(index, data, flows.dedupe_key(data, data.get("idempotency_key"))) for index, data in items]

    # Repeats within the batch answer with the first; repeats of earlier triggers with what those created.
    first_of: dict[str, int] = {}
    fresh: list[tuple[int, dict[str, Any], str]] = []
    repeats: list[tuple[int, str]] = []
    for index, data, key in keyed:
        if key in first_of:
            repeats.append((index, key))
        else:
            first_of[key] = index
            fresh.append((index, data, key))
    known = _existing_triggers(session, store.id, [key for _, _, key in fresh])
    new = [(index, data, key) for index, data, key in fresh if key not in known]

    version = session.scalar(select(Store.config_version).where(Store.id == store.id)) or 0
    config = flows.store_config(session, store.id, version, cache)
    customer_ids = _write_customers(session, store.id, [data["customer"] for _, data, _ in new])

    now = datetime.now(UTC)
    triggers: list[tuple[int, dict[str, Any], flows.NewTrigger]] = []
    for (index, data, key), customer_id in zip(new, customer_ids, strict=True):
        payload = dict(data)
        payload.pop("idempotency_key", None)
        trigger = flows.NewTrigger(
            store_id=store.id,
            type=data["type"],
            dedupe_key=key,
            order_id=(data.get("order") or {}).get("id"),
            customer_id=customer_id,
            occurred_at=data.get("occurred_at") or now,
            payload=pgcopy.json_text(payload, default=str),  # as JSON text, what is written (_insert_triggers)
            created_at=now,
        )
        if trigger_ids is not None:
            trigger.id = trigger_ids[index]
        triggers.append((index, payload, trigger))
    inserted = _insert_triggers(session, [t for _, _, t in triggers])
    lost: list[str] = []
    for _, _, trigger in triggers:
        trigger.id = inserted.get(trigger.dedupe_key)  # type: ignore[assignment]
        if trigger.id is None:  # a concurrent request stored the same trigger first
            lost.append(trigger.dedupe_key)
    if lost:
        known.update(_existing_triggers(session, store.id, lost))
    triggers = [t for t in triggers if t[2].id is not None]

    cancelled = _stop_orders(session, store.id, [(index, t) for index, _, t in triggers])
    actions_of: dict[int, list[flows.NewAction]] = {}
    everything: list[flows.NewAction] = []
    builder = flows.ActionBuilder(store, config)
    for index, payload, trigger in triggers:
        actions_of[index] = builder.build(payload, trigger)
        everything.extend(actions_of[index])
    flows.apply_guards(session, everything, config.integrations_by_id(), quiet_hours={store.id: config.quiet_hours})
    _skip_repeats_within(everything)
    flows.insert_actions(session, everything)

    for index, _, trigger in triggers:
        results[index] = ItemResult(
            index, "accepted", trigger.id, [a.id for a in actions_of[index]], cancelled.get(index, 0)
        )
    action_ids = _action_ids(session, [known[k] for k in known])
    for index, _, key in fresh:
        if index not in results:
            results[index] = ItemResult(index, "duplicate", known[key], action_ids.get(known[key], []))
    for index, key in repeats:
        first = results[first_of[key]]
        results[index] = ItemResult(index, "duplicate", first.trigger_id, list(first.actions))
    return [results[index] for index, _ in items]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _existing_triggers(session: Session, store_id: int, keys: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(keys, 1000):
        statement = select(Trigger.dedupe_key, Trigger.id).where(
            Trigger.store_id == store_id, any_of(Trigger.dedupe_key, chunk, _dialect(session))
        )
        found.update((key, trigger_id) for key, trigger_id in session.execute(statement))
    return found


def _action_ids(session: Session, trigger_ids: list[int]) -> dict[int, list[int]]:
    found: dict[int, list[int]] = defaultdict(list)
    for chunk in _chunks(trigger_ids, 1000):
        for trigger_id, action_id in session.execute(
            select(Action.trigger_id, Action.id)
            .where(any_of(Action.trigger_id, chunk, _dialect(session)))
            .order_by(Action.id)
        ):
            found[trigger_id].append(action_id)  # type: ignore[index]
    return found


def _insert_triggers(session: Session, triggers: list[flows.NewTrigger]) -> dict[str, int]:
    """Store the triggers (each payload as JSON text); dedupe key → id of each one stored (one a concurrent request
    stored first is left out).

    COPY when it can, since the batch's keys were checked just before; if a concurrent request stored one
    of them in between, the savepoint goes and a multi-row INSERT ... ON CONFLICT DO NOTHING does it."""
    if not triggers:
        return {}
    table = table_of(Trigger)
    names = _trigger_columns()
    values_of = operator.attrgetter(*names)
    rows = [values_of(t) for t in triggers]
    given = [t.id for t in triggers]
    preset = given if all(i is not None for i in given) else None
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and len(rows) >= pgcopy.MIN_ROWS:
        from psycopg.errors import UniqueViolation

        try:
            with session.begin_nested():
                ids = pgcopy.insert_tuples(session, table, names, rows, json_text=("payload",), ids=preset)
            return {t.dedupe_key: i for t, i in zip(triggers, ids, strict=True)}
        except UniqueViolation:
            pass
    statement = flows.insert_trigger_statement(dialect)
    parameters = [
        {**dict(zip(names, row, strict=True)), "payload": json.loads(t.payload)}  # type: ignore[arg-type]
        | ({"id": t.id} if preset else {})
        for t, row in zip(triggers, rows, strict=True)
    ]
    return dict((key, id_) for id_, key in session.execute(statement, parameters))


@functools.cache
def _trigger_columns() -> tuple[str, ...]:
    return tuple(c.key for c in table_of(Trigger).c if c.key != "id")


class _Customers:
    """The customers a batch names, found as a single trigger finds them (the oldest customer matching
    its external id, email or phone), including those created earlier in the same batch."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []  # existing ones first (by id), then new ones in order
        self.index: dict[tuple[str, str], set[int]] = defaultdict(set)
        self.changed: set[int] = set()

    def add(self, values: dict[str, Any]) -> int:
        position = len(self.records)
        self.records.append(values)
        for name in flows.IDENTITY_FIELDS:
            if values.get(name):
                self.index[(name, values[name])].add(position)
        return position

    def find(self, given: dict[str, Any]) -> int | None:
        """The first record (lowest position) matching any identity given, or None."""
        found = [
            min(positions)
            for name in flows.IDENTITY_FIELDS
            if (value := given.get(name)) and (positions := self.index.get((name, value)))
        ]
        return min(found, default=None)

    def update(self, position: int, given: dict[str, Any]) -> None:
        record = self.records[position]
        for name, value in flows.customer_values(record, given).items():
            if name in flows.IDENTITY_FIELDS and record.get(name):
                self.index[(name, record[name])].discard(position)
            record[name] = value
            if name in flows.IDENTITY_FIELDS:
                self.index[(name, value)].add(position)
            self.changed.add(position)


def _write_customers(session: Session, store_id: int, given: list[dict[str, Any]]) -> list[int]:
    """Create or update each trigger's customer; the customer id of each, in order."""
    book = _Customers()
    values: dict[str, set[str]] = defaultdict(set)
    for customer in given:
        for name in flows.IDENTITY_FIELDS:
            if customer.get(name):
                values[name].add(customer[name])
    table = table_of(Customer)
    columns = [table.c[k] for k in ("id", *flows.CUSTOMER_FIELDS)]
    existing: dict[int, dict[str, Any]] = {}
    for name, wanted in values.items():
        for chunk in _chunks(sorted(wanted), 1000):
            statement = select(*columns).where(
                table.c.store_id == store_id, any_of(table.c[name], chunk, _dialect(session))
            )
            for row in session.execute(statement):
                existing[row.id] = dict(row._mapping)
    for customer_id in sorted(existing):
        book.add(existing[customer_id])
    stored = len(book.records)
    positions = []
    for customer in given:
        position = book.find(customer)
        if position is None:
            position = book.add({"id": None, **{k: customer[k] for k in flows.CUSTOMER_FIELDS if customer.get(k)}})
        else:
            book.update(position, customer)
        positions.append(position)

    now = datetime.now(UTC)
    created = book.records[stored:]
    if created:
        names = ("store_id", "created_at", "updated_at", *flows.CUSTOMER_FIELDS)
        rows = [(store_id, now, now, *map(r.get, flows.CUSTOMER_FIELDS)) for r in created]
        for record, customer_id in zip(created, pgcopy.insert_tuples(session, table, names, rows), strict=True):
            record["id"] = customer_id
    changed = [book.records[p] for p in sorted(book.changed) if p < stored]
    if changed:
        session.execute(
            update(table).where(table.c.id == bindparam("customer_id")),
            [
                {"customer_id": r["id"], "updated_at": now, **{k: r.get(k) for k in flows.CUSTOMER_FIELDS}}
                for r in changed
            ],
        )
    return [book.records[p]["id"] for p in positions]


def _stop_orders(session: Session, store_id: int, triggers: list[tuple[int, flows.NewTrigger]]) -> dict[int, int]:
    """What still waits for an order a stopper names is cancelled; the count per stopper (by item index)."""
    stoppers: dict[str, dict[str, int]] = defaultdict(dict)  # type → order id → first item index
    for index, trigger in triggers:
        if trigger.type in ORDER_STOPPERS and trigger.order_id:
            stoppers[trigger.type].setdefault(trigger.order_id, index)
    counts: dict[int, int] = defaultdict(int)
    for kind, orders in stoppers.items():
        word = kind.split(".")[1]
        for chunk in _chunks(sorted(orders), 1000):
            rows = session.execute(
                update(Action)
                .where(
                    Action.store_id == store_id,
                    any_of(Action.order_id, chunk, _dialect(session)),
                    Action.state.in_((ActionState.PENDING, ActionState.HELD)),
                )
                .values(
                    state=ActionState.CANCELLED,
                    reason_code=f"order_{word}",
                    reason_text=literal("order ") + Action.order_id + literal(f" was {word}"),
                    caused_by=Actor.RULE,
                    updated_at=datetime.now(UTC),
                )
                .returning(Action.order_id)
                .execution_options(synchronize_session=False)
            ).scalars()
            for order_id in rows:
                if order_id is not None:  # the statement names order ids: none is NULL
                    counts[orders[order_id]] += 1
    return counts


def _skip_repeats_within(actions: list[flows.NewAction]) -> None:
    """The duplicate guard, within the batch: a second live action for the same order, customer, app and event
    (two triggers of one order that start flows sending the same event) is skipped, as it would be had the
    triggers come one by one."""
    seen: dict[tuple[Any, ...], flows.NewAction] = {}
    for action in actions:
        if not action.order_id or action.state in (ActionState.SKIPPED, ActionState.CANCELLED):
            continue
        key = (action.store_id, action.order_id, action.customer_id, action.app, action.channel, action.event_name)
        if key in seen:
            action.state, action.reason_code, action.caused_by = ActionState.SKIPPED, "duplicate", Actor.RULE
            action.reason_text = f"already sent for order {action.order_id} by an earlier trigger of the same batch"
        else:
            seen[key] = action


def _chunks(values: Iterable[Any], size: int) -> Iterable[list[Any]]:
    chunk: list[Any] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
