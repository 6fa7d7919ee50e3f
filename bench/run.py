"""One command: set up, measure Tidings against a ceiling measured in the same run, clean up.

    python -m bench                  # full size (about 5 minutes on 2 cores)
    python -m bench --size smoke     # tiny: proves the harness works, figures mean nothing
    python -m bench --only ceiling,P1
    python -m bench --repeat 3       # three whole runs, then each target's figures side by side

Prints the figures, then each target beside what was measured and whether it was met (a smoke run is not judged),
and writes bench/results/<time>.json. See docs/performance.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import requests
import rq
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, func, insert, select, text

from bench import lean_client, report, stub
from connectors.webhook import WebhookConnector
from hub import counters, inbox, serving
from hub.config import load
from hub.delivery import event_from_payload
from hub.flows import idempotency_key, new_event_action
from hub.migrate import upgrade
from hub.models import Action, Integration, Store, Trigger
from hub.runtime import Runtime
from hub.stores import create_store, create_token

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KLAVIYO_KEY = "pk_bench_0123456789abcdef0123456789"
SIZES: dict[str, dict[str, Any]] = {
    "full": {"events": 20_000, "latency": 200, "rows": 1_000_000, "list_calls": 200, "ingest_seconds": 8.0},
    "smoke": {"events": 300, "latency": 10, "rows": 5_000, "list_calls": 10, "ingest_seconds": 1.0},
}
WORKERS = 2  # the hub's worker processes, and the ceiling's loops (--workers)


@dataclass
class Setup:
    database_url: str
    redis_url: str
    secret_key: str
    instance: Path
    stub_url: str
    stub_pid: int = 0
    admin_url: str | None = None
    database_name: str | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(
            HUB_DATABASE_URL=self.database_url,
            HUB_REDIS_URL=self.redis_url,
            HUB_SECRET_KEYS=self.secret_key,
            HUB_INSTANCE_PATH=str(self.instance),
            HUB_ALLOW_PRIVATE_DESTINATIONS="true",
            HUB_LOG_LEVEL="WARNING",
            **extra,
        )  # the dispatcher at its production interval: it wakes when the seeded actions come due (hub.dispatch.pause)
        return env

    def runtime(self) -> Runtime:
        return Runtime(load(self.env()))


# -- setup ------------------------------------------------------------------------------------------


@contextmanager
def prepared(size: str) -> Iterator[Setup]:
    instance = ROOT / "instance" / f"bench-{os.getpid()}"
    instance.mkdir(parents=True, exist_ok=True)
    stub_process, stub_url = stub.start()
    admin_url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    name = f"tidings_bench_{secrets.token_hex(3)}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            # Each figure starts from a checkpoint: the previous figure's writes (P4's seed writes about a gigabyte
            # of WAL, which starts a checkpoint that PostgreSQL spreads over minutes) are not flushed to disk while
            # the next one is measured.
            conn.execute(text("CHECKPOINT"))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    except Exception:  # no PostgreSQL here: the embedded default, and P4 is skipped
        admin, database_url, name = None, f"sqlite:///{instance / 'bench.db'}", None  # type: ignore[assignment]
    setup = Setup(
        database_url=database_url,
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
        secret_key=Fernet.generate_key().decode(),
        instance=instance,
        stub_url=stub_url,
        stub_pid=stub_process.pid or 0,
        admin_url=admin_url if admin else None,
        database_name=name,
    )
    try:
        redis.Redis.from_url(setup.redis_url).ping()
    except redis.RedisError:
        from hub import embedded_redis

        setup.redis_url = embedded_redis.ensure_running(instance)
    rt = setup.runtime()
    upgrade(rt.db)
    rt.close()
    try:
        yield setup
    finally:
        stub_process.terminate()
        from hub import embedded_redis

        embedded_redis.stop(instance)
        shutil.rmtree(instance, ignore_errors=True)
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        redis.Redis.from_url(setup.redis_url).flushdb()


def make_store(setup: Setup, app: str = "webhook") -> tuple[int, int, str]:
    rt = setup.runtime()
    with rt.db.transaction() as session:
        store = create_store(session, "Bench")
        _, token = create_token(session, store.id, "bench")
        if app == "klaviyo":  # the real connector, pointed at the stub (base_url) in bulk mode
            credentials, settings = {"api_key": KLAVIYO_KEY}, {"base_url": setup.stub_url}
        else:
            credentials, settings = {"signing_secret": SIGNING_SECRET}, {"url": f"{setup.stub_url}/hook"}
        integration = Integration(
            store_id=store.id, app=app, credentials=rt.box.encrypt(credentials), settings=settings
        )
        session.add(integration)
        session.flush()
        ids = store.id, integration.id
    rt.close()
    return ids[0], ids[1], token


def seed_actions(setup: Setup, store_id: int, integration_id: int, count: int, run_at: datetime) -> None:
    """N pending actions, written in bulk (the bench measures delivery, not ingest)."""
    rt = setup.runtime()
    with rt.db.transaction() as session:
        store = session.get(Store, store_id)
        integration = session.get(Integration, integration_id)
        assert store and integration
        template: Action = new_event_action(
            store,
            integration,
            name="Review Request",
            event_type="review_request",
            customer={"email": "bench@example.com", "first_name": "Ada"},
            properties={"order_id": "1001", "items": [{"product_id": "p-1", "name": "Linen Shirt", "price": "49.00"}]},
            occurred_at=run_at,
            run_at=run_at,
            trigger="auto",
        )
        base = {c.key: getattr(template, c.key) for c in Action.__table__.columns if c.key != "id"}
        base.update(state="pending", attempt_count=0, failure_count=0, rate_limited_count=0)
        base.update(created_at=datetime.now(UTC), updated_at=datetime.now(UTC))
        rows = []
        for n in range(count):
            key = idempotency_key("bench", n)
            rows.append({**base, "idempotency_key": key, "payload": {**base["payload"], "id": key}})
            if len(rows) == 5000:
                session.execute(insert(Action), rows)
                rows = []
        if rows:
            session.execute(insert(Action), rows)
    rt.close()


def count_state(setup: Setup, state: str) -> int:
    engine = create_engine(setup.database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        value = conn.scalar(select(func.count()).select_from(Action).where(Action.state == state)) or 0
    engine.dispose()
    return value


def spawn(setup: Setup, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        env=setup.env(**extra),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_workers(setup: Setup, count: int, timeout: float = 120.0) -> None:
    """Until ``count`` rq workers have registered (each has started and is waiting for jobs)."""
    connection = redis.Redis.from_url(setup.redis_url)
    deadline = time.monotonic() + timeout
    while rq.Worker.count(connection=connection) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not start within {timeout:.0f} s")
        time.sleep(0.1)
    time.sleep(0.5)  # and the dispatcher, started with them, is past its imports too


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def peak_rss_mb(pids: list[int]) -> float:
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def postgres_pids(database: str | None) -> list[int]:
    """The PostgreSQL backends serving one database (their process titles name it)."""
    if not database:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f" {database} ".encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def stub_stats(setup: Setup) -> dict[str, int]:
    return requests.get(f"{setup.stub_url}/stats", timeout=5).json()  # type: ignore[no-any-return]


def reset_stub(setup: Setup) -> None:
    requests.post(f"{setup.stub_url}/reset", timeout=5)


# -- ceiling ----------------------------------------------------------------------------------------


def _post_loop(url: str, headers: dict[str, str], body: bytes, count: int, start: Any) -> None:
    session = requests.Session()
    start.wait()
    for _ in range(count):
        session.post(url, data=body, headers=headers, timeout=10)


def ceiling(setup: Setup, events: int) -> dict[str, Any]:
    """Bare requests.Session loops posting the webhook's own bodies, one event per request, one per worker."""
    connector = WebhookConnector()
    template: Action = new_event_action(
        Store(id=1, name="Bench", event_prefix="Bench"),
        Integration(id=1, app="webhook", state="connected"),
        name="Review Request",
        event_type="review_request",
        customer={"email": "bench@example.com", "first_name": "Ada"},
        properties={"order_id": "1001", "items": [{"product_id": "p-1", "name": "Linen Shirt", "price": "49.00"}]},
        occurred_at=datetime.now(UTC),
        run_at=datetime.now(UTC),
        trigger="auto",
    )
    request = connector.build_request(
        event_from_payload(template.payload), {"url": f"{setup.stub_url}/hook", "signing_secret": SIGNING_SECRET}
    )
    reset_stub(setup)
    start = multiprocessing.Event()
    per = events // WORKERS
    processes = [
        multiprocessing.Process(target=_post_loop, args=(request.url, dict(request.headers), request.data, per, start))
        for _ in range(WORKERS)
    ]
    for p in processes:
        p.start()
    time.sleep(0.5)
    cpu, stub_cpu = _children_cpu(), cpu_seconds([setup.stub_pid])
    began = time.perf_counter()
    start.set()
    for p in processes:
        p.join()
    elapsed = time.perf_counter() - began
    cpu_end = _children_cpu()  # the loops were reaped by join: their CPU is counted now
    stub_cpu = cpu_seconds([setup.stub_pid]) - stub_cpu
    return {
        "events": per * WORKERS,
        "seconds": round(elapsed, 3),
        "events_per_second": round(per * WORKERS / elapsed, 1),
        "cpu_us_per_event": round((cpu_end - cpu) / (per * WORKERS) * 1e6),
        "stub_cpu_us_per_event": round(stub_cpu / (per * WORKERS) * 1e6),
    }


