"""Explain an action, and read one customer's timeline."""

from __future__ import annotations

from datetime import datetime

import responses

from hub.runtime import Runtime
from tests.conftest import Api, make_tenant
from tests.test_delivery import HOOK_URL, SECRET, connect_webhook, deliver_round, make_due
from tests.test_outbox import order, pending_action, review, sandbox


def guard(explained: dict, code: str) -> dict:  # type: ignore[type-arg]
    [found] = [g for g in explained["guards"] if g["code"] == code]
    return found  # type: ignore[no-any-return]


def test_explain_shows_the_timing_of_a_waiting_action_and_every_guard_it_passed(api: Api) -> None:
    sandbox(api)
    action = pending_action(api)
    explained = api.get(f"/api/v1/actions/{action['id']}/explain").json
    assert explained["state"] == "pending" and "Waiting in the Queue until" in explained["summary"]
    timing = explained["timing"]
    assert timing["delay_seconds"] == 14 * 86400
    trigger_time = datetime.fromisoformat(timing["trigger_time"])
    assert datetime.fromisoformat(timing["scheduled_at"]) - trigger_time == (
        datetime.fromisoformat(timing["run_at"]) - trigger_time
    )
    assert timing["quiet_hours"] is None and timing["retries_left"] == 3
    assert all(g["passed"] for g in explained["guards"])
    assert guard(explained, "missing_identity")["value"] == ["email"]
    assert {g["code"] for g in explained["guards"]} >= {
        "integration_disconnected",
        "missing_identity",
        "suppressed",
        "order_cancelled",
        "already_reviewed",
        "stale",
        "duplicate",
    }


def test_explain_says_which_guard_stopped_an_action_and_who_cancelled_one(api: Api) -> None:
    sandbox(api)
    api.post("/api/v1/suppressions", json={"value": "ada@example.com"})
    skipped = api.post("/api/v1/triggers", json=review()).json["actions"][0]
    explained = api.get(f"/api/v1/actions/{skipped['id']}/explain").json
    assert explained["summary"].startswith("Skipped by a rule: ada@example.com unsubscribed")
    assert guard(explained, "unsubscribed")["value"] == {"value": "ada@example.com", "channel": "all"}

    cancelled = pending_action(api, "2", "bob@example.com")
    api.post(f"/api/v1/actions/{cancelled['id']}/cancel", json={"reason": "asked us to"})
    explained = api.get(f"/api/v1/actions/{cancelled['id']}/explain").json
    assert explained["summary"] == "Cancelled by the merchant: asked us to."
    assert [a["operation"] for a in explained["audit"]] == ["cancel"]


@responses.activate
def test_explain_shows_a_retry_with_its_attempt_and_the_next_try(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=503, body="busy")
    action = api.post("/api/v1/triggers", json=review()).json["actions"][0]
    deliver_round(rt)
    explained = api.get(f"/api/v1/actions/{action['id']}/explain").json
    assert "Waiting to retry" in explained["summary"] and "2 retries left" in explained["summary"]
    assert explained["timing"]["next_attempt_at"] == explained["attempts"][0]["next_attempt_at"]
    [attempt] = explained["attempts"]
    assert attempt["http_status"] == 503 and attempt["response"] == "busy" and attempt["duration_ms"] >= 0
    assert attempt["request"]["url"] == HOOK_URL and SECRET not in str(attempt["request"])


def test_a_customer_timeline_has_triggers_actions_events_and_operations_in_order(
    api: Api, rt: Runtime, live_server: str
) -> None:
    sandbox(api)
    api.post("/api/v1/triggers", json=order("1001"))
    submitted = api.post("/api/v1/triggers", json=review(product_id="p-9")).json
    make_due(rt)
    request = api.get("/api/v1/queue").json["data"][0]
    api.post(f"/api/v1/actions/{request['id']}/cancel", json={})
    deliver_round(rt)

    [customer] = api.get("/api/v1/customers", query_string={"q": "ADA@example.com"}).json["data"]
    timeline = api.get(f"/api/v1/customers/{customer['id']}/timeline").json
    assert timeline["customer"]["email"] == "ada@example.com"
    kinds = [(i["type"], i["action_id"]) for i in timeline["items"]]
    review_action = submitted["actions"][0]["id"]
    assert kinds.index(("action", review_action)) < kinds.index(("event", review_action))
    assert ("operation", request["id"]) in kinds
    assert [i["type"] for i in timeline["items"]].count("trigger") == 2
    times = [i["at"] for i in timeline["items"]]
    assert times == sorted(times)


def test_another_stores_customer_is_a_404(api: Api, rt: Runtime) -> None:
    sandbox(api)
    pending_action(api)
    [customer] = api.get("/api/v1/customers").json["data"]
    other = Api(api.client, make_tenant(rt, "Other"))
    assert other.get(f"/api/v1/customers/{customer['id']}/timeline").status_code == 404
    assert other.get("/api/v1/customers/99999999999/timeline").status_code == 404
    assert other.get("/api/v1/customers").json["data"] == []
