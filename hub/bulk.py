"""Operations over many actions: a list of ids, everything matching a filter, or an uploaded CSV.

A dry run answers with the count, a sample and a per-app breakdown. A real run records a bulk_operations row
and applies the operation a batch at a time, each batch one transaction of conditional UPDATEs (so it races
the dispatcher safely: what a worker holds is left alone). Up to ``BACKGROUND_THRESHOLD`` actions run within
the request; more run as an rq job whose progress the row reports. A bulk cancel can be undone for
``UNDO_SECONDS``: the actions it cancelled (tagged with its id) whose time has not passed go back.
"""

from __future__ import annotations

import bisect
import csv
import io
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from hub import audit, operations, queries
from hub.models import OPEN_STATES, Action, ActionState, BulkOperation
from hub.operations import BULK_ALLOWED, OperationError
from hub.outbox import new_lease, now
from schemas.common import MAX_ID
from schemas.filters import ActionFilter

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger(__name__)

BACKGROUND_THRESHOLD = 10_000  # more actions than this run as a background job
UNDO_SECONDS = 24 * 3600  # how long a bulk cancel can be undone
CHUNK = 1000  # actions per transaction
SAMPLE = 10
MAX_UNMATCHED = 1000  # unmatched upload rows reported
RUN_JOB = "jobs.bulk.run"
JOB_TIMEOUT = 6 * 3600
LEASE_SECONDS = 300  # a run renews it with every batch; a lost run is started again once it runs out
QUEUED_GRACE_SECONDS = 60  # a queued operation younger than this may not have reached Redis yet
MAX_RESUMES = 5

_filter_schema = ActionFilter()


@dataclass
class Preview:
    total: int = 0
    by_app: dict[str, int] = field(default_factory=dict)
    not_applicable: dict[str, int] = field(default_factory=dict)
    sample: list[Action] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)


def _chunks(ids: list[int], size: int = CHUNK) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def applicable(operation: str, at: datetime) -> tuple[ColumnElement[bool], ...]:
    """The states (and, for restore, the times) an operation may change."""
    where: tuple[ColumnElement[bool], ...] = (Action.state.in_(BULK_ALLOWED[operation]),)
    if operation == "restore":
        where += (Action.run_at > at,)
    return where


def check_ids(session: Session, store_id: int, ids: list[int]) -> None:
    """Every id must be an action of this store: another store's ids are as unknown as made-up ones."""
    found: set[int] = set()
    wanted = sorted({i for i in ids if i <= MAX_ID})
    for chunk in _chunks(wanted):
        found.update(session.scalars(select(Action.id).where(Action.store_id == store_id, Action.id.in_(chunk))))
    missing = sorted(set(ids) - found)
    if missing:
        shown = ", ".join(str(i) for i in missing[:20]) + (" …" if len(missing) > 20 else "")
        raise OperationError(
            404, f"{len(missing)} of the ids are not actions of this store: {shown}.", fields={"ids": [shown]}
        )


def _scopes(store_id: int, ids: list[int] | None, filter_: dict[str, Any] | None) -> Iterator[list[Any]]:
    if ids is not None:
        for chunk in _chunks(sorted(set(ids))):
            yield [Action.store_id == store_id, Action.id.in_(chunk)]
    else:
        yield queries.conditions(store_id, filter_ or {})


def preview(
    session: Session, store_id: int, operation: str, *, ids: list[int] | None = None, filter_: dict[str, Any] | None
) -> Preview:
    at = now()
    ok = applicable(operation, at)
    result = Preview()
    by_app: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for scope in _scopes(store_id, ids, filter_):
        # One grouped count per scope: applicable or not, by app, and by state for those left alone.
        in_time = (Action.run_at > at).label("ahead")
        rows = session.execute(
            select(Action.state, Action.app, in_time, func.count())
            .where(*scope)
            .group_by(Action.state, Action.app, in_time)
        ).all()
        for state, app, ahead, count in rows:
            if state in BULK_ALLOWED[operation] and (operation != "restore" or ahead):
                by_app[app or "-"] += count
            else:
                other[state if state != ActionState.CANCELLED or ahead else "cancelled_past_due"] += count
        if len(result.sample) < SAMPLE:
            result.sample += session.scalars(
                select(Action).where(*scope, *ok).order_by(Action.id).limit(SAMPLE - len(result.sample))
            ).all()
    result.total = sum(by_app.values())
    result.by_app, result.not_applicable = dict(by_app), dict(other)
    return result


