"""Bulk trigger ingest: each trigger judged on its own, repeats found within the batch and before it, one
transaction, guards applied, and scoped to the token's store."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from sqlalchemy import func, select, text

from hub.models import Action, Customer, Trigger
from hub.runtime import Runtime
from schemas.triggers import MAX_BULK_TRIGGERS
from tests.conftest import Api, make_tenant
from tests.test_triggers import connect_two_apps, order_trigger


def bulk(api: Api, triggers: list[Any], **kwargs: Any) -> Any:
    return api.post("/api/v1/triggers/bulk", json={"triggers": triggers}, **kwargs)


def counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Trigger)) or 0,
            session.scalar(select(func.count()).select_from(Action)) or 0,
            session.scalar(select(func.count()).select_from(Customer)) or 0,
        )


def test_valid_triggers_go_in_and_invalid_ones_are_rejected_with_their_field_errors(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    bad_email = order_trigger("2", customer={"email": "not-an-email"})
    no_order = {"type": "order.fulfilled", "customer": {"email": "b@example.com"}}
    answer = bulk(api, [order_trigger("1"), bad_email, no_order, "not an object"])
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 3)
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "rejected"]
    assert len(results[0]["actions"]) == 2 and results[0]["trigger_id"]
    assert list(results[1]["errors"]) == ["customer.email"]
    assert list(results[2]["errors"]) == ["order"]
    assert "_schema" in results[3]["errors"] or "_body" in results[3]["errors"]
    assert counts(rt) == (1, 2, 1)


def test_the_actions_are_those_a_single_post_would_create(api: Api) -> None:
    connect_two_apps(api)
    single = api.post("/api/v1/triggers", json=order_trigger("1")).json["actions"]
    bulk(api, [order_trigger("2")])
    created = [a for a in api.get("/api/v1/actions").json["data"] if a["order_id"] == "2"]

    def shape(action: dict[str, Any]) -> tuple[Any, ...]:
        return (action["app"], action["event_name"], action["state"], action["run_at"], action["target"])

    assert sorted(map(shape, created)) == sorted(map(shape, single))


def test_repeats_within_the_batch_and_of_earlier_triggers_answer_with_the_first_ones_actions(
    api: Api, rt: Runtime
) -> None:
    connect_two_apps(api)
    earlier = api.post("/api/v1/triggers", json=order_trigger("1")).json
    answer = bulk(api, [order_trigger("1"), order_trigger("2"), order_trigger("2", occurred_at="2026-11-03T00:00:00Z")])
    results = answer.json["results"]
    assert [r["status"] for r in results] == ["duplicate", "accepted", "duplicate"]
    assert results[0]["trigger_id"] == earlier["id"]
    assert results[0]["actions"] == [a["id"] for a in earlier["actions"]]
    assert (results[2]["trigger_id"], results[2]["actions"]) == (results[1]["trigger_id"], results[1]["actions"])
    assert counts(rt)[:2] == (2, 4)

    again = bulk(api, [order_trigger("2")]).json["results"][0]
    assert (again["status"], again["trigger_id"], again["actions"]) == (
        "duplicate",
        results[1]["trigger_id"],
        results[1]["actions"],
    )


def test_an_idempotency_key_per_trigger_dedupes_triggers_without_an_order(api: Api, rt: Runtime) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    review = {"type": "review.submitted", "customer": {"email": "a@example.com"}, "review": {"rating": 5}}
    first = api.post("/api/v1/triggers", json=review, headers={"Idempotency-Key": "k-1"}).json
    results = bulk(
        api,
        [
            {**review, "idempotency_key": "k-1"},
            {**review, "idempotency_key": "k-2"},
            {**review, "idempotency_key": "k-2"},
        ],
    ).json["results"]
    assert [r["status"] for r in results] == ["duplicate", "accepted", "duplicate"]
    assert results[0]["trigger_id"] == first["id"]
    with rt.db.session() as session:
        payloads = session.scalars(select(Trigger.payload).order_by(Trigger.id)).all()
    assert all("idempotency_key" not in p for p in payloads)


def test_ndjson_works_and_a_line_that_is_not_json_is_rejected_alone(api: Api, rt: Runtime) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    body = "\n".join([json.dumps(order_trigger("1")), "{not json", "", json.dumps(order_trigger("2"))]) + "\n"
    answer = api.post("/api/v1/triggers/bulk", data=body, content_type="application/x-ndjson")
    assert answer.status_code == 200, answer.json
    assert [r["status"] for r in answer.json["results"]] == ["accepted", "rejected", "accepted"]
    assert "Not valid JSON" in answer.json["results"][1]["errors"]["_body"][0]
    assert counts(rt)[:2] == (2, 2)


def test_too_many_triggers_are_refused_whole_and_nothing_is_written(api: Api, rt: Runtime) -> None:
    answer = bulk(api, [order_trigger(str(n)) for n in range(MAX_BULK_TRIGGERS + 1)])
    assert answer.status_code == 413
    assert answer.json["error"]["code"] == "payload_too_large" and "triggers" in answer.json["error"]["fields"]
    assert counts(rt) == (0, 0, 0)


def test_a_request_that_cannot_be_read_gets_a_clear_error(api: Api, rt: Runtime) -> None:
    empty = bulk(api, [])
    assert empty.status_code == 422 and "triggers" in empty.json["error"]["fields"]
    not_a_list = api.post("/api/v1/triggers/bulk", json={"triggers": {"type": "order.fulfilled"}})
    assert not_a_list.status_code == 422
    broken = api.post("/api/v1/triggers/bulk", data="{", content_type="application/json")
    assert broken.status_code == 400 and broken.json["error"]["code"] == "bad_request"
    text = api.post("/api/v1/triggers/bulk", data="hello", content_type="text/plain")
    assert text.status_code == 415
    assert counts(rt) == (0, 0, 0)


def test_a_bulk_request_needs_a_token_and_writes_only_to_its_own_store(api: Api, rt: Runtime, app: Flask) -> None:
    connect_two_apps(api)
    mine = api.post("/api/v1/triggers", json=order_trigger("1")).json
    client = app.test_client()
    assert client.post("/api/v1/triggers/bulk", json={"triggers": [order_trigger("1")]}).status_code == 401

    other = make_tenant(rt, "Other")
    client.post("/api/v1/integrations", json={"app": "sandbox"}, headers=other.headers)
    answer = client.post("/api/v1/triggers/bulk", json={"triggers": [order_trigger("1")]}, headers=other.headers)
    result = answer.json["results"][0]
    assert result["status"] == "accepted" and result["trigger_id"] != mine["id"]
    with rt.db.session() as session:
        stores = session.execute(select(Trigger.store_id, func.count()).group_by(Trigger.store_id)).all()
        customers = session.scalars(select(Customer.store_id).order_by(Customer.store_id)).all()
    assert sorted(n for _, n in stores) == [1, 1] and len(set(customers)) == 2
    theirs = client.get("/api/v1/actions", headers=other.headers).json["data"]
    assert [a["id"] for a in theirs] == result["actions"]
    assert {a["event_name"] for a in theirs} == {"Other - Review Request"}


def test_guards_apply_to_bulk_triggers(api: Api) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    api.post("/api/v1/suppressions", json={"value": "quiet@example.com"})
    waiting = api.post("/api/v1/triggers", json=order_trigger("9")).json["actions"][0]
    results = bulk(
        api,
        [
            order_trigger("1", customer={"email": "Quiet@example.com"}),
            order_trigger("2"),
            {"type": "order.cancelled", "customer": {"email": "ada@example.com"}, "order": {"id": "2"}},
            {"type": "order.refunded", "customer": {"email": "ada@example.com"}, "order": {"id": "9"}},
        ],
    ).json["results"]
    assert [r["status"] for r in results] == ["accepted"] * 4
    actions = {a["id"]: a for a in api.get("/api/v1/actions").json["data"]}
    suppressed, stopped = actions[results[0]["actions"][0]], actions[results[1]["actions"][0]]
    assert (suppressed["state"], suppressed["reason_code"]) == ("skipped", "unsubscribed")
    assert (stopped["state"], stopped["reason_code"]) == ("skipped", "order_cancelled")
    assert results[3]["cancelled"] == 1
    cancelled = actions[waiting["id"]]
    assert (cancelled["state"], cancelled["reason_code"], cancelled["reason_text"]) == (
        "cancelled",
        "order_refunded",
        "order 9 was refunded",
    )


def test_two_triggers_of_one_order_sending_the_same_event_send_it_once(api: Api, rt: Runtime) -> None:
    from hub.models import Flow, FlowStep

    api.post("/api/v1/integrations", json={"app": "sandbox"})
    with rt.db.transaction() as session:
        flow = Flow(store_id=api.tenant.store.id, name="Also on delivery", trigger="order.delivered", enabled=True)
        flow.steps = [FlowStep(position=0, delay_seconds=0, kind="event", event_name="Review Request")]
        session.add(flow)
    delivered = order_trigger("1", type="order.delivered")
    results = bulk(api, [order_trigger("1"), delivered]).json["results"]
    actions = {a["id"]: a for a in api.get("/api/v1/actions").json["data"]}
    first, second = actions[results[0]["actions"][0]], actions[results[1]["actions"][0]]
    assert first["state"] == "pending"
    assert (second["state"], second["reason_code"]) == ("skipped", "duplicate")


def test_one_new_customer_named_twice_in_a_batch_is_created_once_with_everything_it_was_told(
    api: Api, rt: Runtime
) -> None:
    bulk(
        api,
        [
            order_trigger("1", customer={"email": "new@example.com"}),
            order_trigger("2", customer={"email": "new@example.com", "phone": "+14155550100", "first_name": "Nia"}),
            order_trigger("3", customer={"phone": "+14155550100", "last_name": "Ode"}),
        ],
    )
    with rt.db.session() as session:
        [customer] = session.scalars(select(Customer)).all()
        trigger_customers = set(session.scalars(select(Trigger.customer_id)).all())
    assert (customer.email, customer.phone, customer.first_name, customer.last_name) == (
        "new@example.com",
        "+14155550100",
        "Nia",
        "Ode",
    )
    assert trigger_customers == {customer.id}


def test_a_trigger_matching_two_customers_of_the_batch_by_different_identities_takes_the_first_one(
    api: Api, rt: Runtime
) -> None:
    results = bulk(
        api,
        [
            order_trigger("1", customer={"email": "first@example.com"}),
            order_trigger("2", customer={"phone": "+14155550100"}),
            order_trigger("3", customer={"phone": "+14155550100", "email": "first@example.com"}),
        ],
    ).json["results"]
    with rt.db.session() as session:
        customer_of = dict(session.execute(select(Trigger.id, Trigger.customer_id)).all())
        first = session.get(Customer, customer_of[results[0]["trigger_id"]])
    assert customer_of[results[2]["trigger_id"]] == first.id != customer_of[results[1]["trigger_id"]]
    assert (first.email, first.phone) == ("first@example.com", "+14155550100")


def test_an_existing_customer_is_found_and_updated(api: Api, rt: Runtime) -> None:
    api.post("/api/v1/triggers", json=order_trigger("1"))
    bulk(api, [order_trigger("2", customer={"external_id": "cus_1", "last_name": "Lovelace"})])
    with rt.db.session() as session:
        [customer] = session.scalars(select(Customer)).all()
    assert (customer.email, customer.last_name) == ("ada@example.com", "Lovelace")


def test_a_large_batch_is_written_whole_with_repeats_answered(api: Api, rt: Runtime) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    earlier = [api.post("/api/v1/triggers", json=order_trigger(str(n))).json for n in range(5)]
    triggers = [order_trigger(str(n), customer={"email": f"c{n}@example.com"}) for n in range(120)]
    results = bulk(api, triggers).json["results"]
    assert [r["status"] for r in results] == ["duplicate"] * 5 + ["accepted"] * 115
    assert [r["trigger_id"] for r in results[:5]] == [e["id"] for e in earlier]
    actions = {a["id"]: a for a in api.get("/api/v1/actions", query_string={"limit": 200}).json["data"]}
    for result in results[5:]:
        [action_id] = result["actions"]
        assert actions[action_id]["trigger_id"] == result["trigger_id"]
        assert actions[action_id]["order_id"] == str(result["index"])
        assert actions[action_id]["target"]["email"] == f"c{result['index']}@example.com"
        assert actions[action_id]["state"] == "pending"  # COPY wrote the enum's value, not its name
    assert counts(rt) == (120, 120, 116)
    with rt.db.session() as session:
        assert set(session.scalars(text("SELECT DISTINCT state FROM actions"))) == {"pending"}


def test_a_trigger_stored_concurrently_between_the_check_and_the_write_is_a_duplicate(
    api: Api, rt: Runtime, monkeypatch: Any
) -> None:
    from hub import bulk_ingest

    api.post("/api/v1/integrations", json={"app": "sandbox"})
    first = api.post("/api/v1/triggers", json=order_trigger("0")).json
    real = bulk_ingest._existing_triggers
    calls: list[int] = []

    def misses_the_first_time(*args: Any) -> dict[str, int]:
        calls.append(1)
        return {} if len(calls) == 1 else real(*args)  # as if "0" was stored just after the check

    monkeypatch.setattr(bulk_ingest, "_existing_triggers", misses_the_first_time)
    triggers = [order_trigger(str(n), customer={"email": f"c{n}@example.com"}) for n in range(60)]
    results = bulk(api, triggers).json["results"]
    assert results[0]["status"] == "duplicate" and results[0]["trigger_id"] == first["id"]
    assert [r["status"] for r in results[1:]] == ["accepted"] * 59
    assert counts(rt)[:2] == (60, 60)


def test_the_action_builder_keys_actions_as_idempotency_key_does(api: Api, rt: Runtime) -> None:
    from hub.flows import idempotency_key

    connect_two_apps(api)
    [result] = bulk(api, [order_trigger("1")]).json["results"]
    with rt.db.session() as session:
        rows = session.execute(
            select(Action.idempotency_key, Action.store_id, Action.step_id, Action.app, Trigger.dedupe_key)
            .join(Trigger, Trigger.id == Action.trigger_id)
            .where(Action.id.in_(result["actions"]))
        ).all()
    assert len(rows) == 2
    for key, store_id, step_id, app, dedupe_key in rows:
        assert key == idempotency_key(store_id, dedupe_key, step_id, app)
