"""Real processes: two dispatchers and two workers at once, and a worker killed mid-delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rq import Worker
from sqlalchemy import func, select

from connectors.http import HttpClient
from hub import flows
from hub.dispatch import dispatch_once
from hub.models import Action, Store
from hub.runtime import Runtime
from tests.conftest import Api, run_worker

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A platform on 127.0.0.1 that dedupes on the idempotency key (webhook-id), like the real ones."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.hang = threading.Event()  # set: the next request blocks until released
        self.release = threading.Event()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("webhook-id", "")
                with receiver.lock:
                    receiver.calls[key] += 1
                receiver.arrived.set()
                if receiver.hang.is_set():
                    receiver.release.wait(30)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def child_env(rt: Runtime, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_DATABASE_URL=rt.config.database_url,
        HUB_REDIS_URL=rt.redis_url,
        HUB_SECRET_KEYS=",".join(rt.config.secret_keys),
        HUB_INSTANCE_PATH=str(rt.config.instance_path),
        HUB_PUBLIC_URL=rt.config.public_url,
        HUB_ALLOW_PRIVATE_DESTINATIONS="true",
        HUB_LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def spawn(rt: Runtime, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub", *args],
        env=child_env(rt, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def seed(rt: Runtime, api: Api, url: str, count: int) -> None:
    answer = api.post(
        "/api/v1/integrations",
        json={"app": "webhook", "credentials": {"signing_secret": SECRET}, "settings": {"url": url}},
    )
    assert answer.status_code == 201, answer.json
    with rt.db.transaction() as session:
        store = session.scalars(select(Store)).one()
        for n in range(count):
            data = {
                "type": "review.submitted",
                "customer": {"email": f"c{n}@example.com"},
                "review": {"id": f"r-{n}", "rating": 5, "product_id": "p-1"},
            }
            flows.ingest(session, store, data)


def states(rt: Runtime) -> dict[str, int]:
    with rt.db.session() as session:
        return dict(session.execute(select(Action.state, func.count()).group_by(Action.state)).all())  # type: ignore[arg-type]


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_two_dispatchers_and_two_workers_deliver_every_action_exactly_once(
    api: Api, rt: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 300
    seed(rt, api, receiver.url, count)
    settings = {"HUB_DISPATCH_INTERVAL": "0.02", "HUB_DISPATCH_BATCH": "15", "HUB_JOB_BATCH": "5"}
    processes = [spawn(rt, "dispatch", **settings) for _ in range(2)]
    processes += [spawn(rt, "worker", "--count", "1", **settings) for _ in range(2)]
    try:
        finished = wait_until(lambda: states(rt).get("delivered") == count, timeout=120)
    finally:
        stop_all(processes)
    errors = b"".join(p.stderr.read() for p in processes if p.stderr)
    assert finished, (states(rt), errors.decode()[-3000:])
    assert len(receiver.calls) == count  # none lost
    assert max(receiver.calls.values()) == 1  # none sent twice
    with rt.db.session() as session:
        assert session.scalar(select(func.max(Action.attempt_count))) == 1


def test_a_killed_workers_action_is_claimed_again_after_its_lease_and_delivered(
    api: Api, rt: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(rt.__dict__, "http", HttpClient(allow_private=True))  # the receiver is on 127.0.0.1
    monkeypatch.setattr(rt, "config", replace(rt.config, lease_seconds=3))  # the dispatcher's claim sets the lease
    seed(rt, api, receiver.url, 1)
    receiver.hang.set()
    worker = spawn(rt, "worker", "--count", "1", HUB_LEASE_SECONDS="3")
    try:
        # Claimed once the worker listens, so the short lease is not spent waiting for the process to start.
        assert wait_until(lambda: bool(Worker.all(connection=rt.redis)), timeout=30), "the worker never started"
        dispatch_once(rt)
        assert receiver.arrived.wait(30), "the worker never called the platform"
        worker.send_signal(signal.SIGKILL)  # dies mid-delivery, holding the action under its lease
        worker.wait(10)
    finally:
        stop_all([worker])
    assert states(rt) == {"sending": 1}
    receiver.hang.clear()
    receiver.release.set()

    assert dispatch_once(rt) == 0  # the lease still runs
    assert wait_until(lambda: dispatch_once(rt) == 1, timeout=10)  # ...then it runs out and the action is re-claimed
    run_worker(rt)

    assert states(rt) == {"delivered": 1}
    [key] = receiver.calls
    assert receiver.calls[key] == 2  # sent again with the same key: the platform dedupes it


def test_a_private_destination_is_refused_unless_allowed(api: Api, rt: Runtime, receiver: Receiver) -> None:
    seed(rt, api, receiver.url, 1)
    dispatch_once(rt)
    run_worker(rt)
    with rt.db.session() as session:
        action = session.scalars(select(Action)).one()
    assert (action.state, action.reason_code) == ("failed", "rejected")
    assert "destination not allowed" in (action.reason_text or "")
    assert not receiver.calls
