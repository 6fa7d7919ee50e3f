"""The open actions table (hub.open_actions): exactly the open actions' run_at, state, lease and integration after
every kind of write, on both databases, and the scans that read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import responses
from sqlalchemy import delete, insert, select, update

from hub import outbox
from hub.dispatch import dispatch_once
from hub.models import OPEN_STATES, Action, OpenAction, Store
from hub.runtime import Runtime
from tests.conftest import Api, make_tenant, run_worker
from tests.test_batch_delivery import BULK_URL, add_actions, connect_klaviyo, customers
from tests.test_delivery import HOOK_URL, SECRET, connect_webhook, deliver_round, make_due
from tests.test_outbox import order, pending_action, review, sandbox

Row = tuple[Any, ...]


def expected(rt: Runtime) -> set[Row]:
    """What open_actions must hold: the projection of the open actions."""
    a = Action
    with rt.db.session() as session:
        rows = session.execute(
            select(a.id, a.store_id, a.integration_id, a.run_at, a.state, a.lease_expires_at).where(
                a.state.in_(OPEN_STATES)
            )
        ).all()
    return {tuple(row) for row in rows}


def held(rt: Runtime) -> set[Row]:
    o = OpenAction
    with rt.db.session() as session:
        rows = session.execute(
            select(o.action_id, o.store_id, o.integration_id, o.run_at, o.state, o.lease_expires_at)
        ).all()
    return {tuple(row) for row in rows}


def assert_exact(rt: Runtime) -> None:
    assert held(rt) == expected(rt)


def states(rt: Runtime) -> set[str]:
    with rt.db.session() as session:
        return set(session.scalars(select(Action.state)))


@responses.activate
def test_open_actions_follow_ingest_claims_every_outcome_and_the_retry_back_to_pending(
    api: Api, rt: Runtime, live_server: str
) -> None:
    responses.add_passthru(live_server)
    connect_webhook(api)
    sandbox(api)
    responses.add(responses.POST, HOOK_URL, status=503)  # a retry: back to pending, run_at ahead
    responses.add(responses.POST, HOOK_URL, status=429, headers={"Retry-After": "30"})  # a wait, no attempt spent
    responses.add(responses.POST, HOOK_URL, status=202)
    responses.add(responses.POST, HOOK_URL, status=400)  # a permanent failure
    for n in range(3):
        assert api.post("/api/v1/triggers", json=order(f"o{n}", f"c{n}@example.com")).status_code == 202
    answer = api.post(
        "/api/v1/triggers/bulk", json={"triggers": [order(f"b{n}", f"b{n}@example.com") for n in range(4)]}
    )
    assert answer.status_code == 200 and answer.json["accepted"] == 4, answer.json
    assert_exact(rt)
    assert len(held(rt)) == 14  # two apps, seven orders

    make_due(rt)
    assert dispatch_once(rt) == 14  # claims: pending → sending with a lease
    assert_exact(rt)
    assert {row[4] for row in held(rt)} == {"sending"} and all(row[5] is not None for row in held(rt))
    run_worker(rt)  # outcomes: delivered, retried (pending again), failed
    assert_exact(rt)
    assert "pending" in {row[4] for row in held(rt)}  # the retried one is back, without a lease
    make_due(rt)
    deliver_round(rt)
    make_due(rt)
    deliver_round(rt)
    assert_exact(rt)
    assert states(rt) <= {"delivered", "failed"}
    assert held(rt) == set()


@responses.activate
def test_open_actions_follow_rejected_credentials_holds_releases_and_a_disconnect(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=401, json={"error": "bad signature secret"})
    api.post("/api/v1/triggers", json=review())
    api.post("/api/v1/triggers", json=review("r-2"))
    deliver_round(rt)  # the first 401 holds every action of the integration
    assert states(rt) == {"held"}
    assert_exact(rt)
    responses.replace(responses.POST, HOOK_URL, status=202)
    assert (
        api.patch("/api/v1/integrations/webhook", json={"credentials": {"signing_secret": SECRET + "AA"}}).status_code
        == 200
    )
    assert states(rt) == {"pending"}  # released
    assert_exact(rt)
    assert api.patch("/api/v1/integrations/webhook", json={"state": "paused"}).json["state"] == "paused"
    assert states(rt) == {"held"}
    assert_exact(rt)
    api.patch("/api/v1/integrations/webhook", json={"state": "connected"})
    assert_exact(rt)
    api.post("/api/v1/triggers", json=review("r-3"))
    assert api.delete("/api/v1/integrations/webhook").status_code == 204  # what waited is skipped
    assert states(rt) == {"skipped"}
    assert held(rt) == set() == expected(rt)


def test_open_actions_follow_the_catch_up_policies_of_a_release(api: Api, rt: Runtime) -> None:
    sandbox(api)
    ids = [pending_action(api, f"o{n}", f"c{n}@example.com")["id"] for n in range(6)]
    integration_id = _integration_of(rt, ids[0])
    long_ago = datetime.now(UTC) - timedelta(hours=5)
    with rt.db.transaction() as session:
        session.execute(update(Action).where(Action.id.in_(ids[:4])).values(run_at=long_ago))
        assert outbox.hold_integration(session, integration_id, "integration_paused", "paused") == 6
    assert_exact(rt)
    with rt.db.transaction() as session:
        session.execute(update(Action).where(Action.id.in_(ids[:2])).values(run_at=long_ago - timedelta(hours=5)))
        assert outbox.release_integration(session, integration_id, "skip_older_than", hours=8) == 4
    assert_exact(rt)
    with rt.db.transaction() as session:
        outbox.hold_integration(session, integration_id, "integration_paused", "paused")
        assert outbox.release_integration(session, integration_id, "spread", hours=2) == 4
    assert_exact(rt)
    assert states(rt) == {"pending", "skipped"}


def _integration_of(rt: Runtime, action_id: int) -> int:
    with rt.db.session() as session:
        integration_id = session.scalar(select(Action.integration_id).where(Action.id == action_id))
    assert integration_id is not None
    return integration_id


@responses.activate
def test_open_actions_follow_single_and_bulk_operations_and_their_undo(api: Api, rt: Runtime, live_server: str) -> None:
    responses.add_passthru(live_server)
    sandbox(api)
    ids = [pending_action(api, f"o{n}", f"c{n}@example.com")["id"] for n in range(8)]
    assert api.post(f"/api/v1/actions/{ids[0]}/cancel", json={"reason": "no"}).status_code == 200
    assert api.post(f"/api/v1/actions/{ids[1]}/delay", json={"days": 2}).status_code == 200
    assert_exact(rt)
    assert api.post(f"/api/v1/actions/{ids[0]}/restore").status_code == 200
    assert_exact(rt)
    assert api.post(f"/api/v1/actions/{ids[2]}/send-now").status_code == 202  # claim_one's path: sending
    assert_exact(rt)
    run_worker(rt)
    assert_exact(rt)
    assert api.post(f"/api/v1/actions/{ids[2]}/replay", json={"new_key": True}).status_code == 202
    assert api.post(f"/api/v1/actions/{ids[2]}/replay", json={}).status_code == 202  # delivered → sending again
    assert_exact(rt)
    run_worker(rt)
    cancelled = api.post("/api/v1/bulk-operations", json={"operation": "cancel", "filter": {"state": "pending"}})
    assert cancelled.json["changed"] >= 6, cancelled.json
    assert_exact(rt)
    op = api.get("/api/v1/bulk-operations").json["data"][0]
    assert api.post(f"/api/v1/bulk-operations/{op['id']}/undo").json["restored"] == cancelled.json["changed"]
    assert_exact(rt)
    delayed = {"operation": "delay", "filter": {}, "days": 1}
    assert api.post("/api/v1/bulk-operations", json=delayed).json["changed"] >= 6
    assert_exact(rt)
    assert api.post("/api/v1/bulk-operations", json={"operation": "send_now", "ids": ids[3:6]}).json["changed"] == 3
    assert_exact(rt)
    run_worker(rt)
    assert_exact(rt)


def test_open_actions_follow_manual_test_events_and_a_stopped_order(api: Api, rt: Runtime, live_server: str) -> None:
    sandbox(api)
    sent = api.post("/api/v1/integrations/sandbox/test-events", json={"target": {"email": "qa@example.com"}})
    assert sent.status_code == 202 and sent.json["state"] == "sending"
    assert_exact(rt)
    pending_action(api, "o1", "ada@example.com")
    assert api.post("/api/v1/triggers", json=order("o1", type="order.cancelled")).status_code == 202
    assert "cancelled" in states(rt)
    bulk = [order("o2", "bob@example.com"), order("o2", type="order.refunded")]
    assert api.post("/api/v1/triggers/bulk", json={"triggers": bulk}).json["accepted"] == 2
    assert_exact(rt)


def test_open_actions_follow_a_lost_lease_an_extended_lease_and_plain_sql(api: Api, rt: Runtime) -> None:
    integration_id = connect_klaviyo(rt, api.tenant)
    ids = add_actions(rt, api.tenant, integration_id, customers(5))
    assert_exact(rt)
    claimed = outbox.claim_due(rt.db, 100, rt.config.lease_seconds)
    assert len(claimed) == 5
    soon = datetime.now(UTC) + timedelta(seconds=5)
    with rt.db.transaction() as session:
        session.execute(update(Action).values(lease_expires_at=soon))
        rows = outbox.read_for_delivery(session, ids, claimed[0].lease or "", rt.config.lease_seconds)  # extends
    assert len(rows) == 5
    assert_exact(rt)
    assert all(row[5] > soon for row in held(rt))
    with rt.db.transaction() as session:
        session.execute(update(Action).values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert_exact(rt)
    again = outbox.claim_due(rt.db, 100, rt.config.lease_seconds)  # the lost-lease scan, a new token
    assert {c.id for c in again} == set(ids) and {c.lease for c in again} != {claimed[0].lease}
    assert_exact(rt)
    with rt.db.transaction() as session:  # bulk SQL, as the bench seeds and an operator might
        template = session.get_one(Action, ids[0])
        base = {c.key: getattr(template, c.key) for c in Action.__table__.columns if c.key != "id"}
        session.execute(
            insert(Action),
            [{**base, "idempotency_key": f"k{n}", "state": ("pending", "delivered")[n % 2]} for n in range(6)],
        )
        session.execute(update(Action).where(Action.id.in_(ids[:2])).values(state="failed", lease_expires_at=None))
        session.execute(update(Action).where(Action.id.in_(ids[2:4])).values(integration_id=None))
        session.execute(update(Action).where(Action.state == "delivered").values(state="pending", run_at=soon))
        session.execute(update(Action).values(attempt_count=Action.attempt_count + 1))  # nothing followed changes
        session.execute(delete(Action).where(Action.id == ids[4]))
    assert_exact(rt)


@responses.activate
def test_open_actions_follow_bulk_delivery_through_a_batching_connector(api: Api, rt: Runtime) -> None:
    responses.post(BULK_URL, status=202)
    integration_id = connect_klaviyo(rt, api.tenant)
    add_actions(rt, api.tenant, integration_id, customers(30))
    assert deliver_round(rt) == 30
    assert states(rt) == {"delivered"}
    assert held(rt) == set() == expected(rt)


def test_a_deleted_store_takes_its_open_actions_and_other_stores_keep_theirs(api: Api, rt: Runtime) -> None:
    sandbox(api)
    pending_action(api)
    other = Api(api.client, make_tenant(rt, "Other"))
    sandbox(other)
    kept = pending_action(other)
    with rt.db.transaction() as session:
        session.execute(delete(Store).where(Store.id == api.tenant.store.id))
    assert_exact(rt)
    assert [row[0] for row in held(rt)] == [kept["id"]]


def test_the_queue_pages_through_open_actions_soonest_first(api: Api, rt: Runtime) -> None:
    sandbox(api)
    ids = [pending_action(api, f"o{n}", f"c{n}@example.com")["id"] for n in range(5)]
    at = datetime.now(UTC) + timedelta(hours=1)
    with rt.db.transaction() as session:  # two share a time: the id breaks the tie
        for n, action_id in enumerate(ids):
            session.execute(update(Action).where(Action.id == action_id).values(run_at=at - timedelta(minutes=n // 2)))
    api.post(f"/api/v1/actions/{ids[4]}/cancel", json={})
    seen: list[int] = []
    cursor = None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/queue", query_string=query).json
        seen += [row["id"] for row in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [ids[2], ids[3], ids[0], ids[1]]
    assert [a["id"] for a in api.get("/api/v1/actions", query_string={"state": "pending"}).json["data"]] == ids[3::-1]


def test_the_cli_rebuilds_open_actions_that_lost_and_gained_rows(api: Api, rt: Runtime) -> None:
    from click.testing import CliRunner

    from hub.cli import main
    from tests.test_cli import env_for

    sandbox(api)
    pending_action(api, "1001")
    pending_action(api, "1002")
    with rt.db.transaction() as session:  # as a restore of one table without the other might leave it
        session.execute(delete(OpenAction))
        session.execute(
            insert(OpenAction).values(
                action_id=10**9, store_id=api.tenant.store.id, run_at=datetime.now(UTC), state="pending"
            )
        )
    assert held(rt) != expected(rt)

    result = CliRunner().invoke(main, ["db", "rebuild-open-actions"], env=env_for(rt), catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "2 open actions" in result.output
    assert_exact(rt)
    pending_action(api, "1003")  # and the triggers follow what comes next
    assert_exact(rt)
