"""The `hub` command. Every failure a user can cause ends in a message and a non-zero exit, never a traceback."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from hub import serving
from hub.config import ConfigError, load
from hub.runtime import Runtime, settle

F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn expected failures (bad config, unreachable database or Redis) into a message and exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from sqlalchemy.exc import OperationalError

        from hub.embedded_redis import EmbeddedRedisError
        from hub.integrations import IntegrationError
        from hub.operations import OperationError

        try:
            return func(*args, **kwargs)
        except ConfigError as error:
            raise click.ClickException(f"configuration: {error}") from None
        except OperationalError as error:
            raise click.ClickException(f"database: {str(error.orig).strip().splitlines()[0]}") from None
        except (RedisConnectionError, EmbeddedRedisError) as error:
            raise click.ClickException(f"redis: {error}") from None
        except IntegrationError as error:
            details = _messages(error.fields) if error.fields else ""
            raise click.ClickException(error.message + (f" ({details})" if details else "")) from None
        except OperationError as error:
            details = _messages(error.fields) if error.fields else ""
            raise click.ClickException(error.message + (f" ({details})" if details else "")) from None

    return wrapper  # type: ignore[return-value]


def runtime() -> Runtime:
    return Runtime(load())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tidings: review-request flows to marketing platforms, through an outbox you can see and steer.

    Configure with HUB_* environment variables (see the README). With none, the hub keeps a SQLite
    database and runs an embedded Redis under ./instance.
    """


# -- database ---------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@friendly
def db_upgrade() -> None:
    """Apply migrations (safe to run from several processes at once)."""
    from hub.migrate import current, upgrade

    rt = runtime()
    upgrade(rt.db)
    click.echo(f"database at revision {current(rt.db)}")


@db.command("rebuild-open-actions")
@friendly
def db_rebuild_open_actions() -> None:
    """Rebuild open_actions (the outbox's index of pending, held and in-flight actions) from the actions, and
    reinstall its triggers, in one transaction. For a restore that brought back one table without the other: the
    application keeps it exact on its own. On PostgreSQL other readers and writers of actions wait until it commits."""
    from sqlalchemy import func, select

    from hub import open_actions
    from hub.models import OpenAction

    rt = runtime()
    with rt.db.engine.begin() as connection:
        open_actions.install(connection, backfill=True)
        count = connection.scalar(select(func.count()).select_from(OpenAction))
    click.echo(f"open_actions rebuilt: {count} open actions")


@db.command("prune-orphan-attempts")
@friendly
def db_prune_orphan_attempts() -> None:
    """Delete attempts whose action is gone. Attempts have no foreign key (hub.cascades): one written while its
    store was being deleted can outlive its action, reachable by nothing. Safe to run at any time."""
    from hub import cascades

    rt = runtime()
    with rt.db.engine.begin() as connection:
        count = cascades.prune_orphans(connection)
    click.echo(f"{count} orphan attempts deleted")


# -- stores and tokens ------------------------------------------------------------------------------


@main.group()
def stores() -> None:
    """Stores (merchants)."""


@stores.command("create")
@click.argument("name")
@click.option("--prefix", default=None, help="Prefix for event names (default: the store name). Use '' for none.")
@friendly
def stores_create(name: str, prefix: str | None) -> None:
    """Create a store with its two default flows."""
    from hub.stores import create_store

    name = name.strip()
    if not name or len(name) > 200:
        raise click.BadParameter("must be 1 to 200 characters", param_hint="NAME")
    with runtime().db.transaction() as session:
        store = create_store(session, name, prefix)
        click.echo(f"store {store.id} created: {store.name}")


@main.group()
def tokens() -> None:
    """API tokens."""


@tokens.command("create")
@click.option("--store", "store_id", type=int, required=True, help="Store id.")
@click.option("--name", default="", help="A label to tell tokens apart.")
@friendly
def tokens_create(store_id: int, name: str) -> None:
    """Create an API token. It is shown once; only its hash is kept."""
    from hub.models import Store
    from hub.stores import create_token

    with runtime().db.transaction() as session:
        if session.get(Store, store_id) is None:
            raise click.ClickException(f"no store {store_id}")
        _, token = create_token(session, store_id, name)
    click.echo(token)