# -- P1 / P2: delivery end to end -------------------------------------------------------------------


def p1(setup: Setup, events: int) -> dict[str, Any]:
    """Per-event platform: the webhook connector, one request per event."""
    return delivery_run(setup, events, "webhook")


def p2(setup: Setup, events: int) -> dict[str, Any]:
    """Bulk platform: the Klaviyo connector in bulk mode (Bulk Create Events, 1,000 events a request) against
    the stub. Klaviyo's own limit (150 bulk requests a minute) is lifted: the stub is not Klaviyo, and the
    figure is what the hub can do; with the real limit one account tops out at 2,500 events/s."""
    return delivery_run(setup, events, "klaviyo", HUB_RATE_LIMIT_SCALE="0")


def delivery_run(setup: Setup, events: int, app: str, **env: str) -> dict[str, Any]:
    """``events`` actions that come due together at one moment while the workers and the dispatcher stand idle,
    delivered: from that moment to the last ``delivered_at``.

    They come due by the clock, as in production: seeded (and the table analysed) with a ``run_at`` a little
    ahead, and nothing of the bench's own touches the database while they are delivered. (An earlier version
    made them due with one UPDATE of every row at the start: a second of PostgreSQL's CPU, and dead rows, that
    no production backlog has.)"""
    store_id, integration_id, _ = make_store(setup, app)
    reset_stub(setup)
    worker = spawn(setup, "hub", "worker", "--count", str(WORKERS), **env)
    dispatcher = spawn(setup, "hub", "dispatch", **env)
    wait_for_workers(setup, WORKERS)
    margin = 2 + events / 2000  # seconds to seed the actions
    due = datetime.now(UTC) + timedelta(seconds=margin)
    seed_actions(setup, store_id, integration_id, events, due)
    analyze(setup, "actions", "open_actions")  # statistics of the tables the claims and jobs read, as in steady state
    rt = setup.runtime()
    left = (due - datetime.now(UTC)).total_seconds()
    if left < 1:
        raise RuntimeError(f"seeding {events} actions took more than {margin:.0f} s: is the machine that busy?")
    time.sleep(left - 0.5)
    worker_pids, dispatcher_pids = descendants(worker.pid), descendants(dispatcher.pid)
    cpu, pg_cpu = cpu_seconds(worker_pids + dispatcher_pids), cpu_seconds(postgres_pids(setup.database_name))
    dispatcher_cpu, stub_cpu = cpu_seconds(dispatcher_pids), cpu_seconds([setup.stub_pid])
    began = due
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
    delivered = 0
    deadline = time.perf_counter() + 1800
    while time.perf_counter() < deadline:  # a slow poll: the bench must not take CPU from what it measures
        delivered = count_state(setup, "delivered")
        if delivered >= events:
            break
        time.sleep(1.0)
    with rt.db.session() as session:
        finished = session.scalar(select(func.max(Action.delivered_at)))
    elapsed = (finished - began).total_seconds() if finished else float("nan")
    rss = peak_rss_mb(descendants(worker.pid))
    cpu = cpu_seconds(worker_pids + dispatcher_pids) - cpu
    dispatcher_cpu = cpu_seconds(dispatcher_pids) - dispatcher_cpu
    pg_cpu = cpu_seconds(postgres_pids(setup.database_name)) - pg_cpu
    stub_cpu = cpu_seconds([setup.stub_pid]) - stub_cpu
    stop([worker, dispatcher])
    with rt.db.session() as session:
        attempts = session.scalar(text("SELECT count(*) FROM attempts"))
    rt.close()
    seen = stub_stats(setup)
    return {
        "events": events,
        "delivered": delivered,
        "attempts_recorded": attempts,
        "requests": seen["requests"],
        "platform_saw_keys": seen["keys"],
        "seconds": round(elapsed, 3),
        "events_per_second": round(delivered / elapsed, 1),
        # CPU per event of the workers and the dispatcher, and of PostgreSQL, while delivering (includes a last
        # poll of up to a second): on a busy shared machine these move less than the rates do.
        "cpu_us_per_event": round(cpu / events * 1e6),
        "dispatcher_cpu_us_per_event": round(dispatcher_cpu / events * 1e6),  # included in cpu_us_per_event
        "postgres_cpu_us_per_event": round(pg_cpu / events * 1e6),
        "stub_cpu_us_per_event": round(stub_cpu / events * 1e6),  # the platform's side, as in the ceiling
        "worker_peak_rss_mb": round(rss, 1),
    }