def _serialise(params: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if v not in (None, False)}
    if isinstance(out.get("until"), datetime):
        out["until"] = out["until"].isoformat()
    return out


def _arguments(params: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {k: params[k] for k in ("reason", "days", "until", "new_key") if params.get(k) is not None}
    if isinstance(args.get("until"), str):
        args["until"] = datetime.fromisoformat(args["until"])
    return args


def start(
    rt: Runtime,
    session: Session,
    store_id: int,
    actor: str,
    data: dict[str, Any],
    *,
    progress: Callable[[int], None] | None = None,
    background: bool | None = None,
) -> tuple[BulkOperation | None, Preview]:
    """Check, preview, and (unless a dry run) record and run or enqueue a bulk operation.

    ``data`` is a loaded schemas.outbox.BulkIn: operation, ids or filter, dry_run, and the operation's arguments.
    Returns the operation row (None for a dry run) and the preview. ``background`` forces the choice between
    running here and an rq job (the CLI runs here, with a progress bar); by default it follows the threshold.
    """
    operation = data["operation"]
    ids = data.get("ids")
    filter_ = data.get("filter")
    operations.check_arguments(operation, data)
    if ids is not None:
        check_ids(session, store_id, ids)
    result = preview(session, store_id, operation, ids=ids, filter_=filter_)
    if data.get("dry_run"):
        return None, result
    params = _serialise({k: data.get(k) for k in operations.PARAMETERS[operation]})
    if ids is not None:
        params["ids"] = sorted(set(ids))
    else:
        params["filter"] = _filter_schema.dump(filter_ or {})
        # Exactly what matched when asked: actions that arrive while it runs are not swept up.
        params["max_id"] = session.scalar(select(func.max(Action.id)).where(Action.store_id == store_id)) or 0
    op = BulkOperation(
        store_id=store_id, operation=operation, params=params, state="queued", total=result.total, created_by=actor
    )
    session.add(op)
    session.flush()
    audit.record(
        session,
        store_id,
        actor,
        f"bulk_{operation}",
        details={k: v for k, v in params.items() if k != "ids"} | {"total": result.total},
        bulk_operation_id=op.id,
        summary=True,
    )
    session.commit()
    if background if background is not None else result.total > BACKGROUND_THRESHOLD:
        try:
            enqueue(rt, op)
        except redis.RedisError as error:
            _finish(session, op.id, "failed", f"could not start the background job: {error}")
            session.refresh(op)
            raise OperationError(503, "The background job could not be started; try again.") from None
    else:
        run(rt, op.id, progress=progress)
    session.refresh(op)
    return op, result


def next_chunk(session: Session, op: BulkOperation, after: int) -> list[int]:
    """The next batch of ids a recorded operation works through: those above ``after``."""
    if "ids" in op.params:
        ids: list[int] = op.params["ids"]
        start = bisect.bisect_right(ids, after)
        return ids[start : start + CHUNK]
    f = _filter_schema.load(op.params.get("filter") or {})
    allowed = BULK_ALLOWED[op.operation]
    if set(allowed) <= set(OPEN_STATES):  # found through open_actions, not by walking the store's closed actions
        wanted = [state for state in allowed if state in (queries.states_of(f) or allowed)]
        if not wanted:
            return []
        f = {**f, "state": wanted}
    statement = select(Action.id).where(
        *queries.conditions(op.store_id, f),
        *applicable(op.operation, now()),
        Action.id > after,
        Action.id <= op.params.get("max_id", MAX_ID),
    )
    return list(session.scalars(statement.order_by(Action.id).limit(CHUNK)))


def job_id(op: BulkOperation) -> str:
    """The rq job of the operation's current run (a new one each time the sweep starts it again)."""
    return f"bulk-{op.id}-{op.resumes}"


def enqueue(rt: Runtime, op: BulkOperation) -> None:
    rt.queue.enqueue(RUN_JOB, op.id, job_id=job_id(op), job_timeout=JOB_TIMEOUT, result_ttl=3600, failure_ttl=7 * 86400)


class LeaseLost(Exception):
    """Another run took the operation over (this one's lease ran out): this run stops, changing nothing more."""


def _claim(rt: Runtime, operation_id: int) -> tuple[BulkOperation | None, str | None]:
    """Take the operation: queued, or running under a lease that ran out (its run was lost). Returns the row
    and the lease token, or no token when it is not this run's to do."""
    token, at = new_lease(), now()
    with rt.db.transaction() as session:
        taken = session.execute(
            update(BulkOperation)
            .where(
                BulkOperation.id == operation_id,
                or_(
                    BulkOperation.state == "queued",
                    and_(
                        BulkOperation.state == "running",
                        or_(BulkOperation.lease_expires_at.is_(None), BulkOperation.lease_expires_at < at),
                    ),
                ),
            )
            .values(state="running", lease_token=token, lease_expires_at=at + timedelta(seconds=LEASE_SECONDS))
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        op = session.get(BulkOperation, operation_id)
    return op, token if taken == 1 else None


def run(rt: Runtime, operation_id: int, *, progress: Callable[[int], None] | None = None) -> BulkOperation | None:
    """Work through a recorded operation (within a request, from the CLI, or as the rq job): one transaction
    per batch, so progress shows and a failure part way keeps what was done.

    Each batch commits with the id it reached and a renewed lease, so a run that dies (worker killed, job lost
    with Redis) is started again by the sweep from exactly where it stopped: no action is done twice, none is
    skipped. A run whose lease ran out (another run took over) stops at its next batch, which rolls back."""
    op, token = _claim(rt, operation_id)
    if op is None or token is None:
        return op
    args = _arguments(op.params)
    after = op.resume_after
    try:
        while True:
            with rt.db.transaction() as session:
                chunk = next_chunk(session, op, after)
                if not chunk:
                    break
                done = operations.apply(
                    rt, session, op.store_id, op.operation, chunk, args, op.created_by, bulk_operation_id=op.id
                )
                kept = session.execute(
                    update(BulkOperation)
                    .where(BulkOperation.id == op.id, BulkOperation.lease_token == token)
                    .values(
                        done=BulkOperation.done + len(chunk),
                        changed=BulkOperation.changed + len(done.moved),
                        resume_after=chunk[-1],
                        lease_expires_at=now() + timedelta(seconds=LEASE_SECONDS),
                    )
                    .execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
                if kept != 1:
                    raise LeaseLost
            after = chunk[-1]
            operations.hand_over(rt, done.claimed)
            if progress:
                progress(len(chunk))
    except LeaseLost:
        log.warning("bulk operation %s: another run took it over; this one stops", op.id)
        with rt.db.session() as session:
            return session.get(BulkOperation, op.id)
    except Exception as error:
        log.exception("bulk operation %s failed", op.id)
        with rt.db.session() as session:
            _finish(session, op.id, "failed", str(error)[:500], token=token)
        raise
    with rt.db.session() as session:
        _finish(session, op.id, "done", token=token)
        return session.get(BulkOperation, op.id)


def _finish(
    session: Session, operation_id: int, state: str, error: str | None = None, *, token: str | None = None
) -> None:
    """End an operation; with ``token``, only if that run still holds it."""
    at = now()
    values: dict[str, Any] = {"state": state, "error": error, "finished_at": at, "lease_expires_at": None}
    if state == "done" and session.get_one(BulkOperation, operation_id).operation == "cancel":
        values["undo_until"] = at + timedelta(seconds=UNDO_SECONDS)
    where = [BulkOperation.id == operation_id]
    if token is not None:
        where.append(BulkOperation.lease_token == token)
    session.execute(update(BulkOperation).where(*where).values(**values).execution_options(synchronize_session=False))
    session.commit()
    session.expire_all()  # rows this session loaded are read again


def sweep(rt: Runtime, at: datetime | None = None) -> list[int]:
    """Start again the background operations whose run was lost: running under a lease that ran out (the
    worker died, or the process that ran it inline), or queued with no rq job left for them (Redis lost it).
    An operation lost ``MAX_RESUMES`` times fails with a message instead. Returns the ids started again.
    The dispatcher runs this every ``HOUSEKEEPING_SECONDS``; several dispatchers at once start each once."""
    at = at or now()
    restarted: list[int] = []
    with rt.db.session() as session:
        candidates = session.scalars(
            select(BulkOperation).where(
                BulkOperation.state.in_(("queued", "running")),
                BulkOperation.created_at < at - timedelta(seconds=QUEUED_GRACE_SECONDS),
                or_(BulkOperation.lease_expires_at.is_(None), BulkOperation.lease_expires_at < at),
            )
        ).all()
        for op in candidates:
            if op.state == "queued" and _job_alive(rt, job_id(op)):
                continue  # waiting its turn in the queue
            if op.resumes >= MAX_RESUMES:
                _finish(session, op.id, "failed", f"The background job was lost {op.resumes + 1} times; giving up.")
                continue
            moved = session.execute(
                update(BulkOperation)
                .where(
                    BulkOperation.id == op.id,
                    BulkOperation.state == op.state,
                    BulkOperation.resumes == op.resumes,
                    or_(BulkOperation.lease_expires_at.is_(None), BulkOperation.lease_expires_at < at),
                )
                .values(resumes=BulkOperation.resumes + 1, lease_expires_at=None)  # free for the new run to take
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            session.commit()
            if moved != 1:
                continue  # another dispatcher got there first
            session.refresh(op)
            try:
                enqueue(rt, op)
            except redis.RedisError:
                log.warning("bulk operation %s: could not enqueue it again; the next sweep tries again", op.id)
                continue
            log.warning("bulk operation %s: its run was lost; started again after action %s", op.id, op.resume_after)
            restarted.append(op.id)
    return restarted


def _job_alive(rt: Runtime, name: str) -> bool:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    try:
        status = Job.fetch(name, connection=rt.redis).get_status()
    except NoSuchJobError:
        return False
    return status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


def find(session: Session, store_id: int, operation_id: int) -> BulkOperation:
    return operations.find_in_store(session, BulkOperation, store_id, operation_id, "bulk operation")


def undo(rt: Runtime, session: Session, store_id: int, operation_id: int, actor: str) -> tuple[BulkOperation, int]:
    """Restore what a bulk cancel cancelled, while the undo window is open; actions whose time has passed
    stay cancelled. Returns the operation and how many actions came back."""
    op = find(session, store_id, operation_id)
    if op.operation != "cancel":
        raise OperationError(
            409, f"Only a bulk cancel can be undone; this was a {op.operation}.", current_state=op.state
        )
    if op.state != "done":
        raise OperationError(409, f"Bulk operation {op.id} is {op.state}: it cannot be undone.", current_state=op.state)
    if op.undo_until is None or op.undo_until < now():
        raise OperationError(409, f"The undo window of bulk operation {op.id} has closed.", current_state=op.state)
    ids = list(
        session.scalars(
            select(Action.id).where(
                Action.store_id == store_id,
                Action.bulk_operation_id == op.id,
                Action.state == ActionState.CANCELLED,
            )
        )
    )
    restored = 0
    for chunk in _chunks(ids):
        restored += len(operations.apply(rt, session, store_id, "restore", chunk, {"undo_of": op.id}, actor).moved)
    audit.record(
        session, store_id, actor, "undo", details={"restored": restored}, bulk_operation_id=op.id, summary=True
    )
    op.state = "undone"
    session.commit()
    return op, restored


# -- uploaded lists --------------------------------------------------------------------------------

HEADERS = {"email": "email", "phone": "phone", "order_id": "order_id", "order": "order_id", "order id": "order_id"}


def read_upload(text: str, match: str | None) -> list[tuple[int, str, str]]:
    """(row number, value, what it is) for every non-empty row of an uploaded CSV; a header row may name the
    column. Values are recognised one by one unless ``match`` says what they all are."""
    rows: list[tuple[int, str, str]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        value = (row[0] if row else "").strip().lstrip("\ufeff")
        if not value:
            continue
        if number == 1 and value.lower() in HEADERS:
            match = match or HEADERS[value.lower()]
            continue
        kind = match or ("email" if "@" in value else "phone" if value.startswith("+") else "order_id")
        rows.append((number, value.lower() if kind == "email" else value, kind))
    return rows


def match_upload(
    session: Session, store_id: int, operation: str, rows: list[tuple[int, str, str]]
) -> tuple[list[int], list[dict[str, Any]]]:
    """The applicable actions the rows select, and the rows that selected none."""
    columns = {
        "email": func.lower(Action.target["email"].as_string()),
        "phone": Action.target["phone"].as_string(),
        "order_id": Action.order_id,
    }
    values: dict[str, set[str]] = defaultdict(set)
    for _, value, kind in rows:
        values[kind].add(value)
    ok = applicable(operation, now())
    ids: set[int] = set()
    hit: set[tuple[str, str]] = set()
    for kind, wanted in values.items():
        column = columns[kind]
        ordered = sorted(wanted)
        for i in range(0, len(ordered), CHUNK):
            found = session.execute(
                select(Action.id, column).where(Action.store_id == store_id, column.in_(ordered[i : i + CHUNK]), *ok)
            ).all()
            for action_id, value in found:
                ids.add(action_id)
                hit.add((kind, value))
    unmatched = [{"row": n, "value": v} for n, v, kind in rows if (kind, v) not in hit]
    return sorted(ids), unmatched[:MAX_UNMATCHED]