# -- processes --------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=serving.WORKERS, show_default=True, type=click.IntRange(1, 64), help="processes")
@click.option(
    "--threads", default=serving.THREADS, show_default=True, type=click.IntRange(1, 64), help="threads per process"
)
@click.option("--access-log", is_flag=True, help="Log every request to standard output.")
@friendly
def web(host: str, port: int, workers: int, threads: int, access_log: bool) -> None:
    """Serve the API and the web UI with gunicorn (threaded workers; see docs/operations.md)."""
    load()  # fail here, with a clear message, rather than in every gunicorn worker
    args = serving.gunicorn_args(f"{host}:{port}", workers=workers, threads=threads, access_log=access_log)
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", *args])


@main.command()
@click.option("--count", default=None, type=click.IntRange(1, 64), help="worker processes (default HUB_WORKERS)")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@friendly
def worker(count: int | None, burst: bool) -> None:
    """Run rq workers that deliver actions (no fork per job)."""
    from redis import Redis
    from rq import SimpleWorker
    from rq.worker_pool import WorkerPool

    config = load()
    rt = Runtime(config)
    url = rt.redis_url  # starts the embedded Redis if that is the configuration
    os.environ["HUB_REDIS_URL"] = url  # worker processes build their runtime from the environment
    connection = Redis.from_url(url)
    count = count or config.workers
    settle()  # before the fork: the worker processes inherit it
    if count == 1:
        SimpleWorker([config.queue], connection=connection).work(burst=burst, logging_level=config.log_level)
    else:
        WorkerPool([config.queue], connection=connection, num_workers=count, worker_class=SimpleWorker).start(
            burst=burst, logging_level=config.log_level
        )


@main.command()
@click.option("--once", is_flag=True, help="Run one round and exit.")
@friendly
def dispatch(once: bool) -> None:
    """Run the dispatcher: process received triggers, claim due actions and enqueue them."""
    import logging
    import signal
    import threading

    from hub.dispatch import dispatch_once, fold_received, housekeeping
    from jobs.dispatch import run

    rt = runtime()
    logging.basicConfig(level=rt.config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if once:
        housekeeping(rt)
        click.echo(f"processed {fold_received(rt)} received triggers, claimed {dispatch_once(rt)} actions")
        return
    settle()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run(rt, stop)


# -- events -----------------------------------------------------------------------------------------


@main.group()
def triggers() -> None:
    """Triggers: import many at once; see what was received for later."""


@triggers.command("import")
@click.option("--store", "store_id", type=int, required=True, help="Store id.")
@click.argument("source", type=click.File("r", encoding="utf-8-sig"))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["ndjson", "csv"]),
    default=None,
    help="Default: from the file name (.csv is CSV; anything else NDJSON).",
)
@click.option("--chunk", type=click.IntRange(1, 1000), default=1000, show_default=True, help="Triggers per commit.")
@friendly
def triggers_import(store_id: int, source: Any, file_format: str | None, chunk: int) -> None:
    """Import the triggers of SOURCE (a file, or - for standard input) as POST /triggers/bulk takes them.

    NDJSON: one trigger (JSON) per line. CSV: a header naming each column by its field's dotted path
    (type, occurred_at, idempotency_key, customer.email, order.id, order.items.0.product_id,
    order.items.0.name, review.rating, ...), then one trigger per row; empty cells are left out.
    Every chunk is committed on its own; triggers seen before are duplicates and create nothing. Rejected
    lines are listed with their field errors, and then the command exits with status 1.
    """
    from hub import bulk_ingest

    name = getattr(source, "name", "") or ""
    if file_format is None:
        file_format = "csv" if name.lower().endswith(".csv") else "ndjson"
    lines = source.readlines()
    try:
        items = list(bulk_ingest.read_csv(lines) if file_format == "csv" else bulk_ingest.read_ndjson(lines))
    except bulk_ingest.HeaderError as error:
        raise click.UsageError(f"{name}: {error}") from None
    except csv.Error as error:
        raise click.UsageError(f"{name}: not readable as CSV: {error}") from None
    if not items:
        raise click.ClickException(f"no triggers in {name}")
    rt = runtime()
    with rt.db.session() as session:
        _store(session, store_id)
    with click.progressbar(length=len(items), label="importing") as bar:
        report = bulk_ingest.import_triggers(
            rt.db, store_id, items, chunk=chunk, cache=rt.caches.stores, progress=bar.update
        )
    for line, errors in report.rejected:
        click.echo(f"line {line}: {_messages(errors)}", err=True)
    click.echo(f"accepted {report.accepted}, duplicates {report.duplicates}, rejected {len(report.rejected)}")
    if report.rejected:
        sys.exit(1)


