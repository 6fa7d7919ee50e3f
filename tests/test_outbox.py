"""Steering the outbox: the Queue and Incomplete views, the shared filter, and operations on one action."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from sqlalchemy import event, select, update

from hub import outbox
from hub.api.actions import event_status
from hub.api.outbox import row as outbox_row
from hub.dispatch import MIN_PAUSE, pause
from hub.models import Action, Flow
from hub.runtime import Runtime
from schemas.actions import ActionPage, EventPage
from schemas.outbox import IncompletePage, QueuePage
from tests.conftest import Api, make_tenant, run_worker
from tests.test_delivery import HOOK_URL, connect_webhook, deliver_round

NOW = datetime.now(UTC)


def order(order_id: str = "1001", email: str = "ada@example.com", **overrides: Any) -> dict[str, Any]:
    trigger = {
        "type": "order.fulfilled",
        "customer": {"email": email, "first_name": "Ada"},
        "order": {"id": order_id, "items": [{"product_id": "p-1", "name": "Linen Shirt"}]},
    }
    trigger.update(overrides)
    return trigger


def review(review_id: str = "r-1", email: str = "ada@example.com", product_id: str = "p-1") -> dict[str, Any]:
    return {
        "type": "review.submitted",
        "customer": {"email": email},
        "review": {"id": review_id, "product_id": product_id, "rating": 5},
    }


def sandbox(api: Api) -> None:
    assert api.post("/api/v1/integrations", json={"app": "sandbox"}).status_code == 201


def pending_action(api: Api, order_id: str = "1001", email: str = "ada@example.com") -> dict[str, Any]:
    created = api.post("/api/v1/triggers", json=order(order_id, email))
    assert created.status_code == 202, created.json
    [action] = created.json["actions"]
    return action  # type: ignore[no-any-return]


def set_state(rt: Runtime, action_id: int, **values: Any) -> None:
    with rt.db.transaction() as session:
        session.execute(update(Action).where(Action.id == action_id).values(**values))


def assert_conflict(answer: Any, state: str) -> None:
    assert answer.status_code == 409, answer.json
    assert answer.json["error"]["current_state"] == state
    assert state in answer.json["error"]["message"]


# -- views -----------------------------------------------------------------------------------------


def test_the_queue_shows_pending_and_held_actions_soonest_first_with_flow_recipient_and_schedule(
    api: Api, rt: Runtime
) -> None:
    sandbox(api)
    later = pending_action(api, "1001", "ada@example.com")
    sooner = api.post("/api/v1/triggers", json=review()).json["actions"][0]
    cancelled = pending_action(api, "1002", "bob@example.com")
    api.post(f"/api/v1/actions/{cancelled['id']}/cancel", json={})
    set_state(rt, later["id"], state="held", reason_code="integration_paused", reason_text="sandbox is paused")

    rows = api.get("/api/v1/queue").json["data"]
    assert [r["id"] for r in rows] == [sooner["id"], later["id"]]
    held = rows[1]
    assert held["state"] == "held" and held["reason_code"] == "integration_paused"
    assert held["flow"] == "Post-purchase review request" and held["event_name"] == "Acme - Review Request"
    assert held["target"] == {"email": "ada@example.com"} and held["app"] == "sandbox" and held["order_id"] == "1001"
    assert datetime.fromisoformat(held["run_at"]) > NOW + timedelta(days=13)


def test_queue_pages_are_stable_while_new_actions_arrive(api: Api) -> None:
    sandbox(api)
    ids = [pending_action(api, str(n), f"c{n}@example.com")["id"] for n in range(5)]
    first = api.get("/api/v1/queue", query_string={"limit": 2}).json
    assert [r["id"] for r in first["data"]] == ids[:2]
    pending_action(api, "99", "late@example.com")  # arrives between pages, due last
    second = api.get("/api/v1/queue", query_string={"limit": 2, "cursor": first["next_cursor"]}).json
    assert [r["id"] for r in second["data"]] == ids[2:4]


def test_the_queue_and_incomplete_pages_are_exactly_what_their_schemas_dump_of_the_same_actions(
    api: Api, rt: Runtime
) -> None:
    # The pages are built from plain rows, without ORM objects or marshmallow: they must be what the documented
    # schemas dump of the actions themselves (hub.api.outbox.row, with each flow's name), page after page.
    sandbox(api)
    waiting = [pending_action(api, str(n), f"c{n}@example.com")["id"] for n in range(5)]
    set_state(rt, waiting[1], state="held", reason_code="integration_paused", reason_text="sandbox is paused")
    api.post(f"/api/v1/actions/{waiting[2]}/cancel", json={"reason": "customer asked"})
    set_state(rt, waiting[3], state="failed", reason_code="rejected", reason_text="HTTP 400", caused_by="system")
    set_state(rt, waiting[4], flow_id=None)  # an action whose flow was deleted shows no flow

    def expected(schema: Any, ids: list[int], next_cursor: str | None) -> dict[str, Any]:
        with rt.db.session() as session:
            actions = {a.id: a for a in session.scalars(select(Action).where(Action.id.in_(ids)))}
            flows = dict(session.execute(select(Flow.id, Flow.name)).all())
            return schema.dump({"data": [outbox_row(actions[i], flows) for i in ids], "next_cursor": next_cursor})

    for path, schema in (("/api/v1/queue", QueuePage()), ("/api/v1/incomplete", IncompletePage())):
        pages, cursor = [], None
        while True:
            answer = api.get(path, query_string={"limit": 1, **({"cursor": cursor} if cursor else {})})
            assert answer.status_code == 200, answer.json
            pages.append(answer.json)
            cursor = answer.json["next_cursor"]
            if not cursor:
                break
        for page in pages:
            assert page == expected(schema, [r["id"] for r in page["data"]], page["next_cursor"])
        shown = [r["id"] for page in pages for r in page["data"]]
        if path == "/api/v1/queue":
            assert sorted(shown) == [waiting[0], waiting[1], waiting[4]]
            assert any(r["flow"] is None and r["flow_id"] is None for page in pages for r in page["data"])
        else:
            assert shown == [waiting[3], waiting[2]]  # newest first


def test_free_text_search_reads_the_recipients_values_and_not_the_names_of_its_fields(api: Api) -> None:
    sandbox(api)
    ada = pending_action(api, "A-1", "ada@example.com")
    texted = order("B-2")
    texted["customer"] = {"phone": "+14155550123", "external_id": "cust-778"}
    by_phone = api.post("/api/v1/triggers", json=texted)
    assert by_phone.status_code == 202, by_phone.json
    phone_action = by_phone.json["actions"][0]["id"]

    def ids(q: str) -> set[int]:
        answer = api.get("/api/v1/actions", query_string={"q": q})
        assert answer.status_code == 200, answer.json
        return {r["id"] for r in answer.json["data"]}

    assert ids("5550123") == {phone_action}  # part of a phone
    assert ids("CUST-77") == {phone_action}  # part of an external id, any case
    assert ids("ada@") == {ada["id"]}
    # The names of the recipient's fields and JSON's punctuation are not what anyone searches for.
    for q in ("email", "phone", "external_id", '"', "{", ":"):
        assert ids(q) == set(), q


def test_incomplete_shows_cancelled_skipped_and_failed_with_reason_and_who_caused_it(api: Api, rt: Runtime) -> None:
    sandbox(api)
    cancelled = pending_action(api, "1")
    failed = pending_action(api, "2", "bob@example.com")
    pending_action(api, "3", "cy@example.com")
    api.post(f"/api/v1/actions/{cancelled['id']}/cancel", json={"reason": "customer asked"})
    set_state(rt, failed["id"], state="failed", reason_code="rejected", reason_text="HTTP 400", caused_by="system")

    rows = {r["id"]: r for r in api.get("/api/v1/incomplete").json["data"]}
    assert set(rows) == {cancelled["id"], failed["id"]}
    assert (rows[cancelled["id"]]["reason_text"], rows[cancelled["id"]]["caused_by"]) == ("customer asked", "merchant")
    assert rows[failed["id"]]["caused_by"] == "system"
    only = api.get("/api/v1/incomplete", query_string={"caused_by": "merchant"}).json["data"]
    assert [r["id"] for r in only] == [cancelled["id"]]


def test_the_shared_filter_searches_recipient_order_and_event_and_narrows_by_trigger_and_date(api: Api) -> None:
    sandbox(api)
    ada = pending_action(api, "A-17", "ada@example.com")
    bob = pending_action(api, "B-22", "bob@example.com")
    rev = api.post("/api/v1/triggers", json=review(email="cy@example.com")).json["actions"][0]

    def ids(**query: Any) -> set[int]:
        answer = api.get("/api/v1/actions", query_string=query)
        assert answer.status_code == 200, answer.json
        return {r["id"] for r in answer.json["data"]}

    assert ids(q="ADA@") == {ada["id"]}
    assert ids(q="b-2") == {bob["id"]}
    assert ids(q="review submitted") == {rev["id"]}
    assert ids(q="100%_") == set()
    assert ids(trigger_type="review.submitted") == {rev["id"]}
    assert ids(state="pending,held") == {ada["id"], bob["id"], rev["id"]}
    assert ids(order_id="A-17", app="sandbox", kind="event") == {ada["id"]}
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert ids(**{"from": tomorrow}) == set()
    assert ids(**{"from": tomorrow, "date_by": "scheduled"}) == {ada["id"], bob["id"]}
    assert ids(flow=ada["flow_id"]) == {ada["id"], bob["id"]}


def test_a_list_made_for_one_stores_request_shows_another_store_only_its_own_actions(api: Api, rt: Runtime) -> None:
    # The lists keep one statement per shape of request (hub.api.actions.shaped): the store is one of its values.
    sandbox(api)
    ours = pending_action(api, "A-1")
    other = Api(api.client, make_tenant(rt, "Other"))
    sandbox(other)
    theirs = pending_action(other, "B-1")
    for action in (ours, theirs):
        set_state(rt, action["id"], state="failed", attempt_count=1)  # tried: in Sent → Events too
    for path in ("/api/v1/actions", "/api/v1/events"):
        for caller, expected in ((api, ours), (other, theirs), (api, ours)):
            rows = caller.get(path, query_string={"app": "sandbox", "limit": 5}).json["data"]
            assert [r["id"] for r in rows] == [expected["id"]], path
    assert [r["id"] for r in other.get("/api/v1/actions", query_string={"order_id": "A-1"}).json["data"]] == []


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/v1/queue", {"state": "delivered"}, "state"),
        ("/api/v1/incomplete", {"state": "pending"}, "state"),
        ("/api/v1/actions", {"state": "pending,lost"}, "state"),
        ("/api/v1/actions", {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ("/api/v1/actions", {"from": "last week"}, "from"),
        ("/api/v1/actions", {"flow": "abc"}, "flow"),
        ("/api/v1/actions", {"date_by": "birthday"}, "date_by"),
        ("/api/v1/actions", {"trigger_type": "order.shipped"}, "trigger_type"),
        ("/api/v1/queue", {"cursor": "nonsense"}, "cursor"),
        ("/api/v1/incomplete", {"caused_by": "ghosts"}, "caused_by"),
        ("/api/v1/audit", {"limit": "0"}, "limit"),
    ],
)
def test_invalid_filters_on_the_outbox_views_are_422s(api: Api, path: str, query: dict[str, str], field: str) -> None:
    answer = api.get(path, query_string=query)
    assert answer.status_code == 422, answer.json
    assert field in answer.json["error"]["fields"]


# -- operations on one action ----------------------------------------------------------------------


def test_cancel_takes_a_pending_action_out_of_the_queue_with_a_reason_and_records_who(api: Api, rt: Runtime) -> None:
    sandbox(api)
    action = pending_action(api)
    answer = api.post(f"/api/v1/actions/{action['id']}/cancel", json={"reason": "order lost in transit"})
    assert answer.status_code == 200, answer.json
    assert (answer.json["state"], answer.json["reason_text"], answer.json["caused_by"]) == (
        "cancelled",
        "order lost in transit",
        "merchant",
    )
    [entry] = api.get(f"/api/v1/actions/{action['id']}/audit").json["data"]
    assert entry["operation"] == "cancel" and entry["actor"].endswith("(tests)") and entry["actor"].startswith("token")
    assert entry["details"] == {"reason": "order lost in transit"}
    assert api.get("/api/v1/audit").json["data"][0]["action_id"] == action["id"]


def test_cancel_needs_no_body(api: Api) -> None:
    sandbox(api)
    action = pending_action(api)
    answer = api.post(f"/api/v1/actions/{action['id']}/cancel")
    assert answer.status_code == 200 and answer.json["reason_text"] == "cancelled by the merchant"


@pytest.mark.parametrize("state", ["queued", "sending", "delivered", "failed", "skipped"])
def test_an_action_that_left_the_queue_cannot_be_cancelled_delayed_or_sent_now(
    api: Api, rt: Runtime, state: str
) -> None:
    sandbox(api)
    action = pending_action(api)
    set_state(rt, action["id"], state=state)
    for operation, body in (("cancel", {}), ("delay", {"days": 1}), ("send-now", None)):
        answer = api.post(f"/api/v1/actions/{action['id']}/{operation}", json=body)
        assert_conflict(answer, state)
    assert api.get(f"/api/v1/actions/{action['id']}").json["state"] == state
    assert api.get(f"/api/v1/actions/{action['id']}/audit").json["data"] == []


@pytest.mark.parametrize("operation", ["cancel", "delay", "send-now", "restore", "replay", "audit", "explain"])
def test_another_stores_action_and_unknown_ids_are_404s(api: Api, rt: Runtime, operation: str) -> None:
    sandbox(api)
    theirs = pending_action(api)
    other = Api(api.client, make_tenant(rt, "Other"))
    method = "get" if operation in ("audit", "explain") else "post"
    body = {"days": 1} if operation == "delay" else {}
    for action_id in (theirs["id"], 999999, 2**70):
        answer = getattr(other, method)(f"/api/v1/actions/{action_id}/{operation}", json=body)
        assert answer.status_code == 404, (operation, answer.json)
        assert answer.json["error"]["code"] == "not_found"
    assert api.get(f"/api/v1/actions/{theirs['id']}").json["state"] == "pending"


def test_delay_moves_an_action_by_days_or_to_a_time(api: Api) -> None:
    sandbox(api)
    action = pending_action(api)
    before = datetime.fromisoformat(action["run_at"])
    moved = api.post(f"/api/v1/actions/{action['id']}/delay", json={"days": 3}).json
    assert datetime.fromisoformat(moved["run_at"]) == before + timedelta(days=3)
    assert moved["reason_code"] == "delayed" and moved["state"] == "pending"
    until = (datetime.now(UTC) + timedelta(hours=5)).replace(microsecond=0)
    moved = api.post(f"/api/v1/actions/{action['id']}/delay", json={"until": until.isoformat()}).json
    assert datetime.fromisoformat(moved["run_at"]) == until
    assert [e["operation"] for e in api.get(f"/api/v1/actions/{action['id']}/audit").json["data"]] == ["delay"] * 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "_body"),
        ({"days": 1, "until": "2030-01-01T00:00:00Z"}, "_body"),
        ({"days": 0}, "days"),
        ({"days": "soon"}, "days"),
        ({"until": "2001-01-01T00:00:00Z"}, "until"),
    ],
)
def test_a_bad_delay_is_a_422_and_changes_nothing(api: Api, body: dict[str, Any], field: str) -> None:
    sandbox(api)
    action = pending_action(api)
    answer = api.post(f"/api/v1/actions/{action['id']}/delay", json=body)
    assert answer.status_code == 422, answer.json
    assert field in answer.json["error"]["fields"]
    assert api.get(f"/api/v1/actions/{action['id']}").json["run_at"] == action["run_at"]


def test_restore_puts_a_cancelled_action_back_while_its_time_has_not_passed(api: Api, rt: Runtime) -> None:
    sandbox(api)
    action = pending_action(api)
    api.post(f"/api/v1/actions/{action['id']}/cancel", json={})
    restored = api.post(f"/api/v1/actions/{action['id']}/restore")
    assert restored.status_code == 200, restored.json
    assert (restored.json["state"], restored.json["reason_code"], restored.json["caused_by"]) == ("pending", None, None)
    assert_conflict(api.post(f"/api/v1/actions/{action['id']}/restore"), "pending")

    api.post(f"/api/v1/actions/{action['id']}/cancel", json={})
    set_state(rt, action["id"], run_at=datetime.now(UTC) - timedelta(minutes=1))
    late = api.post(f"/api/v1/actions/{action['id']}/restore")
    assert_conflict(late, "cancelled")
    assert "time has passed" in late.json["error"]["message"]


def test_restoring_into_a_paused_app_holds_the_action(api: Api) -> None:
    sandbox(api)
    action = pending_action(api)
    api.post(f"/api/v1/actions/{action['id']}/cancel", json={})
    api.patch("/api/v1/integrations/sandbox", json={"state": "paused"})
    restored = api.post(f"/api/v1/actions/{action['id']}/restore").json
    assert (restored["state"], restored["reason_code"]) == ("held", "integration_paused")


def test_send_now_delivers_a_pending_action_without_waiting_for_its_time(
    api: Api, rt: Runtime, live_server: str
) -> None:
    sandbox(api)
    action = pending_action(api)
    answer = api.post(f"/api/v1/actions/{action['id']}/send-now")
    assert answer.status_code == 202 and answer.json["state"] == "sending"
    run_worker(rt)  # no dispatcher round: it went to the front of the queue
    assert api.get(f"/api/v1/actions/{action['id']}").json["state"] == "delivered"
    assert [e["operation"] for e in api.get(f"/api/v1/actions/{action['id']}/audit").json["data"]] == ["send_now"]


@responses.activate
def test_replay_sends_a_failed_event_again_with_the_same_idempotency_key(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=400, json={"error": "nope"})
    responses.post(HOOK_URL, status=202)
    action = api.post("/api/v1/triggers", json=review()).json["actions"][0]
    deliver_round(rt)
    assert api.get(f"/api/v1/actions/{action['id']}").json["state"] == "failed"

    replayed = api.post(f"/api/v1/actions/{action['id']}/replay", json={})
    assert replayed.status_code == 202 and replayed.json["id"] == action["id"]
    run_worker(rt)
    detail = api.get(f"/api/v1/actions/{action['id']}").json
    assert detail["state"] == "delivered"
    assert [a["http_status"] for a in detail["attempt_log"]] == [400, 202]
    keys = {call.request.headers["webhook-id"] for call in responses.calls}
    assert keys == {detail["idempotency_key"]}


@responses.activate
def test_replay_with_a_new_key_sends_a_new_action_and_keeps_the_original(api: Api, rt: Runtime) -> None:
    connect_webhook(api)
    responses.post(HOOK_URL, status=202)
    action = api.post("/api/v1/triggers", json=review()).json["actions"][0]
    deliver_round(rt)
    replayed = api.post(f"/api/v1/actions/{action['id']}/replay", json={"new_key": True})
    assert replayed.status_code == 202, replayed.json
    copy = replayed.json
    assert copy["id"] != action["id"] and copy["trigger"] == "replay"
    assert copy["idempotency_key"] != action["idempotency_key"]
    run_worker(rt)
    assert api.get(f"/api/v1/actions/{copy['id']}").json["state"] == "delivered"
    assert [c.request.headers["webhook-id"] for c in responses.calls] == [
        action["idempotency_key"],
        copy["idempotency_key"],
    ]
    [entry] = api.get(f"/api/v1/actions/{action['id']}/audit").json["data"]
    assert entry["details"]["new_action_ids"] == [copy["id"]]


def test_a_pending_action_cannot_be_replayed_or_restored(api: Api) -> None:
    sandbox(api)
    action = pending_action(api)
    assert_conflict(api.post(f"/api/v1/actions/{action['id']}/replay", json={}), "pending")
    assert_conflict(api.post(f"/api/v1/actions/{action['id']}/restore"), "pending")


def test_a_bad_replay_body_is_a_422(api: Api, rt: Runtime) -> None:
    sandbox(api)
    action = pending_action(api)
    answer = api.post(f"/api/v1/actions/{action['id']}/replay", json={"new_key": "maybe"})
    assert answer.status_code == 422 and "new_key" in answer.json["error"]["fields"]
    with rt.db.session() as session:
        assert session.scalars(select(Action.state)).all() == ["pending"]


def first_refused_then_accepted(api: Api, rt: Runtime, count: int) -> list[int]:
    """``count`` webhook actions, none due; the first made due and delivered into a 503 (retried later). Every call
    after that one gets a 202."""
    connect_webhook(api)
    responses.add(responses.POST, HOOK_URL, status=503)
    responses.add(responses.POST, HOOK_URL, status=202)  # and every call after it
    ids = [pending_action(api, f"o{n}", f"c{n}@example.com")["id"] for n in range(count)]
    with rt.db.transaction() as session:
        session.execute(update(Action).values(run_at=NOW + timedelta(days=1)))  # none due but the one made so
    set_state(rt, ids[0], run_at=datetime.now(UTC))
    deliver_round(rt)
    return ids


@responses.activate
def test_sent_events_filtered_by_retrying_show_only_actions_waiting_for_another_try(api: Api, rt: Runtime) -> None:
    ids = first_refused_then_accepted(api, rt, 3)  # ids[0]: a 503, retried later
    set_state(rt, ids[1], run_at=datetime.now(UTC))
    deliver_round(rt)  # ids[1]: delivered; ids[2] never tried

    retrying = api.get("/api/v1/events?status=retrying").json["data"]
    delivered = api.get("/api/v1/events?status=delivered").json["data"]

    assert [(r["id"], r["status"]) for r in retrying] == [(ids[0], "retrying")]
    assert [(r["id"], r["status"]) for r in delivered] == [(ids[1], "delivered")]


@responses.activate
def test_sent_events_rows_show_the_last_attempts_latency_and_status_read_in_one_query(api: Api, rt: Runtime) -> None:
    ids = first_refused_then_accepted(api, rt, 4)  # ids[0]: a 503, retried later
    retrying = api.get("/api/v1/events").json
    assert [(r["status"], r["last_status"]) for r in retrying["data"]] == [("retrying", 503)]
    assert retrying["data"][0]["next_attempt_at"] is not None
    # The page is built without marshmallow: it must be exactly what the documented schema would dump.
    assert EventPage().dump(EventPage().load(retrying)) == retrying
    with rt.db.transaction() as session:
        session.execute(update(Action).where(Action.id.in_(ids[:3])).values(run_at=datetime.now(UTC)))
    deliver_round(rt)  # ids[3] was never tried: not in Sent

    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(rt.db.engine, "before_cursor_execute", seen)
    try:
        answer = api.get("/api/v1/events", query_string={"limit": 2}).json
        rows = answer["data"] + api.get("/api/v1/events", query_string={"cursor": answer["next_cursor"]}).json["data"]
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", seen)
    assert [r["id"] for r in rows] == ids[2::-1]
    for row in rows:
        last = row["last_attempt"]
        assert (row["status"], row["trigger"], last["http_status"], last["outcome"]) == (
            "delivered",
            "auto",
            202,
            "delivered",
        )
        assert last["duration_ms"] >= 0 and last["at"]
    detail = api.get(f"/api/v1/actions/{ids[0]}").json["attempt_log"]
    assert [a["http_status"] for a in detail] == [503, 202]  # the row showed the last of the two
    assert len([s for s in statements if "FROM attempts" in s]) == 2  # one per page
    assert EventPage().dump(EventPage().load(answer)) == answer


@pytest.mark.parametrize(
    ("state", "attempts", "shown"),
    [
        ("pending", 0, "pending"),
        ("sending", 0, "sending"),
        ("pending", 1, "retrying"),
        ("sending", 2, "retrying"),  # claimed again by the dispatcher for its next try
        ("delivered", 2, "delivered"),
        ("failed", 8, "failed"),
    ],
)
def test_the_events_view_shows_an_action_tried_before_and_waiting_or_in_flight_again_as_retrying(
    state: str, attempts: int, shown: str
) -> None:
    assert event_status(state, attempts) == shown


def test_an_idle_dispatcher_waits_until_the_next_action_comes_due_and_never_longer_than_its_interval(
    api: Api, rt: Runtime
) -> None:
    assert pause(rt) == rt.config.dispatch_interval  # nothing pending

    sandbox(api)
    action = pending_action(api)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    set_state(rt, action["id"], run_at=soon)
    rt.config = replace(rt.config, dispatch_interval=60.0)
    assert 0 < pause(rt) <= 2
    assert abs(outbox.now() + timedelta(seconds=pause(rt)) - soon) < timedelta(seconds=1)

    set_state(rt, action["id"], run_at=datetime.now(UTC) + timedelta(hours=1))
    assert pause(rt) == 60.0  # later than the interval: the next round comes first

    set_state(rt, action["id"], run_at=datetime.now(UTC) - timedelta(seconds=5))
    assert pause(rt) == MIN_PAUSE  # due already (another dispatcher holds it): look again at once


def test_the_actions_list_is_exactly_what_its_schema_dumps_of_the_same_actions(api: Api, rt: Runtime) -> None:
    sandbox(api)
    cancelled = pending_action(api, "1")
    failed = pending_action(api, "2", "bob@example.com")
    delivered = pending_action(api, "3", "cy@example.com")
    pending_action(api, "4", "di@example.com")
    api.post(f"/api/v1/actions/{cancelled['id']}/cancel", json={"reason": "customer asked"})
    set_state(rt, failed["id"], state="failed", reason_code="rejected", reason_text="HTTP 400", caused_by="system")
    set_state(rt, delivered["id"], state="delivered", delivered_at=datetime.now(UTC), last_status=202, attempt_count=1)

    answer = api.get("/api/v1/actions", query_string={"limit": 3})
    rest = api.get("/api/v1/actions", query_string={"limit": 3, "cursor": answer.json["next_cursor"]})

    with rt.db.session() as session:
        actions = session.scalars(select(Action).order_by(Action.id.desc())).all()
        expected = ActionPage().dump({"data": actions[:3], "next_cursor": answer.json["next_cursor"]})
        assert answer.json == expected
        assert rest.json == ActionPage().dump({"data": actions[3:], "next_cursor": None})
    assert {row["state"] for row in answer.json["data"] + rest.json["data"]} == {
        "pending",
        "cancelled",
        "failed",
        "delivered",
    }
