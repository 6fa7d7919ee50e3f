"""Test fixtures: a real database (PostgreSQL when reachable, else SQLite) and a real Redis (the local
server when reachable, else the embedded one), created fresh for the run and emptied between tests.

Set TIDINGS_TEST_DATABASE=sqlite to force SQLite, or TIDINGS_TEST_POSTGRES_URL / TIDINGS_TEST_REDIS_URL
to point at other servers.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from hub import runtime as runtime_module
from hub.app import create_app
from hub.config import Config, load
from hub.migrate import upgrade
from hub.models import Base, Store
from hub.runtime import Runtime
from hub.stores import create_store, create_token

POSTGRES_URL = os.environ.get("TIDINGS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("TIDINGS_TEST_DATABASE") != "sqlite" and _reachable("127.0.0.1", 5432):
        name = f"tidings_test_{os.getpid()}_{secrets.token_hex(3)}"
        admin = create_engine(
            POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
        yield url
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'tidings.db'}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("TIDINGS_TEST_REDIS") != "embedded" and _reachable("127.0.0.1", 6379):
        # Database numbers of their own (one per xdist worker), so other data on db 0 is left alone.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        yield REDIS_URL.rsplit("/", 1)[0] + f"/{10 + int(worker) % 6}"
    else:
        from hub import embedded_redis

        instance = tmp_path_factory.mktemp("redis")
        yield embedded_redis.ensure_running(instance)
        embedded_redis.stop(instance)


@pytest.fixture(scope="session")
def live_port() -> int:
    return _free_port()


@pytest.fixture(scope="session")
def base_config(database_url: str, redis_url: str, live_port: int, tmp_path_factory: pytest.TempPathFactory) -> Config:
    config = load(
        {},
        instance_path=Path(tmp_path_factory.mktemp("instance")),
        database_url=database_url,
        redis_url=redis_url,
        secret_keys=(Fernet.generate_key().decode(),),
        public_url=f"http://127.0.0.1:{live_port}",
        # Short schedules so retry stories run in a test; the default is Svix-like (see hub.config).
        retry_schedule=(5.0, 300.0, 1800.0),
        lease_seconds=30.0,
        testing=True,
    )
    rt = Runtime(config)
    upgrade(rt.db)
    rt.close()
    return config


TABLES = [t.name for t in reversed(Base.metadata.sorted_tables)]


@pytest.fixture
def rt(base_config: Config) -> Iterator[Runtime]:
    runtime = Runtime(base_config)
    with runtime.db.engine.begin() as conn:
        if runtime.db.is_postgresql:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
    runtime.redis.flushdb()
    runtime_module.set_current(runtime)
    yield runtime
    runtime_module.set_current(None)
    runtime.close()


@pytest.fixture
def app(rt: Runtime) -> Flask:
    app = create_app(rt.config)
    app.extensions["tidings"] = rt  # share the test's runtime (and its connection pools)
    return app


@dataclass
class Tenant:
    store: Store
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_tenant(rt: Runtime, name: str = "Acme") -> Tenant:
    with rt.db.transaction() as session:
        store = create_store(session, name)
        _, token = create_token(session, store.id, "tests")
    return Tenant(store, token)


@pytest.fixture
def tenant(rt: Runtime) -> Tenant:
    return make_tenant(rt)


class Api:
    """A test client that sends the tenant's token."""

    def __init__(self, client: FlaskClient, tenant: Tenant) -> None:
        self.client, self.tenant = client, tenant

    def __getattr__(self, method: str) -> Any:
        def call(path: str, **kwargs: Any) -> Any:
            headers = {**self.tenant.headers, **kwargs.pop("headers", {})}
            return getattr(self.client, method)(path, headers=headers, **kwargs)

        return call


@pytest.fixture
def api(app: Flask, tenant: Tenant) -> Api:
    return Api(app.test_client(), tenant)


@pytest.fixture
def live_server(app: Flask, live_port: int) -> Iterator[str]:
    """The hub's web app on a real port: the built-in sandbox platform is served from here."""
    server = make_server("127.0.0.1", live_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{live_port}"
    server.shutdown()
    thread.join()


def run_worker(rt: Runtime) -> None:
    """Run an rq SimpleWorker in this process until the queue is empty."""
    from rq import SimpleWorker

    SimpleWorker([rt.queue], connection=rt.redis).work(burst=True, with_scheduler=False)


@pytest.fixture
def redis_client(rt: Runtime) -> redis.Redis:
    return rt.redis
