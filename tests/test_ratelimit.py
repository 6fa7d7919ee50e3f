"""Rate limits per integration in Redis, shared by every worker; waiting for a token costs no attempt."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import datetime
from importlib.metadata import EntryPoint

import pytest
import responses
from acme_tidings.connector import BASE
from sqlalchemy import func, select

from connectors import registry
from hub.dispatch import dispatch_once
from hub.models import Action, Attempt
from hub.ratelimit import RateLimiter
from hub.runtime import Runtime
from tests.conftest import Api, run_worker


def test_a_burst_from_many_workers_gets_exactly_the_buckets_tokens(rt: Runtime) -> None:
    limiter = RateLimiter(rt.redis)
    results: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def hit() -> None:
        own = RateLimiter(rt.redis)  # one client per "worker"
        barrier.wait()
        waits = [own.acquire("integration:7", per_second=5) for _ in range(10)]
        with lock:
            results.extend(waits)

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(0.0) == 5  # the burst of a 5/s bucket
    assert all(0 < w <= 8 for w in results if w)  # the others are told when to come back
    limiter.reset("integration:7")
    assert limiter.acquire("integration:7", per_second=5) == 0.0


def test_a_429_slows_the_bucket_down(rt: Runtime) -> None:
    limiter = RateLimiter(rt.redis)
    assert limiter.acquire("integration:8", per_second=10, burst=1) == 0.0
    normal = limiter.acquire("integration:8", per_second=10, burst=1)
    limiter.reset("integration:8")
    limiter.slow_down("integration:8", factor=0.5)
    assert limiter.acquire("integration:8", per_second=10, burst=1) == 0.0
    slowed = limiter.acquire("integration:8", per_second=10, burst=1)
    assert 0 < normal <= 0.1 < slowed <= 0.2


@pytest.fixture
def acme_crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    entry = EntryPoint("acme_crm", "acme_tidings.connector:AcmeCrmConnector", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry] if group == registry.ENTRY_POINT_GROUP else [])
    registry.reset()
    yield
    registry.reset()


@responses.activate
def test_actions_beyond_the_rate_wait_in_the_database_without_spending_an_attempt(
    api: Api, rt: Runtime, acme_crm: None
) -> None:
    responses.get(f"{BASE}/me", json={})
    events = responses.post(f"{BASE}/events", status=202)
    api.post("/api/v1/integrations", json={"app": "acme_crm", "credentials": {"api_key": "key-good-123456"}})
    for n in range(6):
        trigger = {"type": "review.submitted", "customer": {"email": f"c{n}@example.com"}, "review": {"rating": 5}}
        api.post("/api/v1/triggers", json=trigger)

    dispatch_once(rt)
    run_worker(rt)

    with rt.db.session() as session:
        waiting = session.scalars(select(Action).where(Action.state == "pending").order_by(Action.run_at)).all()
        attempts = session.scalar(select(func.count()).select_from(Attempt))
    sent = 6 - len(waiting)
    assert 2 <= sent <= 3  # the burst of a 2/s bucket, and perhaps one more after a short wait
    assert events.call_count == sent == attempts
    assert {a.reason_code for a in waiting} == {"rate_limit_wait"}
    assert all(a.attempt_count == 0 and a.failure_count == 0 for a in waiting)
    run_ats: list[datetime] = [a.run_at for a in waiting]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(run_ats)]
    assert all(gap >= 0.45 for gap in gaps)  # spread one emission interval apart, not all back at once