# -- P3: manual test event latency ------------------------------------------------------------------


@contextmanager
def web(setup: Setup, port: int) -> Iterator[str]:
    """The hub under gunicorn with production's settings (hub.serving: threaded workers that keep a client's
    connection alive, as the Procfile runs it), for P3 and P4."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *serving.gunicorn_args(f"127.0.0.1:{port}"), "--log-level", "warning"],
        env=setup.env(HUB_PUBLIC_URL=f"http://127.0.0.1:{port}"),
        cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    try:
        yield url
    finally:
        stop([process])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def p3(setup: Setup, count: int) -> dict[str, Any]:
    _, _, token = make_store(setup)
    worker = spawn(setup, "hub", "worker", "--count", str(WORKERS))
    dispatcher = spawn(setup, "hub", "dispatch")
    rt = setup.runtime()
    latencies = []
    with web(setup, free_port()) as url:
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        time.sleep(2)
        for _ in range(count):
            answer = api.post(
                f"{url}/api/v1/integrations/webhook/test-events", json={"target": {"email": "qa@example.com"}}
            )
            action_id = answer.json()["id"]
            while True:
                with rt.db.session() as session:
                    row = session.execute(
                        select(Action.state, Action.created_at, Action.delivered_at).where(Action.id == action_id)
                    ).one()
                if row.state == "delivered":
                    latencies.append((row.delivered_at - row.created_at).total_seconds() * 1000)
                    break
                time.sleep(0.002)
    stop([worker, dispatcher])
    rt.close()
    return {
        "events": count,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)], 1),
    }


# -- P4: list and stats latency on a large table ----------------------------------------------------


def seed_p4(setup: Setup, store_id: int, integration_id: int, rows: int) -> float:
    """P4's data: ``rows`` webhook events of one store, one second apart going back from now, in P4's mix of states
    and triggers, an attempt each, the counters compacted and the tables analyzed. Returns the seconds it took."""
    rt = setup.runtime()
    began = time.perf_counter()
    with rt.db.transaction() as session:
        session.execute(
            text(
                """
            INSERT INTO actions (store_id, integration_id, kind, app, event_name, event_type, target, trigger, state,
                                 scheduled_at, run_at, attempt_count, failure_count, rate_limited_count,
                                 idempotency_key, payload, created_at, updated_at, delivered_at, last_status)
            SELECT :store, :integration, 'event', 'webhook', 'Bench - Review Request', 'review_request',
                   jsonb_build_object('email', 'c' || n || '@example.com'),
                   (ARRAY['auto','auto','auto','manual'])[1 + n % 4],
                   (ARRAY['delivered','delivered','delivered','delivered','failed','pending','skipped'])[1 + n % 7],
                   now() - (n || ' seconds')::interval, now() - (n || ' seconds')::interval, 1, 0, 0,
                   md5(n::text), '{}'::jsonb, now() - (n || ' seconds')::interval, now() - (n || ' seconds')::interval,
                   now() - (n || ' seconds')::interval, 202
            FROM generate_series(1, :rows) AS n
            """
            ),
            {"store": store_id, "integration": integration_id, "rows": rows},
        )
        # One attempt per action (every seeded action has attempt_count 1): Sent → Events shows the last one.
        session.execute(
            text(
                """
            INSERT INTO attempts (action_id, store_id, number, started_at, duration_ms, outcome, http_status, request)
            SELECT id, store_id, 1, created_at, 40 + id % 200,
                   CASE WHEN state = 'failed' THEN 'failed' ELSE 'delivered' END,
                   CASE WHEN state = 'failed' THEN 400 ELSE 202 END, '{}'::jsonb
            FROM actions WHERE store_id = :store
            """
            ),
            {"store": store_id},
        )
    with rt.db.session() as session:
        counters.compact_all(session)  # as the dispatcher's housekeeping would within a minute
    with rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("actions", "open_actions", "attempts", "action_counts"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
    seeded = time.perf_counter() - began
    rt.close()
    return seeded


def p4_calls(now: datetime, deep_cursor: str) -> dict[str, tuple[str, dict[str, str]]]:
    """P4's cases, in the order of a round: name → (path, query parameters). ``deep_cursor`` is the next_cursor of
    the first page of /events."""
    month = {"from": (now - timedelta(days=30)).isoformat()}  # the last 30 days, to the microsecond
    # A window whose both ends fall inside the seeded data, off the hour: the partial hours are read from the
    # actions (about 3,600 rows an hour here), the rest from the counters.
    window = {"from": (now - timedelta(days=6, minutes=29)).isoformat(), "to": (now - timedelta(days=1)).isoformat()}
    return {
        "events_page": ("/api/v1/events", {"app": "webhook", "limit": "50"}),
        "actions_failed_page": ("/api/v1/actions", {"state": "failed", "limit": "50"}),
        "events_deep_page": ("/api/v1/events", {"limit": "50", "cursor": deep_cursor}),
        # The Queue (pending and held, soonest first: ~143,000 here) and Incomplete (cancelled, skipped, failed).
        "queue_page": ("/api/v1/queue", {"limit": "50"}),
        "incomplete_page": ("/api/v1/incomplete", {"limit": "50"}),
        "stats_30_days": ("/api/v1/stats", month),
        "stats_30_days_app": ("/api/v1/stats", {**month, "app": "webhook"}),
        "stats_30_days_failed": ("/api/v1/stats", {**month, "state": "failed"}),
        "stats_window_off_the_hour": ("/api/v1/stats", window),
        # The floor: an authenticated call with one tiny query, through the same gunicorn, in the same rounds.
        "floor_integrations": ("/api/v1/integrations", {}),
    }


def p4(setup: Setup, rows: int, calls: int) -> dict[str, Any]:
    if not setup.database_url.startswith("postgresql"):
        return {"skipped": "needs PostgreSQL"}
    store_id, integration_id, token = make_store(setup)
    seeded = seed_p4(setup, store_id, integration_id, rows)
    results: dict[str, Any] = {"rows": rows, "seed_seconds": round(seeded, 1)}
    with web(setup, free_port()) as url:
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        cursor = api.get(f"{url}/api/v1/events", params={"limit": 50}).json()["next_cursor"]

        def getter(path: str, params: dict[str, str]) -> Callable[[], requests.Response]:
            return lambda: api.get(f"{url}{path}", params=params)

        cases = {name: getter(path, params) for name, (path, params) in p4_calls(datetime.now(UTC), cursor).items()}
        for call in cases.values():
            for _ in range(5):
                call()  # warm
        timings: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(calls):  # round-robin, so a burst of load elsewhere touches every case alike
            for name, call in cases.items():
                t = time.perf_counter()
                answer = call()
                timings[name].append((time.perf_counter() - t) * 1000)
                assert answer.status_code == 200, answer.text
        for name, values in timings.items():
            values.sort()
            results[f"{name}_p95_ms"] = round(values[int(len(values) * 0.95) - 1], 2)
    return results


# -- P5: trigger ingest -----------------------------------------------------------------------------


def run_clients(
    target: Callable[..., None], url: str, token: str, seconds: float, clients: int, first: int = 0
) -> tuple[int, float]:
    """Client processes started together against ``url`` for ``seconds``: what they counted, and how long the
    last of them took from the start signal. Clients are numbered from ``first`` (their orders and customers
    are named after the number, so a second run with other numbers sends new ones)."""
    counter = multiprocessing.Value("i", 0)
    start = multiprocessing.Event()
    processes = [
        multiprocessing.Process(target=target, args=(url, token, seconds, first + i, counter, start))
        for i in range(clients)
    ]
    for p in processes:
        p.start()
    time.sleep(0.5)
    began = time.perf_counter()
    start.set()
    for p in processes:
        p.join()
    elapsed = time.perf_counter() - began
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:  # e.g. an answer other than 2xx (bench.lean_client.Refused): the figure would count what was not done
        raise RuntimeError(f"{len(failed)} of {clients} client processes against {url} failed (see above)")
    return counter.value, elapsed


@dataclass
class Load:
    """What a run of client processes got through, and the CPU each side used for it."""

    count: int  # requests (single) or triggers accepted (bulk)
    seconds: float
    server_cpu: float  # the gunicorn processes
    postgres_cpu: float  # PostgreSQL's backends for the bench's database
    client_cpu: float  # the client processes themselves
    dispatcher_cpu: float = 0.0  # the dispatcher, processing received triggers (Prefer: respond-async)

    def __add__(self, other: Load) -> Load:
        return Load(
            self.count + other.count,
            self.seconds + other.seconds,
            self.server_cpu + other.server_cpu,
            self.postgres_cpu + other.postgres_cpu,
            self.client_cpu + other.client_cpu,
            self.dispatcher_cpu + other.dispatcher_cpu,
        )

    def per_item_us(self) -> dict[str, int | None]:
        def per(cpu: float) -> int | None:
            return round(cpu / self.count * 1e6) if self.count else None

        figures = {
            "server_cpu_us": per(self.server_cpu),
            "postgres_cpu_us": per(self.postgres_cpu),
            "client_cpu_us": per(self.client_cpu),
        }
        if self.dispatcher_cpu:
            figures["dispatcher_cpu_us"] = per(self.dispatcher_cpu)
        return figures


def measured(
    target: Callable[..., None],
    url: str,
    token: str,
    seconds: float,
    clients: int,
    server_pid: int,
    database: str | None,
    first: int = 0,
) -> Load:
    """run_clients, with the CPU used meanwhile by the server, by PostgreSQL and by the clients (these CPU
    figures move much less than the rates on a shared machine)."""
    server = descendants(server_pid)
    pg_before = {pid: cpu_seconds([pid]) for pid in postgres_pids(database)}
    before = cpu_seconds(server), _children_cpu()
    count, elapsed = run_clients(target, url, token, seconds, clients, first)
    after = cpu_seconds(server), _children_cpu()
    # Backends the server opened during the run count from zero; one that ended meanwhile is not counted.
    pg = sum(cpu_seconds([pid]) - pg_before.get(pid, 0.0) for pid in postgres_pids(database))
    return Load(count, elapsed, after[0] - before[0], pg, after[1] - before[1])


def drive(
    url: str,
    token: str,
    seconds: float,
    server_pid: int,
    database: str | None,
    clients: int = 4,
    first: int = 0,
    target: Callable[..., None] = lean_client.run,
) -> Load:
    """P5's single triggers, from ``clients`` processes of bench.lean_client (each with several connections)."""
    return measured(target, url, token, seconds, clients, server_pid, database, first)