@triggers.command("received")
@click.option("--store", "store_id", type=int, default=None, help="Store id (default: every store).")
@click.option("--retry", is_flag=True, help="Let the dispatcher take the failed ones again.")
@friendly
def triggers_received(store_id: int | None, retry: bool) -> None:
    """Triggers received with `Prefer: respond-async`: how many wait for the dispatcher, and those it could not
    process, with why (oldest first, up to 100)."""
    from hub import inbox

    rt = runtime()
    with rt.db.session() as session:
        if store_id is not None:
            _store(session, store_id)
        if retry:
            count = inbox.retry(session, store_id)
            session.commit()
            click.echo(f"{count} failed received triggers will be processed again")
            return
        waiting, failed = inbox.backlog(session, store_id)
        click.echo(f"waiting {waiting}, failed {failed}")
        for row in inbox.failed(session, store_id):
            received = f"{row.received_at:%Y-%m-%d %H:%M:%S}"
            click.echo(f"trigger {row.trigger_id} (store {row.store_id}) received {received}: {row.error}")


@main.group()
def events() -> None:
    """Integration events."""


@events.command("test")
@click.argument("app")
@click.option("--store", "store_id", type=int, required=True, help="Store id.")
@click.option("--email", default=None)
@click.option("--phone", default=None, help="E.164, e.g. +14155550123")
@click.option("--event", "event_name", default="Test Event", show_default=True)
@click.option("--wait", default=15.0, show_default=True, help="Seconds to wait for the outcome (0: don't wait).")
@friendly
def events_test(app: str, store_id: int, email: str | None, phone: str | None, event_name: str, wait: float) -> None:
    """Send a manual test event to APP and show what was sent and answered."""
    import marshmallow as ma

    from hub.manual import send_test_event
    from hub.models import Store
    from schemas.integrations import TestEventIn

    target = {k: v for k, v in (("email", email), ("phone", phone)) if v}
    try:
        data = TestEventIn().load({"target": target, "event": event_name})
    except ma.ValidationError as error:
        raise click.UsageError(_messages(error.messages)) from None
    rt = runtime()
    with rt.db.session() as session:
        store = session.get(Store, store_id)
        if store is None:
            raise click.ClickException(f"no store {store_id}")
        action = send_test_event(rt, session, store, app, data)
    click.echo(f"action {action.id}: {action.state}")
    if wait > 0:
        _show_outcome(rt, action.id, wait)


def _messages(messages: Any) -> str:
    from hub.api import flatten

    return "; ".join(
        f"{path}: {' '.join(msgs)}" if path != "_body" else " ".join(msgs) for path, msgs in flatten(messages).items()
    )


def _show_outcome(rt: Runtime, action_id: int, wait: float) -> None:
    from sqlalchemy import select

    from hub.models import FINAL_STATES, Action, Attempt

    deadline = time.monotonic() + wait
    while True:
        with rt.db.session() as session:
            action = session.get(Action, action_id)
            assert action is not None
            attempts = session.scalars(select(Attempt).where(Attempt.action_id == action_id).order_by(Attempt.id)).all()
            if action.state in FINAL_STATES or attempts or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    click.echo(
        f"state: {action.state}" + (f" ({action.reason_code}: {action.reason_text})" if action.reason_code else "")
    )
    for attempt in attempts:
        click.echo(
            f"attempt {attempt.number}: {attempt.outcome} HTTP {attempt.http_status} in {attempt.duration_ms} ms"
        )
        click.echo("  sent: " + json.dumps(attempt.request, indent=2).replace("\n", "\n  "))
        click.echo(f"  answered: {attempt.response}")
    if not attempts and action.state not in FINAL_STATES:
        click.echo("no attempt yet: is a worker running? (hub worker, or hub up)")
        raise SystemExit(1)
    if action.state in ("failed", "skipped"):
        raise SystemExit(1)


# -- outbox -----------------------------------------------------------------------------------------


@main.group()
def outbox() -> None:
    """Steer the outbox: list, send now, delay, cancel, restore, replay, explain, bulk operations, audit.

    Every operation is recorded in the audit log as done by "cli".
    """


