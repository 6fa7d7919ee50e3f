"""POST /triggers with ``Prefer: respond-async``: stored at once, processed by the dispatcher a moment later."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest
from flask import Flask
from sqlalchemy import func, select, update

from hub import inbox
from hub.api.triggers import prefers_async
from hub.models import Action, ReceivedTrigger, Store, Trigger
from hub.runtime import Runtime
from jobs import dispatch
from tests.conftest import Api, make_tenant
from tests.test_cli_outbox import Hub
from tests.test_triggers import connect_two_apps, order_trigger

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(autouse=True)
def postgresql_only(rt: Runtime) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("triggers are received for later only on PostgreSQL")


def receive(api: Api, trigger: dict[str, Any], **headers: str) -> Any:
    return api.post("/api/v1/triggers", json=trigger, headers={**ASYNC, **headers})


def fold(rt: Runtime) -> int:
    return inbox.fold_once(rt.db, rt.caches.stores)


def count(rt: Runtime, model: Any) -> int:
    with rt.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def set_body(rt: Runtime, trigger_id: int, body: str) -> None:
    """Change what a received trigger holds, as a release that reads it otherwise would see it."""
    with rt.db.transaction() as session:
        session.execute(update(ReceivedTrigger).where(ReceivedTrigger.trigger_id == trigger_id).values(body=body))


def comparable(actions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((a["app"], a["event_name"], a["state"], a["run_at"], a["idempotency_key"]) for a in actions)


def test_a_trigger_sent_with_respond_async_is_answered_before_its_flows_run(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    answer = receive(api, order_trigger())
    assert answer.status_code == 202, answer.json
    assert answer.headers["Preference-Applied"] == "respond-async"
    assert answer.json["status"] == "received" and answer.json["actions"] == []
    assert answer.json["type"] == "order.fulfilled" and answer.json["duplicate"] is False
    assert count(rt, Trigger) == 0 and count(rt, Action) == 0 and count(rt, ReceivedTrigger) == 1
    shown = api.get(f"/api/v1/triggers/{answer.json['id']}")
    assert shown.status_code == 200 and shown.json["status"] == "received" and shown.json["actions"] == []


def test_once_processed_it_has_the_id_it_was_given_and_the_actions_a_plain_post_would_have_made(
    api: Api, rt: Runtime, app: Flask
) -> None:
    connect_two_apps(api)
    received = receive(api, order_trigger("1001")).json
    assert fold(rt) == 1
    assert count(rt, ReceivedTrigger) == 0
    shown = api.get(f"/api/v1/triggers/{received['id']}").json
    assert shown["status"] == "processed" and shown["id"] == received["id"] and shown["type"] == "order.fulfilled"

    other = make_tenant(rt, "Other")  # the same trigger posted plainly in another store of the same name prefix
    plain = Api(app.test_client(), other)
    connect_two_apps(plain)
    direct = plain.post("/api/v1/triggers", json=order_trigger("1001")).json
    assert len(shown["actions"]) == 2
    assert [(a, e, s, r) for a, e, s, r, _ in comparable(shown["actions"])] == [
        (a, e.replace("Other", "Acme"), s, r) for a, e, s, r, _ in comparable(direct["actions"])
    ]


def test_the_same_trigger_again_is_a_duplicate_whether_it_waits_or_was_processed(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    first = receive(api, order_trigger("1001")).json
    again = receive(api, order_trigger("1001"))
    assert again.status_code == 200 and again.json["duplicate"] is True
    assert again.json["id"] == first["id"] and again.json["status"] == "received"
    assert count(rt, ReceivedTrigger) == 1

    fold(rt)
    later = receive(api, order_trigger("1001"))
    assert later.status_code == 200 and later.json["duplicate"] is True and later.json["status"] == "processed"
    assert later.json["id"] == first["id"] and len(later.json["actions"]) == 2
    plain = api.post("/api/v1/triggers", json=order_trigger("1001"))
    assert plain.status_code == 200 and plain.json["duplicate"] is True
    assert count(rt, Trigger) == 1 and count(rt, Action) == 2 and count(rt, ReceivedTrigger) == 0


def test_a_trigger_posted_plainly_while_its_twin_waits_is_processed_once(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    receive(api, order_trigger("1001"))
    assert api.post("/api/v1/triggers", json=order_trigger("1001")).status_code == 202
    fold(rt)
    assert count(rt, Trigger) == 1 and count(rt, Action) == 2 and count(rt, ReceivedTrigger) == 0


def test_the_idempotency_key_header_dedupes_received_triggers(api: Api, rt: Runtime) -> None:
    review = {
        "type": "review.submitted",
        "customer": {"email": "ada@example.com"},
        "review": {"rating": 5, "title": "Lovely"},
    }
    one = receive(api, review, **{"Idempotency-Key": "r-1"})
    two = receive(api, review, **{"Idempotency-Key": "r-1"})
    three = receive(api, review, **{"Idempotency-Key": "r-2"})
    assert (one.status_code, two.status_code, three.status_code) == (202, 200, 202)
    assert fold(rt) == 2
    with rt.db.session() as session:
        keys = session.scalars(select(Trigger.dedupe_key).order_by(Trigger.id)).all()
    assert len(keys) == 2 and len(set(keys)) == 2
    assert receive(api, review, **{"Idempotency-Key": "r-2"}).json["duplicate"] is True


def test_bad_input_is_refused_as_before_and_nothing_is_received(api: Api, rt: Runtime) -> None:
    bad = receive(api, {"type": "order.fulfilled", "customer": {"email": "not an email"}})
    assert bad.status_code == 422 and "customer.email" in bad.json["error"]["fields"]
    assert receive(api, order_trigger(), **{"Idempotency-Key": " "}).status_code == 400
    assert count(rt, ReceivedTrigger) == 0


def test_a_trigger_without_a_time_happened_when_it_was_received(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    trigger = order_trigger()
    del trigger["occurred_at"]
    answer = receive(api, trigger).json
    with rt.db.transaction() as session:
        session.execute(
            update(ReceivedTrigger).values(received_at=func.now() - func.make_interval(0, 0, 0, 0, 2))
        )  # two hours
    fold(rt)
    with rt.db.session() as session:
        trigger_row = session.get(Trigger, answer["id"])
        assert trigger_row is not None
        received_ago = session.scalar(select(func.now() - Trigger.occurred_at).where(Trigger.id == answer["id"]))
    assert received_ago is not None and received_ago.total_seconds() >= 7200  # two hours ago, not now


def test_order_and_stores_are_kept_and_a_deleted_stores_triggers_are_dropped(api: Api, rt: Runtime, app: Flask) -> None:
    connect_two_apps(api)
    other = Api(app.test_client(), make_tenant(rt, "Other"))
    connect_two_apps(other)
    gone = Api(app.test_client(), make_tenant(rt, "Gone"))
    receive(api, order_trigger("1"))
    receive(other, order_trigger("2"))
    receive(gone, order_trigger("3"))
    receive(api, order_trigger("1", type="order.cancelled"))
    with rt.db.transaction() as session:
        session.delete(session.get(Store, gone.tenant.store.id))
    assert fold(rt) == 4
    with rt.db.session() as session:
        rows = session.execute(select(Trigger.store_id, Trigger.order_id, Trigger.type).order_by(Trigger.id)).all()
        states = session.execute(select(Action.store_id, Action.state).order_by(Action.id)).all()
    store, other_store = api.tenant.store.id, other.tenant.store.id
    assert [tuple(r) for r in rows] == [
        (store, "1", "order.fulfilled"),
        (other_store, "2", "order.fulfilled"),
        (store, "1", "order.cancelled"),
    ]
    # The order stopper was in the same batch: the review requests of its order are not left to go out.
    assert sorted((s, str(state)) for s, state in states) == [
        (store, "skipped"),
        (store, "skipped"),
        (other_store, "pending"),
        (other_store, "pending"),
    ]
    assert count(rt, ReceivedTrigger) == 0


def test_a_trigger_that_cannot_be_processed_is_kept_with_its_error_and_the_rest_go_ahead(
    api: Api, rt: Runtime, app: Flask
) -> None:
    connect_two_apps(api)
    other = Api(app.test_client(), make_tenant(rt, "Other"))
    broken = receive(api, order_trigger("1")).json
    fine = receive(other, order_trigger("2")).json
    set_body(rt, broken["id"], '{"type": "order.fulfilled", "customer": {"email": "nope"}}')
    assert fold(rt) == 2
    assert api.get(f"/api/v1/triggers/{fine['id']}").status_code == 404  # another store's
    assert other.get(f"/api/v1/triggers/{fine['id']}").json["status"] == "processed"
    failed = api.get(f"/api/v1/triggers/{broken['id']}").json
    assert failed["status"] == "failed" and "customer" in failed["error"]
    assert fold(rt) == 0  # not taken again
    with rt.db.session() as session:
        assert inbox.backlog(session) == (0, 1)


def test_an_unknown_trigger_id_is_a_404(api: Api) -> None:
    assert api.get("/api/v1/triggers/12345").status_code == 404
    assert api.get(f"/api/v1/triggers/{2**63}").status_code == 404


def test_two_folders_never_fold_at_once(api: Api, rt: Runtime) -> None:
    receive(api, order_trigger("1"))
    with rt.db.session() as holder:
        assert holder.scalar(select(func.pg_try_advisory_xact_lock(inbox.FOLD_LOCK)))
        assert fold(rt) == 0  # another folder holds the lock
        holder.rollback()
    assert fold(rt) == 1


def test_the_dispatcher_processes_what_was_received(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    answer = receive(api, order_trigger()).json
    stop = threading.Event()
    runner = threading.Thread(target=dispatch.run, args=(rt, stop))
    runner.start()
    try:
        for _ in range(200):
            if api.get(f"/api/v1/triggers/{answer['id']}").json["status"] == "processed":
                break
            stop.wait(0.05)
    finally:
        stop.set()
        runner.join()
    shown = api.get(f"/api/v1/triggers/{answer['id']}").json
    assert shown["status"] == "processed" and len(shown["actions"]) == 2


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        ("respond-async", True),
        ("Respond-Async", True),
        ("return=minimal, respond-async; wait=10", True),
        ("respond-async-later", False),
        ("return=representation", False),
        ("", False),
        (None, False),
    ],
)
def test_only_the_respond_async_preference_asks_for_it(header: str | None, wanted: bool) -> None:
    assert prefers_async(header) is wanted


def test_the_cli_lists_what_failed_with_why_and_lets_it_be_tried_again(api: Api, rt: Runtime) -> None:
    connect_two_apps(api)
    store = str(api.tenant.store.id)
    hub = Hub(rt)
    broken = receive(api, order_trigger("1")).json
    receive(api, order_trigger("2"))
    set_body(rt, broken["id"], '{"type": 1}')
    once = hub("dispatch", "--once")
    assert once.exit_code == 0 and "processed 2 received triggers" in once.output
    listed = hub("triggers", "received", "--store", store)
    assert listed.exit_code == 0 and "waiting 0, failed 1" in listed.output
    assert f"trigger {broken['id']} (store {store})" in listed.output and "type" in listed.output

    mended = {"type": "order.fulfilled", "customer": {"email": "ada@example.com"}, "order": {"id": "1"}}
    set_body(rt, broken["id"], json.dumps(mended))  # as a fixed release would read it
    retried = hub("triggers", "received", "--retry")
    assert retried.exit_code == 0 and "1 failed received triggers will be processed again" in retried.output
    assert fold(rt) == 1
    assert api.get(f"/api/v1/triggers/{broken['id']}").json["status"] == "processed"
    assert "waiting 0, failed 0" in hub("triggers", "received").output
    unknown = hub("triggers", "received", "--store", "999999")
    assert unknown.exit_code == 1 and "no store 999999" in unknown.output


def test_triggers_received_at_once_from_many_threads_each_get_their_own_id_or_are_a_duplicate(
    rt: Runtime, api: Api
) -> None:
    receiver = inbox.Receiver(rt.db)
    store = api.tenant.store.id
    start = threading.Barrier(12)
    answers: dict[int, int | None] = {}

    def send(n: int) -> None:
        start.wait()
        key = f"key-{n % 8}"  # threads 8 to 11 repeat the keys of 0 to 3
        body = json.dumps(order_trigger(str(n % 8)))
        answers[n] = receiver.receive(store, key, None, body)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [answer for answer in answers.values() if answer is not None]
    assert len(ids) == 8 and len(set(ids)) == 8  # one per key, whichever of its two threads came first
    for n in range(4):
        assert (answers[n] is None) != (answers[n + 8] is None)
    with rt.db.session() as session:
        stored = session.execute(select(ReceivedTrigger.trigger_id, ReceivedTrigger.dedupe_key)).all()
    assert sorted(trigger_id for trigger_id, _ in stored) == sorted(ids)


def test_a_write_that_fails_fails_its_requests_and_the_next_ones_are_written(rt: Runtime, api: Api) -> None:
    receiver = inbox.Receiver(rt.db)
    store = api.tenant.store.id
    with pytest.raises(inbox.ReceiveError) as failed:  # PostgreSQL's text cannot hold NUL
        receiver.receive(store, "nul", None, '{"type": "order.fulfilled\x00"}')
    assert isinstance(failed.value.__cause__, psycopg.errors.DataError)
    assert receiver.receive(store, "next", None, json.dumps(order_trigger())) is not None
    assert count(rt, ReceivedTrigger) == 1


def test_the_api_lists_a_stores_failed_received_triggers_and_lets_them_be_tried_again(
    api: Api, rt: Runtime, app: Flask
) -> None:
    connect_two_apps(api)
    other = Api(app.test_client(), make_tenant(rt, "Other"))
    broken = receive(api, order_trigger("1")).json
    receive(api, order_trigger("2"))
    receive(other, order_trigger("3"))
    set_body(rt, broken["id"], '{"type": 1}')
    assert api.get("/api/v1/triggers/received").json == {"waiting": 2, "failed": 0, "failed_triggers": []}
    fold(rt)
    listed = api.get("/api/v1/triggers/received").json
    assert listed["waiting"] == 0 and listed["failed"] == 1
    [failed] = listed["failed_triggers"]
    assert failed["trigger_id"] == broken["id"] and "type" in failed["error"] and "store_id" not in failed
    assert other.get("/api/v1/triggers/received").json["failed"] == 0  # each store sees its own

    assert other.post("/api/v1/triggers/received/retry").json == {"retried": 0}
    assert api.post("/api/v1/triggers/received/retry").json == {"retried": 1}
    assert api.get("/api/v1/triggers/received").json == {"waiting": 1, "failed": 0, "failed_triggers": []}
    audit = api.get("/api/v1/audit").json
    assert any(entry["operation"] == "retry_received" for entry in audit["data"])
