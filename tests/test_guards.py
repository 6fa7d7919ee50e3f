"""Guards, when an action is scheduled and again just before delivery: each with a stable code and a text."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connectors.sandbox import SandboxConnector
from hub.dispatch import dispatch_once
from hub.models import Action, Attempt
from hub.runtime import Runtime
from tests.conftest import Api, make_tenant, run_worker
from tests.test_delivery import deliver_round, make_due
from tests.test_outbox import order, pending_action, review, sandbox


def states(api: Api) -> dict[int, tuple[str, str | None, str | None]]:
    return {a["id"]: (a["state"], a["reason_code"], a["caused_by"]) for a in api.get("/api/v1/actions").json["data"]}


def attempts(rt: Runtime) -> int:
    with rt.db.session() as session:
        return len(session.scalars(select(Attempt.id)).all())


@pytest.fixture
def capabilities(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Give the sandbox app other capabilities, as a connector would declare them."""

    def change(**values: Any) -> None:
        monkeypatch.setattr(
            SandboxConnector, "capabilities", dataclasses.replace(SandboxConnector.capabilities, **values)
        )

    return change


def test_an_unsubscribed_customer_gets_nothing_new_and_nothing_already_scheduled(
    api: Api, rt: Runtime, live_server: str
) -> None:
    sandbox(api)
    scheduled = pending_action(api, "1", "Ada@Example.com")
    added = api.post("/api/v1/suppressions", json={"value": "ada@example.com"})
    assert added.status_code == 201 and added.json["channel"] == "all"
    later = api.post("/api/v1/triggers", json=review(email="ada@example.com")).json["actions"][0]
    assert (later["state"], later["reason_code"], later["caused_by"]) == ("skipped", "unsubscribed", "rule")
    assert "unsubscribed" in later["reason_text"]

    make_due(rt)
    deliver_round(rt)
    assert states(api)[scheduled["id"]] == ("skipped", "unsubscribed", "rule")
    assert attempts(rt) == 0


def test_a_suppression_for_one_app_leaves_other_apps_alone(api: Api) -> None:
    sandbox(api)
    api.post("/api/v1/suppressions", json={"value": "ada@example.com", "channel": "webhook", "reason": "bounced"})
    assert pending_action(api)["state"] == "pending"
    api.post("/api/v1/suppressions", json={"value": "ada@example.com", "channel": "sandbox", "reason": "complained"})
    skipped = api.post("/api/v1/triggers", json=order("2")).json["actions"][0]
    assert (skipped["state"], skipped["reason_code"]) == ("skipped", "suppressed")


def test_suppressions_are_listed_refused_twice_and_removed(api: Api, rt: Runtime) -> None:
    first = api.post("/api/v1/suppressions", json={"value": "+14155550123", "channel": "sms"}).json
    again = api.post("/api/v1/suppressions", json={"value": "+14155550123", "channel": "sms"})
    assert again.status_code == 409
    assert [s["id"] for s in api.get("/api/v1/suppressions").json["data"]] == [first["id"]]
    assert api.post("/api/v1/suppressions", json={"value": ""}).status_code == 422
    assert api.post("/api/v1/suppressions", json={"value": "x", "reason": "bored"}).status_code == 422
    other = Api(api.client, make_tenant(rt, "Other"))
    assert other.delete(f"/api/v1/suppressions/{first['id']}").status_code == 404
    assert api.delete(f"/api/v1/suppressions/{first['id']}").status_code == 204
    assert api.delete("/api/v1/suppressions/99999999999").status_code == 404


def test_a_review_request_is_skipped_when_the_customer_already_reviewed_the_product(
    api: Api, rt: Runtime, live_server: str
) -> None:
    sandbox(api)
    request = pending_action(api, "1")
    api.post("/api/v1/triggers", json=review(product_id="p-1"))
    make_due(rt)
    deliver_round(rt)
    assert states(api)[request["id"]] == ("skipped", "already_reviewed", "rule")
    # Reviewed before the order came in: skipped when scheduled.
    again = api.post("/api/v1/triggers", json=order("2")).json["actions"][0]
    assert (again["state"], again["reason_code"]) == ("skipped", "already_reviewed")