store_option = click.option("--store", "store_id", type=int, required=True, help="Store id.")


def _store(session: Any, store_id: int) -> Any:
    from hub.models import Store

    store = session.get(Store, store_id)
    if store is None:
        raise click.ClickException(f"no store {store_id}")
    return store


def _load(schema: Any, data: dict[str, Any]) -> dict[str, Any]:
    import marshmallow as ma

    try:
        return dict(schema.load(data))
    except ma.ValidationError as error:
        raise click.UsageError(_messages(error.messages)) from None


def _filter(pairs: tuple[str, ...]) -> dict[str, Any]:
    from schemas.filters import ActionFilter

    raw: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: use name=value, e.g. state=pending", param_hint="--filter")
        raw[key.strip()] = value.strip()
    return _load(ActionFilter(), raw)


def _row(action: Any) -> str:
    target = action.target or {}
    who = target.get("email") or target.get("phone") or target.get("external_id") or "-"
    reason = f"  {action.reason_code}" if action.reason_code else ""
    return (
        f"{action.id:>8}  {action.state:<9} {action.run_at:%Y-%m-%d %H:%M}  {action.app or action.channel or '-':<12} "
        f"{(action.event_name or '-')[:32]:<32} {who}{reason}"
    )


@outbox.command("list")
@store_option
@click.option("--view", type=click.Choice(["queue", "incomplete", "all"]), default="queue", show_default=True)
@click.option("--filter", "filters", multiple=True, help="name=value, as the API's filter (repeatable).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@friendly
def outbox_list(store_id: int, view: str, filters: tuple[str, ...], limit: int) -> None:
    """List actions: the Queue (soonest first), Incomplete, or all (newest first)."""
    from hub import queries
    from hub.models import OPEN_STATES, Action

    f = _filter(filters)
    if view != "all" and not f.get("state"):
        f["state"] = ["pending", "held"] if view == "queue" else ["cancelled", "skipped", "failed"]
    with runtime().db.session() as session:
        _store(session, store_id)
        if view == "queue" and set(queries.states_of(f)) <= set(OPEN_STATES):
            statement = queries.queue(store_id, f).order_by(*queries.QUEUE_ORDER)
        elif view == "queue":
            statement = queries.actions(store_id, f).order_by(Action.run_at, Action.id)
        else:
            statement = queries.actions(store_id, f).order_by(Action.id.desc())
        for action in session.scalars(statement.limit(limit)):
            click.echo(_row(action))


def _operate(store_id: int, action_id: int, operation: str, params: dict[str, Any]) -> None:
    from hub import audit, operations

    rt = runtime()
    with rt.db.session() as session:
        _store(session, store_id)
        action = operations.operate(rt, session, store_id, action_id, operation, params, audit.CLI)
        click.echo(f"action {action.id}: {action.state}" + (f" ({action.reason_text})" if action.reason_text else ""))


@outbox.command("send-now")
@store_option
@click.argument("action_id", type=int)
@friendly
def outbox_send_now(store_id: int, action_id: int) -> None:
    """Send a pending or held action now."""
    _operate(store_id, action_id, "send_now", {})


@outbox.command("delay")
@store_option
@click.argument("action_id", type=int)
@click.option("--days", type=int, default=None, help="Move it by N days.")
@click.option("--until", default=None, help="Or move it to this time (ISO 8601, UTC when no offset).")
@friendly
def outbox_delay(store_id: int, action_id: int, days: int | None, until: str | None) -> None:
    """Delay a pending or held action."""
    from schemas.outbox import DelayIn

    raw = {k: v for k, v in (("days", days), ("until", until)) if v is not None}
    _operate(store_id, action_id, "delay", _load(DelayIn(), raw))


@outbox.command("cancel")
@store_option
@click.argument("action_id", type=int)
@click.option("--reason", default=None)
@friendly
def outbox_cancel(store_id: int, action_id: int, reason: str | None) -> None:
    """Cancel a pending or held action."""
    _operate(store_id, action_id, "cancel", {"reason": reason})


@outbox.command("restore")
@store_option
@click.argument("action_id", type=int)
@friendly
def outbox_restore(store_id: int, action_id: int) -> None:
    """Put a cancelled action back in the Queue, while its time has not passed."""
    _operate(store_id, action_id, "restore", {})


@outbox.command("replay")
@store_option
@click.argument("action_id", type=int)
@click.option("--new-key", is_flag=True, help="Send as a new action with a new idempotency key.")
@friendly
def outbox_replay(store_id: int, action_id: int, new_key: bool) -> None:
    """Send a failed, skipped or delivered action again."""
    _operate(store_id, action_id, "replay", {"new_key": new_key})


@outbox.command("explain")
@store_option
@click.argument("action_id", type=int)
@friendly
def outbox_explain(store_id: int, action_id: int) -> None:
    """Why an action is where it is: guards, timing, attempts, operations."""
    from hub import explain, operations

    rt = runtime()
    with rt.db.session() as session:
        _store(session, store_id)
        found = explain.explain(rt, session, operations.find(session, store_id, action_id))
    click.echo(f"action {found['id']}: {found['state']}. {found['summary']}")
    for g in found["guards"]:
        click.echo(f"  {'ok  ' if g['passed'] else 'STOP'} {g['code']:<28} {g['text']}")
    timing = found["timing"]
    click.echo(
        f"  trigger at {timing['trigger_time']}, delay {timing['delay_seconds']} s, run at {timing['run_at']}, "
        f"{timing['failures']} failures, {timing['retries_left']} retries left"
    )
    if timing["quiet_hours"]:
        click.echo(f"  quiet hours: {timing['quiet_hours']['text']}")
    for attempt in found["attempts"]:
        click.echo(
            f"  attempt {attempt.number}: {attempt.outcome} HTTP {attempt.http_status} in {attempt.duration_ms} ms"
        )
    for entry in found["audit"]:
        click.echo(f"  {entry.created_at:%Y-%m-%d %H:%M:%S} {entry.operation} by {entry.actor}")


@outbox.command("bulk")
@store_option
@click.argument("operation", type=click.Choice(["send_now", "delay", "cancel", "restore", "replay"]))
@click.option("--ids", default=None, help="Comma-separated action ids.")
@click.option("--filter", "filters", multiple=True, help="name=value, as the API's filter (repeatable).")
@click.option(
    "--file",
    "upload",
    type=click.File("r", encoding="utf-8-sig"),
    default=None,
    help="A CSV of emails, phones or order ids.",
)
@click.option("--reason", default=None)
@click.option("--days", type=int, default=None)
@click.option("--until", default=None)
@click.option("--new-key", is_flag=True)
@click.option("--dry-run", is_flag=True, help="Only show what would change.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@friendly
def outbox_bulk(
    store_id: int,
    operation: str,
    ids: str | None,
    filters: tuple[str, ...],
    upload: Any,
    reason: str | None,
    days: int | None,
    until: str | None,
    new_key: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Apply OPERATION to --ids, to everything matching --filter, or to what a --file selects."""
    from hub import audit, bulk
    from schemas.outbox import BulkIn

    if sum(bool(x) for x in (ids, filters, upload)) != 1:
        raise click.UsageError("give exactly one of --ids, --filter or --file")
    raw: dict[str, Any] = {"operation": operation, "new_key": new_key}
    raw.update({k: v for k, v in (("reason", reason), ("days", days), ("until", until)) if v is not None})
    unmatched: list[dict[str, Any]] = []
    rt = runtime()
    with rt.db.session() as session:
        _store(session, store_id)
        if ids:
            try:
                raw["ids"] = [int(i) for i in ids.split(",") if i.strip()]
            except ValueError:
                raise click.BadParameter("comma-separated integers", param_hint="--ids") from None
        elif filters:
            raw["filter"] = {}
        else:
            raw["ids"] = [1]  # replaced below by what the file selects
        data = _load(BulkIn(), raw)
        if filters:
            data["filter"] = _filter(filters)
        if upload is not None:
            data["ids"], unmatched = bulk.match_upload(
                session, store_id, operation, bulk.read_upload(upload.read(), None)
            )
            for row in unmatched:
                click.echo(f"row {row['row']} matched nothing: {row['value']}")
            if not data["ids"]:
                click.echo("nothing to do")
                return
        _, preview = bulk.start(rt, session, store_id, audit.CLI, {**data, "dry_run": True})
        session.rollback()  # hold no lock while the user reads and answers
        apps = ", ".join(f"{app}: {n}" for app, n in sorted(preview.by_app.items())) or "none"
        others = ", ".join(f"{state}: {n}" for state, n in sorted(preview.not_applicable.items()))
        click.echo(f"{operation}: {preview.total} actions ({apps})" + (f"; left alone: {others}" if others else ""))
        if dry_run or not preview.total:
            return
        if not yes:
            click.confirm(f"{operation} {preview.total} actions?", abort=True)
        with click.progressbar(length=preview.total, label=operation) as bar:
            op, _ = bulk.start(rt, session, store_id, audit.CLI, data, progress=bar.update, background=False)
    assert op is not None
    click.echo(f"bulk operation {op.id}: {op.state}, {op.changed} of {op.total} changed")


@outbox.command("undo")
@store_option
@click.argument("bulk_operation_id", type=int)
@friendly
def outbox_undo(store_id: int, bulk_operation_id: int) -> None:
    """Undo a bulk cancel (while its undo window is open)."""
    from hub import audit, bulk

    rt = runtime()
    with rt.db.session() as session:
        _store(session, store_id)
        op, restored = bulk.undo(rt, session, store_id, bulk_operation_id, audit.CLI)
    click.echo(f"bulk operation {op.id}: {restored} actions restored")


@outbox.command("audit")
@store_option
@click.option("--action", "action_id", type=int, default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@friendly
def outbox_audit(store_id: int, action_id: int | None, limit: int) -> None:
    """Manual operations on the outbox, newest first: who, when, what."""
    from sqlalchemy import select

    from hub.models import AuditEntry

    with runtime().db.session() as session:
        _store(session, store_id)
        statement = select(AuditEntry).where(AuditEntry.store_id == store_id)
        if action_id:
            statement = statement.where(AuditEntry.action_id == action_id)
        for entry in session.scalars(statement.order_by(AuditEntry.id.desc()).limit(limit)):
            target = f"action {entry.action_id}" if entry.action_id else f"bulk {entry.bulk_operation_id}"
            click.echo(f"{entry.created_at:%Y-%m-%d %H:%M:%S}  {entry.actor:<20} {entry.operation:<12} {target}")


# -- connectors -------------------------------------------------------------------------------------


@main.group()
def connectors() -> None:
    """Installed connectors."""


@connectors.command("list")
def connectors_list() -> None:
    """Show installed connectors (built-ins and the tidings.connectors entry point)."""
    from connectors import registry

    for key, cls in registry.available().items():
        click.echo(f"{key:<16} {cls.label}")


@connectors.command("check")
@click.argument("key")
def connectors_check(key: str) -> None:
    """Run the connector contract suite (connectors.kit) against the installed connector KEY."""
    import tempfile
    from pathlib import Path

    from connectors import registry

    installed = registry.available()
    if key not in installed:
        raise click.ClickException(f"no connector {key!r}; installed: {', '.join(installed)}")
    if not installed[key].example_settings:
        raise click.ClickException(f"{key} declares no example_settings, so the suite has nothing to load")
    try:
        import pytest
        import responses  # noqa: F401  (the kit needs it)
    except ImportError:
        raise click.ClickException("the contract suite needs the test extra: pip install 'tidings[test]'") from None
    with tempfile.TemporaryDirectory() as folder:
        module = Path(folder) / f"test_{key}_contract.py"
        module.write_text(
            "from connectors import registry\n"
            "from connectors.kit import ConnectorContract\n\n\n"
            "class TestContract(ConnectorContract):\n"
            f"    connector_class = registry.available()[{key!r}]\n"
            "    sample_settings = connector_class.example_settings\n"
        )
        code = pytest.main([str(module), "-q", "-p", "no:cacheprovider", "--rootdir", folder, "-W", "ignore"])
    raise SystemExit(int(code))


# -- all together -----------------------------------------------------------------------------------


@main.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16), help="rq worker processes")
@click.option("--demo", is_flag=True, help="Create a demo store with a sandbox integration and sample triggers.")
@friendly
def up(port: int, workers: int, demo: bool) -> None:
    """Run web, workers and the dispatcher together; Ctrl-C stops them all."""
    from hub import up as runner

    runner.run(load(public_url=f"http://127.0.0.1:{port}"), port=port, workers=workers, demo=demo)


if __name__ == "__main__":
    main()
