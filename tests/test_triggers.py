"""Triggers become actions: default flows, delays, prefixes, idempotency and store scoping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from hub.db import Statements
from hub.models import Action, Customer, Flow, Trigger
from hub.runtime import Runtime
from schemas.actions import ActionOut, TriggerOut, action_out
from tests.conftest import Api, make_tenant


def order_trigger(order_id: str = "1001", **overrides: Any) -> dict[str, Any]:
    trigger = {
        "type": "order.fulfilled",
        "occurred_at": "2026-11-01T10:00:00Z",
        "customer": {"email": "ada@example.com", "phone": "+14155550123", "first_name": "Ada", "external_id": "cus_1"},
        "order": {
            "id": order_id,
            "items": [
                {
                    "product_id": "p-1",
                    "name": "Linen Shirt",
                    "url": "https://shop.example.com/p/1",
                    "image_url": "https://cdn.example.com/p1.jpg",
                    "price": "49.00",
                    "currency": "USD",
                }
            ],
        },
    }
    trigger.update(overrides)
    return trigger


def connect_two_apps(api: Api) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    api.post(
        "/api/v1/integrations",
        json={
            "app": "webhook",
            "credentials": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
            "settings": {"url": "https://hooks.example.com/x"},
        },
    )


def test_a_new_store_gets_the_two_default_flows(rt: Runtime, api: Api) -> None:
    with rt.db.session() as session:
        flows = session.scalars(select(Flow).order_by(Flow.id)).all()
        summary = [(f.name, f.trigger, [(s.delay_seconds, s.event_name, s.app) for s in f.steps]) for f in flows]
    assert summary == [
        ("Post-purchase review request", "order.fulfilled", [(14 * 86400, "Review Request", None)]),
        ("Post-review actions", "review.submitted", [(0, "Review Submitted", None)]),
    ]


def test_an_order_fulfilled_trigger_schedules_a_review_request_per_connected_app_fourteen_days_later(api: Api) -> None:
    connect_two_apps(api)
    answer = api.post("/api/v1/triggers", json=order_trigger())
    assert answer.status_code == 202, answer.json
    actions = answer.json["actions"]
    assert sorted(a["app"] for a in actions) == ["sandbox", "webhook"]
    for action in actions:
        assert action["event_name"] == "Acme - Review Request"
        assert action["state"] == "pending" and action["trigger"] == "auto"
        assert datetime.fromisoformat(action["run_at"]) == datetime(2026, 11, 15, 10, 0, tzinfo=UTC)
        assert action["target"] == {"email": "ada@example.com", "phone": "+14155550123", "external_id": "cus_1"}
    assert len({a["idempotency_key"] for a in actions}) == 2


def test_the_event_snapshot_carries_the_order_items_for_the_platform(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger())
    with rt.db.session() as session:
        payload = session.scalars(select(Action.payload).where(Action.app == "webhook")).one()
    assert payload["properties"]["items"][0] == {
        "product_id": "p-1",
        "name": "Linen Shirt",
        "url": "https://shop.example.com/p/1",
        "image_url": "https://cdn.example.com/p1.jpg",
        "price": "49.00",
        "currency": "USD",
    }
    assert payload["properties"]["order_id"] == "1001"
    assert payload["customer"]["first_name"] == "Ada"


def test_the_same_trigger_twice_creates_nothing_new_and_answers_with_the_same_actions(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    first = api.post("/api/v1/triggers", json=order_trigger())
    again = api.post("/api/v1/triggers", json=order_trigger(occurred_at="2026-11-02T10:00:00Z"))
    assert again.status_code == 200 and again.json["duplicate"] is True
    assert [a["id"] for a in again.json["actions"]] == [a["id"] for a in first.json["actions"]]
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Action)) == 2
        assert session.scalar(select(func.count()).select_from(Trigger)) == 1


def test_an_idempotency_key_header_dedupes_triggers_without_an_order(api: Api) -> None:
    connect_two_apps(api)
    trigger = {"type": "review.submitted", "customer": {"email": "a@example.com"}, "review": {"rating": 4}}
    first = api.post("/api/v1/triggers", json=trigger, headers={"Idempotency-Key": "abc-1"})
    again = api.post("/api/v1/triggers", json=trigger, headers={"Idempotency-Key": "abc-1"})
    other = api.post("/api/v1/triggers", json=trigger, headers={"Idempotency-Key": "abc-2"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json["id"] == first.json["id"] != other.json["id"]


def test_a_trigger_with_no_app_connected_creates_no_action(api: Api) -> None:
    answer = api.post("/api/v1/triggers", json=order_trigger())
    assert answer.status_code == 202 and answer.json["actions"] == []


def test_customers_are_matched_by_external_id_email_or_phone(api: Api, rt: Runtime) -> None:
    api.post("/api/v1/triggers", json=order_trigger("1"))
    api.post(
        "/api/v1/triggers", json=order_trigger("2", customer={"email": "ada@example.com", "last_name": "Lovelace"})
    )
    with rt.db.session() as session:
        [customer] = session.scalars(select(Customer)).all()
    assert (customer.first_name, customer.last_name, customer.external_id) == ("Ada", "Lovelace", "cus_1")


def test_an_empty_event_prefix_leaves_event_names_alone(rt: Runtime, app: Flask) -> None:
    with rt.db.transaction() as session:
        from hub.stores import create_store, create_token

        store = create_store(session, "Plain", event_prefix="")
        _, token = create_token(session, store.id)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    client.post("/api/v1/integrations", json={"app": "sandbox"}, headers=headers)
    answer = client.post("/api/v1/triggers", json=order_trigger(), headers=headers)
    assert answer.json["actions"][0]["event_name"] == "Review Request"


def test_another_stores_actions_are_invisible_and_answer_404(api: Api, rt: Runtime, app: Flask) -> None:
    connect_two_apps(api)
    mine = api.post("/api/v1/triggers", json=order_trigger()).json["actions"][0]["id"]
    other = make_tenant(rt, "Other")
    client = app.test_client()
    assert client.get(f"/api/v1/actions/{mine}", headers=other.headers).status_code == 404
    assert client.get("/api/v1/actions", headers=other.headers).json["data"] == []
    assert client.get("/api/v1/integrations/sandbox", headers=other.headers).status_code == 404


def test_actions_page_with_a_cursor_and_filter(api: Api) -> None:
    connect_two_apps(api)
    for n in range(5):
        api.post("/api/v1/triggers", json=order_trigger(str(n)))
    seen: list[int] = []
    cursor = None
    while True:
        query = {"limit": 3, "app": "webhook", **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/actions", query_string=query).json
        seen += [a["id"] for a in page["data"]]
        assert all(a["app"] == "webhook" for a in page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)


def test_the_trigger_time_defaults_to_now(api: Api) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    before = datetime.now(UTC)
    trigger = order_trigger()
    del trigger["occurred_at"]
    action = api.post("/api/v1/triggers", json=trigger).json["actions"][0]
    run_at = datetime.fromisoformat(action["run_at"])
    assert before + timedelta(days=14) - timedelta(seconds=1) <= run_at <= datetime.now(UTC) + timedelta(days=14)


# Ingest in a session's transaction (its caller commits), and on an autocommit connection (POST /triggers on
# PostgreSQL).
SESSIONS = pytest.mark.parametrize("kind", ["session", "statements"])


@contextmanager
def ingest_work(rt: Runtime, kind: str) -> Iterator[Statements]:
    if kind == "statements":
        with rt.db.statements() as work:
            yield work
    else:
        with rt.db.session() as session:
            yield Statements.of(session)


@SESSIONS
def test_the_same_trigger_posted_twice_at_once_is_stored_once(api: Api, rt: Runtime, kind: str) -> None:
    import threading

    from hub import flows
    from hub.models import Store
    from schemas.triggers import TriggerIn

    connect_two_apps(api)
    data = TriggerIn().load(order_trigger("race-1"))
    barrier = threading.Barrier(2)
    results: list[flows.Ingested] = []

    def post() -> None:
        barrier.wait()
        with ingest_work(rt, kind) as work:
            store = work.session.scalars(select(Store)).one()
            result = flows.ingest(work, store, data)
            work.commit()
            results.append(result)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.duplicate for r in results) == [False, True]
    assert {tuple(a.id for a in r.actions) for r in results} == {tuple(a.id for a in results[0].actions)}
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Trigger)) == 1
        assert session.scalar(select(func.count()).select_from(Action)) == 2


def test_a_delayed_steps_event_is_dated_when_the_step_comes_due_and_keeps_the_trigger_time(
    rt: Runtime, api: Api
) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger())
    with rt.db.session() as session:
        payloads = session.scalars(select(Action.payload)).all()
    assert payloads
    for payload in payloads:
        assert datetime.fromisoformat(payload["occurred_at"]) == datetime(2026, 11, 15, 10, tzinfo=UTC)
        assert datetime.fromisoformat(payload["properties"]["trigger_occurred_at"]) == datetime(
            2026, 11, 1, 10, tzinfo=UTC
        )


def test_the_answer_to_a_trigger_is_what_trigger_out_would_dump_new_or_duplicate(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("1"))
    # The same order again under another key: a new trigger whose actions are skipped as duplicates of the first.
    answers = [api.post("/api/v1/triggers", json=order_trigger("1"), headers={"Idempotency-Key": "k"}) for _ in "ab"]
    with rt.db.session() as session:
        trigger = session.get(Trigger, answers[0].json["id"])
        rows = session.scalars(select(Action).where(Action.trigger_id == trigger.id).order_by(Action.id)).all()
        # The answer is built without marshmallow (schemas.actions.action_out): it must be what the schema dumps.
        expected = TriggerOut().dump(
            {"id": trigger.id, "type": trigger.type, "actions": rows, "cancelled": 0, "status": "processed"}
        )
    assert [(a["state"], a["reason_code"]) for a in expected["actions"]] == [("skipped", "duplicate")] * 2
    for answer, duplicate in zip(answers, (False, True), strict=True):
        assert answer.json == {**expected, "duplicate": duplicate}
        assert all(action_out(row) == ActionOut().dump(row) for row in rows)
    shown = api.get(f"/api/v1/triggers/{trigger.id}").json
    assert shown == {k: v for k, v in expected.items() if k != "cancelled"} | {"duplicate": False}


@SESSIONS
def test_a_trigger_that_loses_the_race_after_its_look_ahead_answers_with_the_winners_actions(
    api: Api, rt: Runtime, monkeypatch: Any, kind: str
) -> None:
    from hub import flows
    from hub.models import Store
    from schemas.triggers import TriggerIn

    if not rt.db.is_postgresql:
        pytest.skip("SQLite takes its write lock when a transaction begins: two ingests cannot interleave")
    connect_two_apps(api)
    data = TriggerIn().load(order_trigger("race-2"))
    real_store_config = flows.store_config
    winner: list[flows.Ingested] = []

    def winner_first(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(flows, "store_config", real_store_config)
        # The same trigger is stored and committed between the loser's look-ahead and its writes.
        with rt.db.session() as other:
            winner.append(flows.ingest(other, other.scalars(select(Store)).one(), data))
            other.commit()
        return real_store_config(*args, **kwargs)

    monkeypatch.setattr(flows, "store_config", winner_first)
    with ingest_work(rt, kind) as work:
        loser = flows.ingest(work, work.session.scalars(select(Store)).one(), data)
        work.commit()
    assert loser.duplicate and not winner[0].duplicate
    assert [a.id for a in loser.actions] == [a.id for a in winner[0].actions] and len(loser.actions) == 2
    with rt.db.session() as session:  # nothing of the loser's was kept, its new customer neither
        assert [session.scalar(select(func.count()).select_from(m)) for m in (Trigger, Action, Customer)] == [1, 2, 1]


@pytest.mark.parametrize(
    "external_id",
    ["cus_1", "cüs_1", "cus\x7f1", "cus\u20281", 'cus"\\/1'],
    ids=["ascii", "non-ascii", "delete", "line separator", "escapes"],
)
def test_the_answer_to_a_trigger_is_byte_for_byte_what_jsonify_writes(app: Flask, api: Api, external_id: str) -> None:
    from flask import jsonify

    connect_two_apps(api)
    customer = {"email": "ada@example.com", "external_id": external_id}
    answer = api.post("/api/v1/triggers", json=order_trigger(customer=customer))
    assert answer.status_code == 202 and answer.json["actions"][0]["target"]["external_id"] == external_id
    with app.app_context():
        expected = jsonify(answer.json).get_data()
    assert answer.get_data() == expected and answer.mimetype == "application/json"


def test_without_postgresql_respond_async_is_ignored_and_the_answer_has_the_actions(api: Api, rt: Runtime) -> None:
    if rt.db.is_postgresql:
        pytest.skip("PostgreSQL honours the preference (tests/test_received_triggers.py)")
    connect_two_apps(api)
    answer = api.post("/api/v1/triggers", json=order_trigger(), headers={"Prefer": "respond-async"})
    assert answer.status_code == 202 and "Preference-Applied" not in answer.headers
    assert answer.json["status"] == "processed" and len(answer.json["actions"]) == 2


def test_without_postgresql_nothing_is_received_for_later(api: Api, rt: Runtime) -> None:
    if rt.db.is_postgresql:
        pytest.skip("PostgreSQL receives triggers for later (tests/test_received_triggers.py)")
    assert api.get("/api/v1/triggers/received").json == {"waiting": 0, "failed": 0, "failed_triggers": []}
    assert api.post("/api/v1/triggers/received/retry").json == {"retried": 0}
