"""The per-process caches of the ingest path: a revoked token stops working within the TTL, and a change to
a store's flows or integrations is seen by the very next trigger, whichever process or code path made it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update

from hub.caches import TOKEN_CACHE_SECONDS
from hub.models import ApiToken, Flow, Integration, Store
from hub.runtime import Runtime
from tests.conftest import Api
from tests.test_triggers import order_trigger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_token_works_until_its_cache_entry_expires_and_then_never(api: Api, rt: Runtime) -> None:
    clock = Clock()
    rt.caches.tokens.clock = clock
    assert api.get("/api/v1/actions").status_code == 200
    with rt.db.transaction() as session:
        session.execute(update(ApiToken).values(revoked_at=datetime.now(UTC)))
    clock.now += TOKEN_CACHE_SECONDS - 0.5
    assert api.get("/api/v1/actions").status_code == 200  # still trusted: read from the database 4.5 s ago
    clock.now += 0.5
    answer = api.get("/api/v1/actions")
    assert answer.status_code == 401 and "revoked" in answer.json["error"]["message"]
    clock.now -= 100  # and it is not cached as valid again
    assert api.get("/api/v1/actions").status_code == 401


def test_an_unknown_token_is_never_cached(api: Api, rt: Runtime) -> None:
    headers = {"Authorization": "Bearer tdg_nope"}
    assert api.client.get("/api/v1/actions", headers=headers).status_code == 401
    assert rt.caches.tokens.get("anything") is None


def test_a_token_from_the_cache_names_the_same_store_and_token_as_one_read_from_the_database(
    api: Api, rt: Runtime
) -> None:
    from sqlalchemy import inspect

    from hub import stores

    assert api.get("/api/v1/actions").status_code == 200  # the token is cached, its last use written
    token = api.tenant.token
    found = stores.identify_cached(token, rt.caches.tokens)
    assert found is not None
    with rt.db.session() as session:
        read = stores.identify(session, token)  # no cache: the rows as the database has them
        assert read is not None
        for cached, stored in zip(found, read, strict=True):
            assert type(cached) is type(stored) and inspect(cached).transient and cached not in session
        (store, row), (stored_store, stored_row) = found, read
        assert (store.id, store.name, store.event_prefix) == (
            stored_store.id,
            stored_store.name,
            stored_store.event_prefix,
        )
        assert (row.id, row.store_id, row.name) == (stored_row.id, stored_row.store_id, stored_row.name)


def test_last_used_is_written_at_most_once_a_minute_with_the_cache_too(api: Api, rt: Runtime) -> None:
    api.get("/api/v1/actions")
    with rt.db.session() as session:
        first = session.scalar(select(ApiToken.last_used_at))
    assert first is not None
    with rt.db.transaction() as session:
        session.execute(update(ApiToken).values(last_used_at=first - timedelta(minutes=5)))
    rt.caches.tokens.clock = lambda: 10**9  # expire the cached entry, so the token is read again
    api.get("/api/v1/actions")
    with rt.db.session() as session:
        assert session.scalar(select(ApiToken.last_used_at)) > first - timedelta(seconds=1)


def test_changing_an_integration_or_a_flow_anywhere_bumps_the_stores_config_version(api: Api, rt: Runtime) -> None:
    def version() -> int:
        with rt.db.session() as session:
            return session.scalar(select(Store.config_version)) or 0

    start = version()
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    after_connect = version()
    with rt.db.transaction() as session:  # plain SQL, as another process or a script might
        session.execute(text("UPDATE flow_steps SET delay_seconds = 60"))
    after_steps = version()
    with rt.db.transaction() as session:
        session.execute(text("DELETE FROM integrations"))
    assert start < after_connect < after_steps < version()


def test_a_paused_integration_is_seen_by_the_next_trigger(api: Api, rt: Runtime) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    assert api.post("/api/v1/triggers", json=order_trigger("1")).json["actions"][0]["state"] == "pending"
    with rt.db.transaction() as session:
        session.execute(update(Integration).values(state="paused"))
    action = api.post("/api/v1/triggers", json=order_trigger("2")).json["actions"][0]
    assert (action["state"], action["reason_code"]) == ("held", "integration_paused")


def test_a_disabled_flow_or_a_changed_delay_is_seen_by_the_next_trigger(api: Api, rt: Runtime) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    first = api.post("/api/v1/triggers", json=order_trigger("1")).json["actions"][0]
    with rt.db.transaction() as session:
        session.execute(text("UPDATE flow_steps SET delay_seconds = 3600"))
    second = api.post("/api/v1/triggers", json=order_trigger("2")).json["actions"][0]
    assert datetime.fromisoformat(second["run_at"]) - datetime.fromisoformat(first["run_at"]) == timedelta(
        seconds=3600 - 14 * 86400
    )
    with rt.db.transaction() as session:
        session.execute(update(Flow).values(enabled=False))
    assert api.post("/api/v1/triggers", json=order_trigger("3")).json["actions"] == []
    assert (
        api.post("/api/v1/triggers/bulk", json={"triggers": [order_trigger("4")]}).json["results"][0]["actions"] == []
    )
