"""The `hub` command. Every failure a user can cause ends in a message and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from hub.config import ConfigError, load
from hub.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn expected failures (bad config, unreachable database or Redis) into a message and exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from sqlalchemy.exc import OperationalError

        from hub.embedded_redis import EmbeddedRedisError
        from hub.integrations import IntegrationError

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
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn workers")
@friendly
def web(host: str, port: int, workers: int) -> None:
    """Serve the API with gunicorn."""
    load()  # fail here, with a clear message, rather than in every gunicorn worker
    os.execvp(sys.executable, [sys.executable, "-m", "gunicorn", *gunicorn_args(host, port, workers)])


def gunicorn_args(host: str, port: int, workers: int) -> list[str]:
    return ["hub.app:create_app()", "--bind", f"{host}:{port}", "--workers", str(workers), "--no-control-socket"]


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
    """Run the dispatcher: claim due actions and enqueue them."""
    import logging
    import signal
    import threading

    from hub.dispatch import dispatch_once
    from jobs.dispatch import run

    rt = runtime()
    logging.basicConfig(level=rt.config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if once:
        click.echo(f"claimed {dispatch_once(rt)} actions")
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run(rt, stop)


# -- events -----------------------------------------------------------------------------------------


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
