"""Rate limits per integration in Redis, shared by every worker; waiting for a token costs no attempt."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import datetime
from importlib.metadata import EntryPoint
from typing import Any

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
        # A token every 2 s and a burst of 5: the 40 calls finish long before one more token comes, however busy
        # the machine (at 5/s one came back within 0.2 s and made a sixth 0 under load).
        waits = [own.acquire("integration:7", per_second=0.5, burst=5) for _ in range(10)]
        with lock:
            results.extend(waits)

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(0.0) == 5  # the burst of a 5/s bucket
    assert all(0 < w <= 2 for w in results if w)  # the others are told when the next token comes
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


# -- a merchant's override of the published rate ----------------------------------------------------------------


def connect_acme(api: Api, **extra: object) -> Any:
    responses.get(f"{BASE}/me", json={})
    return api.post(
        "/api/v1/integrations", json={"app": "acme_crm", "credentials": {"api_key": "key-good-123456"}, **extra}
    )


def send_reviews(api: Api, rt: Runtime, n: int) -> list[Action]:
    """n triggers of a flow without delay, delivered in one round; the actions left waiting, earliest first."""
    for i in range(n):
        trigger = {"type": "review.submitted", "customer": {"email": f"c{i}@example.com"}, "review": {"rating": 5}}
        assert api.post("/api/v1/triggers", json=trigger).status_code == 202
    dispatch_once(rt)
    run_worker(rt)
    with rt.db.session() as session:
        return list(session.scalars(select(Action).where(Action.state == "pending").order_by(Action.run_at)).all())


@responses.activate
def test_a_rate_override_is_stored_shown_and_cleared_back_to_the_published_rate(api: Api, acme_crm: None) -> None:
    created = connect_acme(api)
    assert created.status_code == 201, created.json
    assert created.json["rate_limit_per_second"] is None
    assert created.json["published_rate_limit_per_second"] == 2 == created.json["effective_rate_limit_per_second"]

    changed = api.patch("/api/v1/integrations/acme_crm", json={"rate_limit_per_second": 0.5})
    assert changed.status_code == 200, changed.json
    shown = api.get("/api/v1/integrations/acme_crm").json
    assert shown["rate_limit_per_second"] == 0.5 == shown["effective_rate_limit_per_second"]
    assert shown["published_rate_limit_per_second"] == 2

    assert api.patch("/api/v1/integrations/acme_crm", json={"settings": {}}).json["rate_limit_per_second"] == 0.5
    cleared = api.patch("/api/v1/integrations/acme_crm", json={"rate_limit_per_second": None}).json
    assert cleared["rate_limit_per_second"] is None and cleared["effective_rate_limit_per_second"] == 2


@responses.activate
def test_a_rate_override_can_be_given_on_connect(api: Api, acme_crm: None) -> None:
    created = connect_acme(api, rate_limit_per_second=250)
    assert created.status_code == 201, created.json
    assert created.json["effective_rate_limit_per_second"] == 250


@pytest.mark.parametrize("rate", [0, -1, 0.001, 10_001, "fast", True])
@responses.activate
def test_a_rate_override_out_of_bounds_is_a_422_and_changes_nothing(api: Api, acme_crm: None, rate: object) -> None:
    connect_acme(api, rate_limit_per_second=5)
    answer = api.patch("/api/v1/integrations/acme_crm", json={"rate_limit_per_second": rate})
    assert answer.status_code == 422, answer.json
    assert list(answer.json["error"]["fields"]) == ["rate_limit_per_second"]
    assert api.get("/api/v1/integrations/acme_crm").json["rate_limit_per_second"] == 5


@responses.activate
def test_a_lower_override_spaces_deliveries_at_its_own_interval(api: Api, rt: Runtime, acme_crm: None) -> None:
    connect_acme(api, rate_limit_per_second=0.5)  # a stricter plan than the published 2/s
    events = responses.post(f"{BASE}/events", status=202)

    waiting = send_reviews(api, rt, 3)

    assert events.call_count == 1 and len(waiting) == 2  # a 0.5/s bucket has a burst of one
    assert {a.reason_code for a in waiting} == {"rate_limit_wait"}
    assert all("(0.5 requests/s)" in (a.reason_text or "") and a.attempt_count == 0 for a in waiting)
    gaps = [(later.run_at - earlier.run_at).total_seconds() for earlier, later in itertools.pairwise(waiting)]
    assert gaps == [pytest.approx(2.0, abs=0.1)]  # one emission interval of 0.5/s, not the published 2/s


@responses.activate
def test_a_higher_override_lets_a_burst_through_that_the_published_rate_would_hold_back(
    api: Api, rt: Runtime, acme_crm: None
) -> None:
    connect_acme(api, rate_limit_per_second=100)  # an enterprise plan
    events = responses.post(f"{BASE}/events", status=202)

    waiting = send_reviews(api, rt, 6)

    assert waiting == [] and events.call_count == 6  # the published 2/s lets 2 or 3 of them through


def test_the_limiter_paces_at_the_override_and_the_published_rate_without_one(rt: Runtime, acme_crm: None) -> None:
    from hub.delivery import _target
    from hub.integrations import effective_rate
    from hub.models import Integration

    connector = registry.get("acme_crm")
    credentials = rt.box.encrypt({"api_key": "key-good-123456"})
    published = Integration(id=1, app="acme_crm", state="connected", credentials=credentials, settings={})
    assert effective_rate(published, connector) == 2
    overridden = Integration(
        id=2, app="acme_crm", state="connected", credentials=credentials, settings={}, rate_limit_per_second=4
    )
    target = _target(rt, overridden)
    assert target.rate == 4
    limiter = RateLimiter(rt.redis)
    assert [limiter.acquire(target.bucket, target.rate) for _ in range(4)] == [0.0] * 4  # a burst of 4 at 4/s
    assert 0 < limiter.acquire(target.bucket, target.rate) <= 0.25  # then one every quarter second