@pytest.mark.parametrize("kind", ["cancelled", "refunded"])
def test_a_cancelled_or_refunded_order_cancels_what_waits_for_it(api: Api, rt: Runtime, kind: str) -> None:
    sandbox(api)
    waiting = pending_action(api, "1001")
    other = pending_action(api, "1002", "bob@example.com")
    stopped = api.post("/api/v1/triggers", json=order("1001", type=f"order.{kind}"))
    assert stopped.status_code == 202 and stopped.json["cancelled"] == 1 and stopped.json["actions"] == []
    assert states(api)[waiting["id"]] == ("cancelled", f"order_{kind}", "rule")
    assert states(api)[other["id"]][0] == "pending"
    # The same order fulfilled again afterwards (another key): nothing is sent for it.
    late = api.post("/api/v1/triggers", json=order("1001"), headers={"Idempotency-Key": "again"}).json["actions"][0]
    assert (late["state"], late["reason_code"]) == ("skipped", f"order_{kind}")


def test_an_order_cancelled_while_its_action_is_queued_is_skipped_at_delivery(api: Api, rt: Runtime) -> None:
    sandbox(api)
    action = pending_action(api, "1001")
    make_due(rt)
    assert dispatch_once(rt) == 1  # queued: the cancel trigger cannot take it out any more
    api.post("/api/v1/triggers", json=order("1001", type="order.cancelled"))
    run_worker(rt)
    assert states(api)[action["id"]] == ("skipped", "order_cancelled", "rule")
    assert attempts(rt) == 0


def test_an_action_older_than_the_apps_staleness_window_is_skipped(api: Api, rt: Runtime, capabilities) -> None:  # type: ignore[no-untyped-def]
    capabilities(staleness_seconds=12 * 3600)
    sandbox(api)
    old = (datetime.now(UTC) - timedelta(hours=13)).isoformat()
    stale = api.post("/api/v1/triggers", json={**review(), "occurred_at": old}).json["actions"][0]
    assert (stale["state"], stale["reason_code"]) == ("skipped", "stale")
    assert "older than 12:00:00" in stale["reason_text"]

    fresh = api.post("/api/v1/triggers", json=review("r-2", "bob@example.com")).json["actions"][0]
    assert fresh["state"] == "pending"
    with rt.db.transaction() as session:  # the app was paused for a day, say
        session.get_one(Action, fresh["id"]).scheduled_at = datetime.now(UTC) - timedelta(days=1)
    make_due(rt)
    deliver_round(rt)
    assert states(api)[fresh["id"]] == ("skipped", "stale", "rule")
    assert attempts(rt) == 0


def test_an_app_that_needs_an_identity_the_customer_lacks_skips_the_action(api: Api, capabilities) -> None:  # type: ignore[no-untyped-def]
    capabilities(identities=("phone",))
    sandbox(api)
    action = pending_action(api)
    assert (action["state"], action["reason_code"]) == ("skipped", "missing_identity")
    assert "phone" in action["reason_text"]


def test_the_same_order_sent_twice_under_different_keys_is_skipped_as_a_duplicate(api: Api) -> None:
    sandbox(api)
    first = api.post("/api/v1/triggers", json=order("1001"), headers={"Idempotency-Key": "a"}).json["actions"][0]
    second = api.post("/api/v1/triggers", json=order("1001"), headers={"Idempotency-Key": "b"}).json["actions"][0]
    assert first["state"] == "pending"
    assert (second["state"], second["reason_code"]) == ("skipped", "duplicate")
    assert str(first["id"]) in second["reason_text"]


def test_a_paused_app_holds_actions_instead_of_skipping_them(api: Api) -> None:
    sandbox(api)
    api.patch("/api/v1/integrations/sandbox", json={"state": "paused"})
    action = pending_action(api)
    assert (action["state"], action["reason_code"]) == ("held", "integration_paused")


def test_test_events_are_not_judged_by_content_guards(api: Api, rt: Runtime, live_server: str) -> None:
    sandbox(api)
    api.post("/api/v1/suppressions", json={"value": "you@example.com"})
    sent = api.post("/api/v1/integrations/sandbox/test-events", json={"target": {"email": "you@example.com"}})
    run_worker(rt)
    assert api.get(f"/api/v1/actions/{sent.json['id']}").json["state"] == "delivered"