def drive_async(
    setup: Setup, rt: Runtime, url: str, token: str, seconds: float, server_pid: int, dispatcher_pid: int, first: int
) -> tuple[Load, Load]:
    """P5's single triggers sent with ``Prefer: respond-async`` while the dispatcher processes them, then the wait
    until it has processed the last: the two Loads (the second counts no request: its seconds and CPU only)."""
    dispatcher = descendants(dispatcher_pid)
    before = cpu_seconds(dispatcher)
    sent = drive(url, token, seconds, server_pid, setup.database_name, first=first, target=lean_client.run_async)
    middle = cpu_seconds(dispatcher)
    sent.dispatcher_cpu = middle - before
    pg_before = {pid: cpu_seconds([pid]) for pid in postgres_pids(setup.database_name)}
    elapsed = drain(rt)
    pg = sum(cpu_seconds([pid]) - pg_before.get(pid, 0.0) for pid in postgres_pids(setup.database_name))
    return sent, Load(0, elapsed, 0.0, pg, 0.0, cpu_seconds(dispatcher) - middle)


DRAIN_TIMEOUT = 120.0


def drain(rt: Runtime) -> float:
    """Wait until no received trigger waits to be processed; the seconds it took."""
    began = time.perf_counter()
    while received_backlog(rt)[0]:
        if time.perf_counter() - began > DRAIN_TIMEOUT:
            raise RuntimeError(f"the dispatcher did not process what was received within {DRAIN_TIMEOUT:.0f} s")
        time.sleep(0.02)
    return time.perf_counter() - began


