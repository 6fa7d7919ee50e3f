"""The spine end to end: trigger → actions → dispatcher → rq worker → connector → attempt and state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from hub import delivery
from hub.dispatch import dispatch_once
from hub.models import Action, Integration
from hub.runtime import Runtime
from tests.conftest import Api, Tenant, run_worker
from tests.test_batch_delivery import add_actions, customers

HOOK_URL = "https://hooks.example.com/tidings"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def review_trigger(**overrides: Any) -> dict[str, Any]:
    trigger = {
        "type": "review.submitted",
        "customer": {"email": "ada@example.com", "first_name": "Ada"},
        "review": {"id": "r-1", "product_id": "p-1", "rating": 5, "title": "Lovely"},
    }
    trigger.update(overrides)
    return trigger


def connect_webhook(api: Api) -> None:
    answer = api.post(
        "/api/v1/integrations",
        json={"app": "webhook", "credentials": {"signing_secret": SECRET}, "settings": {"url": HOOK_URL}},
    )
    assert answer.status_code == 201, answer.json


def make_due(rt: Runtime) -> None:
    """Time travel: every pending action is due now (retries are scheduled seconds to hours ahead)."""
    with rt.db.transaction() as session:
        session.execute(update(Action).where(Action.state == "pending").values(run_at=datetime.now(UTC)))


def deliver_round(rt: Runtime) -> int:
    claimed = dispatch_once(rt)
    run_worker(rt)
    return claimed


def one_action(api: Api) -> dict[str, Any]:
    listing = api.get("/api/v1/actions").json["data"]
    assert len(listing) == 1
    return api.get(f"/api/v1/actions/{listing[0]['id']}").json  # type: ignore[no-any-return]


def test_a_trigger_travels_through_dispatcher_and_worker_to_the_sandbox_and_is_recorded(
    api: Api, rt: Runtime, live_server: str
) -> None:
    connected = api.post("/api/v1/integrations", json={"app": "sandbox"})
    assert connected.status_code == 201, connected.json
    assert connected.json["credentials"]["api_key"].startswith("••••")

    created = api.post("/api/v1/triggers", json=review_trigger())
    assert created.status_code == 202, created.json
    [action] = created.json["actions"]
    assert (action["state"], action["app"], action["event_name"]) == ("pending", "sandbox", "Acme - Review Submitted")

    assert deliver_round(rt) == 1

    detail = api.get(f"/api/v1/actions/{action['id']}").json
    assert detail["state"] == "delivered"
    assert detail["attempts"] == 1
    [attempt] = detail["attempt_log"]
    assert attempt["outcome"] == "delivered" and attempt["http_status"] == 202
    assert attempt["request"]["headers"]["Authorization"] == "[redacted]"
    assert attempt["request"]["body"]["id"] == detail["idempotency_key"]
    assert json.loads(attempt["response"])["status"] == "accepted"

    received = api.get("/api/v1/sandbox/requests").json["data"]
    assert len(received) == 1
    assert received[0]["body"]["name"] == "Acme - Review Submitted"
    assert received[0]["body"]["customer"]["email"] == "ada@example.com"
    assert received[0]["idempotency_key"] == detail["idempotency_key"]

    [row] = api.get("/api/v1/events").json["data"]
    assert (row["event"], row["app"], row["trigger"], row["status"], row["attempts"]) == (
        "Acme - Review Submitted",
        "sandbox",
        "auto",
        "delivered",
        1,
    )
    assert row["target"] == {"email": "ada@example.com"}


@responses.activate
def test_it_retries_after_503_503_and_delivers_on_the_third_attempt(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    for status in (503, 503, 202):
        responses.post(HOOK_URL, status=status, body="busy" if status == 503 else "")
    api.post("/api/v1/triggers", json=review_trigger())

    before = datetime.now(UTC)
    deliver_round(rt)
    action = one_action(api)
    assert action["state"] == "pending" and action["reason_code"] == "retrying"
    wait = datetime.fromisoformat(action["run_at"]) - before
    assert timedelta(seconds=5) <= wait <= timedelta(seconds=7)  # first step of the schedule, plus jitter
    assert action["attempt_log"][0]["next_attempt_at"] == action["run_at"]

    assert deliver_round(rt) == 0  # not due yet: nothing is claimed early
    make_due(rt)
    deliver_round(rt)
    make_due(rt)
    deliver_round(rt)

    action = one_action(api)
    assert action["state"] == "delivered"
    assert [a["http_status"] for a in action["attempt_log"]] == [503, 503, 202]
    assert [a["outcome"] for a in action["attempt_log"]] == ["retry", "retry", "delivered"]
    # The same idempotency key went out every time: the platform can drop repeats.
    ids = {call.request.headers["webhook-id"] for call in responses.calls}
    assert ids == {action["idempotency_key"]}


@responses.activate
def test_a_signed_webhook_verifies_with_the_standard_webhooks_library(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=204)
    api.post("/api/v1/triggers", json=review_trigger())
    deliver_round(rt)

    [call] = responses.calls
    payload = Webhook(SECRET).verify(call.request.body, dict(call.request.headers))
    assert payload["name"] == "Acme - Review Submitted"
    assert payload["properties"]["review"]["rating"] == 5
    # The secret is never recorded.
    assert SECRET not in json.dumps(one_action(api))


@responses.activate
def test_a_429_waits_for_retry_after_without_spending_the_retry_budget(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=429, headers={"Retry-After": "120"})
    api.post("/api/v1/triggers", json=review_trigger())
    before = datetime.now(UTC)
    deliver_round(rt)

    action = one_action(api)
    assert action["state"] == "pending" and action["reason_code"] == "rate_limited"
    wait = datetime.fromisoformat(action["run_at"]) - before
    assert timedelta(seconds=119) <= wait <= timedelta(seconds=125)
    with rt.db.session() as session:
        row = session.scalars(select(Action)).one()
        assert (row.failure_count, row.rate_limited_count) == (0, 1)


@responses.activate
def test_a_permanent_400_fails_at_once_with_the_platforms_reason(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=400, json={"error": "phone is not a valid number"})
    api.post("/api/v1/triggers", json=review_trigger())
    deliver_round(rt)

    action = one_action(api)
    assert action["state"] == "failed" and action["reason_code"] == "rejected"
    assert "phone is not a valid number" in action["reason_text"]
    assert len(action["attempt_log"]) == 1


@responses.activate
def test_retries_stop_when_the_schedule_is_spent(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=500)
    api.post("/api/v1/triggers", json=review_trigger())
    for _ in range(len(rt.config.retry_schedule) + 1):
        make_due(rt)
        deliver_round(rt)

    action = one_action(api)
    assert action["state"] == "failed" and action["reason_code"] == "retries_exhausted"
    assert len(action["attempt_log"]) == len(rt.config.retry_schedule) + 1


@responses.activate
def test_a_401_puts_the_integration_in_needs_attention_and_holds_its_actions_until_fixed(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=401, json={"error": "bad signature secret"})
    api.post("/api/v1/triggers", json=review_trigger())
    api.post("/api/v1/triggers", json=review_trigger(review={"id": "r-2", "rating": 4}))
    # Deliver only the first: the second is still pending when the credentials are rejected.
    with rt.db.transaction() as session:
        first, second = session.scalars(select(Action.id).order_by(Action.id)).all()
        session.execute(update(Action).where(Action.id == second).values(run_at=datetime.now(UTC) + timedelta(hours=1)))
    deliver_round(rt)

    integration = api.get("/api/v1/integrations/webhook").json
    assert integration["state"] == "needs_attention"
    assert "bad signature secret" in integration["last_error"]
    states = {a["id"]: (a["state"], a["reason_code"]) for a in api.get("/api/v1/actions").json["data"]}
    assert states[first] == ("held", "credentials_rejected")
    assert states[second] == ("held", "integration_needs_attention")
    assert deliver_round(rt) == 0  # held actions are not claimed, and no attempt is burnt

    # New credentials release them.
    responses.replace(responses.POST, HOOK_URL, status=202)
    fixed = api.patch("/api/v1/integrations/webhook", json={"credentials": {"signing_secret": SECRET + "AA"}})
    assert fixed.status_code == 200 and fixed.json["state"] == "connected"
    make_due(rt)
    deliver_round(rt)
    assert {a["state"] for a in api.get("/api/v1/actions").json["data"]} == {"delivered"}


def test_a_manual_test_event_is_delivered_without_the_dispatcher(api: Api, rt: Runtime, live_server: str) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    sent = api.post("/api/v1/integrations/sandbox/test-events", json={"target": {"email": "qa@example.com"}})
    assert sent.status_code == 202, sent.json
    assert sent.json["trigger"] == "manual" and sent.json["state"] == "sending"

    run_worker(rt)  # no dispatch_once: the fast path enqueued it already

    detail = api.get(f"/api/v1/actions/{sent.json['id']}").json
    assert detail["state"] == "delivered"
    assert detail["attempt_log"][0]["request"]["body"]["test"] is True
    assert detail["event_name"] == "Acme - Test Event"


def test_the_sandbox_answers_what_the_tester_scripts(api: Api, rt: Runtime, live_server: str) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    changed = api.patch("/api/v1/integrations/sandbox", json={"settings": {"script": [503], "retry_after": 7}})
    assert changed.status_code == 200, changed.json
    api.post("/api/v1/triggers", json=review_trigger())
    before = datetime.now(UTC)
    deliver_round(rt)

    action = one_action(api)
    assert action["attempt_log"][0]["http_status"] == 503
    assert datetime.fromisoformat(action["run_at"]) - before >= timedelta(seconds=7)  # Retry-After honoured
    make_due(rt)
    deliver_round(rt)
    assert one_action(api)["state"] == "delivered"
    statuses = [r["status"] for r in api.get("/api/v1/sandbox/requests").json["data"]]
    assert statuses == [202, 503]


def test_the_sandbox_marks_a_repeated_idempotency_key_as_a_duplicate(api: Api, rt: Runtime, live_server: str) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    api.post("/api/v1/triggers", json=review_trigger())
    deliver_round(rt)
    # A worker that lost its lease sends again: the platform sees the same key and drops it.
    with rt.db.transaction() as session:
        session.execute(update(Action).values(state="queued"))
    ids = [a["id"] for a in api.get("/api/v1/actions").json["data"]]
    rt.queue.enqueue("jobs.deliver.deliver", ids)
    run_worker(rt)
    received = api.get("/api/v1/sandbox/requests").json["data"]
    assert [r["duplicate"] for r in received] == [True, False]


def test_a_paused_integration_holds_new_actions_and_resuming_releases_them(
    api: Api, rt: Runtime, live_server: str
) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    assert api.patch("/api/v1/integrations/sandbox", json={"state": "paused"}).json["state"] == "paused"
    created = api.post("/api/v1/triggers", json=review_trigger()).json
    assert created["actions"][0]["state"] == "held"
    assert deliver_round(rt) == 0
    api.patch("/api/v1/integrations/sandbox", json={"state": "connected"})
    deliver_round(rt)
    assert one_action(api)["state"] == "delivered"


def test_disconnecting_skips_what_was_waiting_and_erases_the_credentials(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    api.post("/api/v1/triggers", json=review_trigger())
    assert api.delete("/api/v1/integrations/webhook").status_code == 204
    action = one_action(api)
    assert (action["state"], action["reason_code"]) == ("skipped", "integration_disconnected")
    with rt.db.session() as session:
        assert session.scalars(select(Integration.credentials)).one() == ""
    assert api.get("/api/v1/integrations/webhook").status_code == 404


@pytest.mark.parametrize("secret_free_path", ["/api/v1/integrations", "/api/v1/integrations/webhook"])
def test_credentials_are_masked_in_every_response(api: Api, secret_free_path: str) -> None:
    connect_webhook(api)
    body = api.get(secret_free_path).get_data(as_text=True)
    assert SECRET not in body and SECRET[-20:] not in body


def test_the_sandbox_fails_the_share_of_requests_the_tester_asks_for(api: Api, rt: Runtime, live_server: str) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    api.patch("/api/v1/integrations/sandbox", json={"settings": {"failure_rate": 1.0, "failure_status": 500}})
    api.post("/api/v1/triggers", json=review_trigger())
    deliver_round(rt)
    action = one_action(api)
    assert (action["state"], action["attempt_log"][0]["http_status"]) == ("pending", 500)


def test_the_sandbox_answers_after_the_latency_the_tester_sets(api: Api, rt: Runtime, live_server: str) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    api.patch("/api/v1/integrations/sandbox", json={"settings": {"latency_ms": 300}})
    api.post("/api/v1/triggers", json=review_trigger())
    deliver_round(rt)
    action = one_action(api)
    assert action["state"] == "delivered"
    assert action["attempt_log"][0]["duration_ms"] >= 300


def test_sandbox_settings_are_validated(api: Api) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    answer = api.patch("/api/v1/integrations/sandbox", json={"settings": {"failure_rate": 2, "script": [99]}})
    assert answer.status_code == 422
    assert set(answer.json["error"]["fields"]) == {"settings.failure_rate", "settings.script.0"}


def test_samples_send_one_labelled_event_of_every_flow_event_at_once(api: Api, rt: Runtime, live_server: str) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    sent = api.post("/api/v1/integrations/sandbox/samples", json={"target": {"email": "merchant@example.com"}})
    assert sent.status_code == 202, sent.json
    assert sorted(a["event_name"] for a in sent.json["data"]) == ["Acme - Review Request", "Acme - Review Submitted"]
    assert {a["trigger"] for a in sent.json["data"]} == {"manual"}
    run_worker(rt)  # the fast path: no dispatcher round
    received = api.get("/api/v1/sandbox/requests").json["data"]
    assert len(received) == 2 and all(r["body"]["properties"]["sample"] is True for r in received)
    review = next(r for r in received if r["body"]["name"] == "Acme - Review Submitted")
    assert review["body"]["properties"]["review"]["rating"] == 5
    assert review["body"]["properties"]["items"][0]["name"] == "Sample Product"


def test_samples_need_a_target_and_a_connected_app(api: Api) -> None:
    assert (
        api.post("/api/v1/integrations/sandbox/samples", json={"target": {"email": "a@example.com"}}).status_code == 404
    )
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    bad = api.post("/api/v1/integrations/sandbox/samples", json={"target": {}})
    assert bad.status_code == 422 and "target" in bad.json["error"]["fields"]


def webhook_actions(rt: Runtime, tenant: Tenant, count: int) -> list[int]:
    with rt.db.transaction() as session:
        integration = Integration(
            store_id=tenant.store.id,
            app="webhook",
            credentials=rt.box.encrypt({"signing_secret": SECRET}),
            settings={"url": HOOK_URL},
        )
        session.add(integration)
        session.flush()
        integration_id = integration.id
    return add_actions(rt, tenant, integration_id, customers(count))


def states(rt: Runtime) -> list[tuple[str, str | None, int]]:
    with rt.db.session() as session:
        rows = session.execute(select(Action.state, Action.reason_code, Action.attempt_count).order_by(Action.id)).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


@responses.activate
def test_a_platform_that_stops_answering_costs_a_job_three_timeouts_and_the_rest_wait_without_an_attempt(
    rt: Runtime, tenant: Tenant
) -> None:
    webhook_actions(rt, tenant, 6)
    hook = responses.post(HOOK_URL, body=requests.ConnectTimeout("no answer"))

    deliver_round(rt)

    assert len(hook.calls) == 3
    rows = states(rt)
    assert rows[:3] == [("pending", "retrying", 1)] * 3
    assert rows[3:] == [("pending", "platform_unanswering", 0)] * 3
    with rt.db.session() as session:
        run_ats = session.scalars(select(Action.run_at).order_by(Action.id)).all()
    assert run_ats[3:] == [run_ats[2]] * 3  # they wait for the last one tried

    responses.replace(responses.POST, HOOK_URL, status=202)
    make_due(rt)
    deliver_round(rt)
    assert {row[0] for row in states(rt)} == {"delivered"}


@responses.activate
def test_an_answer_between_timeouts_starts_the_count_again(rt: Runtime, tenant: Tenant) -> None:
    webhook_actions(rt, tenant, 6)
    answers = iter([requests.ReadTimeout("slow"), requests.ReadTimeout("slow"), None, *[requests.ReadTimeout()] * 3])

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        problem = next(answers)
        if problem is not None:
            raise problem
        return 202, {}, ""

    responses.add_callback(responses.POST, HOOK_URL, callback=answer)
    deliver_round(rt)

    assert [row[:2] for row in states(rt)] == [
        ("pending", "retrying"),
        ("pending", "retrying"),
        ("delivered", None),
        ("pending", "retrying"),
        ("pending", "retrying"),
        ("pending", "retrying"),
    ]


@responses.activate
def test_a_job_that_runs_out_of_time_hands_what_it_has_not_sent_back_to_the_queue(
    rt: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhook_actions(rt, tenant, 5)
    hook = responses.post(HOOK_URL, status=202)
    budget = rt.config.lease_seconds * delivery.BUDGET_SHARE
    ticks = iter([0.0, 1.0, 2.0, budget + 1, budget + 2, budget + 3])  # the deadline is set at 0.0
    monkeypatch.setattr(delivery, "_clock", lambda: next(ticks))

    deliver_round(rt)

    assert len(hook.calls) == 2
    assert states(rt) == [("delivered", None, 1)] * 2 + [("pending", "job_out_of_time", 0)] * 3
    monkeypatch.setattr(delivery, "_clock", lambda: 0.0)
    deliver_round(rt)
    assert {row[0] for row in states(rt)} == {"delivered"}