def received_backlog(rt: Runtime) -> tuple[int, int]:
    """Received triggers waiting to be processed, and those that failed to be."""
    with rt.db.session() as session:
        return inbox.backlog(session)


# The same gunicorn settings for the ceiling and the hub: production's (hub.serving, which the Procfile, `hub web`
# and `hub up` use). BENCH_P5_GUNICORN adds options after them, which win: e.g. "--worker-class sync --threads 1".
P5_GUNICORN_EXTRA = os.environ.get("BENCH_P5_GUNICORN", "").split()


def p5_gunicorn_args(app: str, port: int) -> list[str]:
    return [*serving.gunicorn_args(f"127.0.0.1:{port}", app=app), *P5_GUNICORN_EXTRA, "--log-level", "warning"]


@contextmanager
def gunicorn(setup: Setup, app: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """The app under gunicorn: its URL, and the pid of gunicorn's master (its workers are the master's children)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *p5_gunicorn_args(app, port)], env=env, cwd=ROOT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(f"{url}/healthz", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.1)
    try:
        yield url, process.pid
    finally:
        stop([process])


BULK_SIZE = 1000


def _bulk_client(url: str, token: str, seconds: float, worker: int, counter: Any, start: Any) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    start.wait()
    deadline = time.perf_counter() + seconds
    batch, accepted = 0, 0
    while time.perf_counter() < deadline:
        triggers = [lean_client.trigger(f"b{worker}-{batch}", n) for n in range(BULK_SIZE)]
        answer = session.post(url, json={"triggers": triggers}, timeout=60)
        accepted += answer.json()["accepted"]
        batch += 1
    with counter.get_lock():
        counter.value += accepted


def drive_bulk(url: str, token: str, seconds: float, server_pid: int, database: str | None, clients: int = 2) -> Load:
    """Triggers accepted, and the seconds it took (the last batches end after the deadline)."""
    return measured(_bulk_client, url, token, seconds, clients, server_pid, database)


def analyze(setup: Setup, *tables: str) -> None:
    rt = setup.runtime()
    if rt.db.is_postgresql:
        with rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in tables:
                conn.execute(text(f"VACUUM ANALYZE {table}"))
    rt.close()


P5_ROUNDS = 4  # rounds of P5's single ingest, each a turn of the ceiling's and a turn of the hub's


def p5(setup: Setup, seconds: float) -> dict[str, Any]:
    """Single ingest against its ceiling, then bulk ingest.

    Single triggers are sent two ways: with ``Prefer: respond-async`` (stored, answered, and processed by the
    dispatcher, which runs throughout) and plainly (the answer lists the actions created). The ceiling and the two
    take turns, ``P5_ROUNDS`` rounds of ``seconds / P5_ROUNDS`` each, the order turning each round: all three are
    measured over the same stretch of time, so a minute in which the machine is slower (a busy neighbour, the
    clock's speed) weighs on each alike. After each respond-async turn the bench waits until the dispatcher has
    processed what it received: ``sustained`` counts that wait as well. The ratios are requests over the
    ceiling's, in all rounds. At the end every request answered 2xx must have become a trigger."""
    _, _, token = make_store(setup)
    env = {**os.environ, "BENCH_REDIS_URL": setup.redis_url}
    turn = seconds / P5_ROUNDS
    rt = setup.runtime()
    answered = 0
    dispatcher = spawn(setup, "hub", "dispatch")
    try:
        with (
            gunicorn(setup, "bench.ingest_ceiling:app", env) as (ceiling_url, ceiling_pid),
            gunicorn(setup, "hub.app:create_app()", setup.env()) as (url, pid),
        ):
            time.sleep(0.5)
            triggers_url = f"{url}/api/v1/triggers"
            # A warm-up, then the planner's statistics, as P4 takes them after seeding: on tables that have none yet
            # (autovacuum analyzes them only after a minute) PostgreSQL picks (store_id, phone) for an e-mail look-up
            # and walks every customer of the store, a cost that grows with the run. A production database has them.
            answered += run_clients(lean_client.run, triggers_url, token, min(seconds, 2.0), clients=4, first=100)[0]
            answered += run_clients(lean_client.run_async, triggers_url, token, 1.0, clients=4, first=200)[0]
            drain(rt)  # the dispatcher's work must not fall in the ceiling's first turn
            analyze(setup, "customers", "triggers", "actions", "received_triggers")
            run_clients(lean_client.run, f"{ceiling_url}/ingest", token, min(seconds, 2.0) / 4, clients=4, first=100)
            ceiling = single = received = drained = Load(0, 0.0, 0.0, 0.0, 0.0)
            turns = ("ceiling", "async", "sync")
            for n in range(P5_ROUNDS):
                # Each turn's clients are numbered anew: the hub sees new orders and new customers in every turn.
                for which in turns[n % 3 :] + turns[: n % 3]:
                    if which == "ceiling":
                        ceiling += drive(f"{ceiling_url}/ingest", token, turn, ceiling_pid, None, first=10 * n)
                    elif which == "sync":
                        single += drive(triggers_url, token, turn, pid, setup.database_name, first=10 * n)
                    else:
                        sent, waited = drive_async(
                            setup, rt, triggers_url, token, turn, pid, dispatcher.pid, 300 + 10 * n
                        )
                        received, drained = received + sent, drained + waited
            answered += single.count + received.count
            bulk = drive_bulk(f"{url}/api/v1/triggers/bulk", token, seconds, pid, setup.database_name)
    finally:
        stop([dispatcher])
    _check_every_answer_became_a_trigger(rt, answered + bulk.count)
    rt.close()

    def rate(load: Load) -> float:
        return load.count / load.seconds if load.seconds else 0.0

    ceiling_rate, async_rate, sync_rate = rate(ceiling), rate(received), rate(single)
    sustained_rate = rate(received + drained)

    def ratio(value: float) -> float | None:
        return round(value / ceiling_rate, 2) if ceiling_rate else None

    return {
        "gunicorn": " ".join(p5_gunicorn_args("APP", 0)[3:-2]),
        "rounds": P5_ROUNDS,
        "ceiling_requests_per_second": round(ceiling_rate, 1),
        # Prefer: respond-async, the figure judged against the target: requests answered a second while the
        # dispatcher processed them; sustained, with the waits for the last of each turn to be processed.
        "requests_per_second": round(async_rate, 1),
        "ratio": ratio(async_rate),
        "sustained_requests_per_second": round(sustained_rate, 1),
        "sustained_ratio": ratio(sustained_rate),
        # Plain requests, answered with the actions they created.
        "sync_requests_per_second": round(sync_rate, 1),
        "sync_ratio": ratio(sync_rate),
        "bulk_batch": BULK_SIZE,
        "bulk_triggers_per_second": round(bulk.count / bulk.seconds, 1) if bulk.seconds else 0.0,
        # CPU per request (per trigger for bulk) of the server's processes, of PostgreSQL, of the clients and of the
        # dispatcher (processing what was received), while driven: on a busy shared machine these move less than
        # the rates. The ceiling's Redis is not counted.
        "ceiling_cpu_us_per_request": ceiling.per_item_us(),
        "cpu_us_per_request": (received + drained).per_item_us(),
        "sync_cpu_us_per_request": single.per_item_us(),
        "bulk_cpu_us_per_trigger": bulk.per_item_us(),
    }


def _check_every_answer_became_a_trigger(rt: Runtime, answered: int) -> None:
    with rt.db.session() as session:
        stored = session.scalar(select(func.count()).select_from(Trigger)) or 0
        waiting, failed = inbox.backlog(session)
    if stored != answered or waiting or failed:
        raise RuntimeError(
            f"P5: {answered} triggers were answered 2xx, {stored} were stored, {waiting} wait and {failed} failed"
        )


# -- main -------------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = []
    for name, values in results.items():
        if not isinstance(values, dict):
            continue
        text_values = ", ".join(f"{k}={v}" for k, v in values.items())
        lines.append(f"{name:<8} {text_values}")
    return "\n".join(lines)


def run_once(size_name: str, wanted: set[str]) -> dict[str, Any]:
    """Every wanted figure once, each on a fresh database and an empty queue, the ratios worked out."""
    size = SIZES[size_name]
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(),
        "size": size_name,
        "cores": os.cpu_count(),
        "workers": WORKERS,
    }
    steps: list[tuple[str, Callable[[Setup], dict[str, Any]]]] = [
        ("ceiling", lambda s: ceiling(s, size["events"])),
        ("P1", lambda s: p1(s, size["events"])),
        ("P2", lambda s: p2(s, size["events"])),
        ("P3", lambda s: p3(s, size["latency"])),
        ("P4", lambda s: p4(s, size["rows"], size["list_calls"])),
        ("P5", lambda s: p5(s, size["ingest_seconds"])),
    ]
    # The delivery figures are each measured between two ceilings, one just before and one just after, and judged
    # against their mean: the same CPUs do more or less work a second from one minute to the next (a busy neighbour,
    # the clock's speed), and a ceiling measured minutes earlier, before other figures, would judge one figure by
    # another moment's machine. results["ceiling"] is the first; every ceiling measured is listed in it.
    ceilings: list[dict[str, Any]] = []
    around: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name, step in steps:
        if name not in wanted:
            continue
        with prepared(size_name) as setup:
            print(f"running {name}…", file=sys.stderr, flush=True)
            results[name] = step(setup)
        if name == "ceiling":
            ceilings.append(results[name])
        elif name in ("P1", "P2") and ceilings:
            with prepared(size_name) as setup:
                print(f"running the ceiling again, after {name}…", file=sys.stderr, flush=True)
                ceilings.append(ceiling(setup, size["events"]))
            around[name] = (ceilings[-2], ceilings[-1])
    if len(ceilings) > 1:
        results["ceiling"]["events_per_second_each"] = [c["events_per_second"] for c in ceilings]
    if "P1" in results and "worker_peak_rss_mb" in results["P1"]:
        results["P6"] = {"worker_peak_rss_mb": results["P1"]["worker_peak_rss_mb"]}
    for figure, (before, after) in around.items():
        ours = results[figure]
        if "events_per_second" not in ours:
            continue
        bare_rate = (before["events_per_second"] + after["events_per_second"]) / 2
        ours["ceiling_events_per_second"] = round(bare_rate, 1)
        ours["ratio_to_ceiling"] = round(ours["events_per_second"] / bare_rate, 2)
        # The same ratio by CPU per event, everything on the machine that served it (the clients or the hub's
        # processes, PostgreSQL, the stub platform): what the rates would give with every core kept busy. It
        # moves less than the rates when other work or the machine's own speed comes and goes during a run.
        spent = sum(ours[k] for k in ("cpu_us_per_event", "postgres_cpu_us_per_event", "stub_cpu_us_per_event"))
        bare = sum(c["cpu_us_per_event"] + c["stub_cpu_us_per_event"] for c in (before, after)) / 2
        ours["cpu_ratio_to_ceiling"] = round(bare / spent, 2) if spent else None
    return results


def main() -> None:
    global WORKERS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--only", default="ceiling,P1,P2,P3,P4,P5")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every wanted figure this many times, one whole run after another"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=WORKERS,
        help="worker processes for P1-P3, and as many ceiling loops (default 2: the issue's targets are for 2)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = wanted - {"ceiling", "P1", "P2", "P3", "P4", "P5"}
    if unknown:
        parser.error(f"--only: unknown figure(s) {', '.join(sorted(unknown))}; known: ceiling, P1, P2, P3, P4, P5")
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be from 1 to 64")
    WORKERS = args.workers
    runs: list[dict[str, Any]] = []
    for number in range(args.repeat):
        if args.repeat > 1:
            print(f"run {number + 1} of {args.repeat}", file=sys.stderr, flush=True)
        results = run_once(args.size, wanted)
        runs.append(results)
        if args.repeat > 1:
            print(f"\n## run {number + 1} of {args.repeat}")
        print(table(results))
        print()
        print(report.verdicts(results))
    if args.repeat > 1:
        print(f"\n## across {args.repeat} runs")
        print(report.across(runs))
    # One run writes its results as they are; several write them as a list under "runs".
    document = runs[0] if len(runs) == 1 else {"size": args.size, "cores": os.cpu_count(), "runs": runs}
    out = args.out or ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
