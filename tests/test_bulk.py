"""Bulk operations: ids, filters and uploaded lists; dry runs; background jobs; undo; racing the dispatcher."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from hub import bulk
from hub.dispatch import dispatch_once, housekeeping
from hub.models import Action, ActionCount, Attempt, BulkOperation
from hub.runtime import Runtime
from tests.conftest import Api, make_tenant, run_worker
from tests.test_delivery import make_due
from tests.test_outbox import pending_action, review, sandbox, set_state


def many(api: Api, count: int, prefix: str = "o") -> list[int]:
    return [pending_action(api, f"{prefix}{n}", f"{prefix}{n}@example.com")["id"] for n in range(count)]


def state_of(api: Api, action_id: int) -> str:
    return api.get(f"/api/v1/actions/{action_id}").json["state"]  # type: ignore[no-any-return]


def test_a_dry_run_counts_samples_and_breaks_down_by_app_and_changes_nothing(api: Api, rt: Runtime) -> None:
    sandbox(api)
    ids = many(api, 3)
    set_state(rt, ids[0], state="delivered")
    answer = api.post("/api/v1/bulk-operations", json={"operation": "cancel", "ids": ids, "dry_run": True})
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert (body["dry_run"], body["state"], body["total"], body["id"]) == (True, "dry_run", 2, None)
    assert body["by_app"] == {"sandbox": 2} and body["not_applicable"] == {"delivered": 1}
    assert [r["id"] for r in body["sample"]] == ids[1:]
    assert [state_of(api, i) for i in ids] == ["delivered", "pending", "pending"]
    assert api.get("/api/v1/audit").json["data"] == []


def test_a_bulk_cancel_by_ids_cancels_what_it_can_and_records_each_action(api: Api, rt: Runtime) -> None:
    sandbox(api)
    ids = many(api, 3)
    set_state(rt, ids[2], state="queued")
    answer = api.post("/api/v1/bulk-operations", json={"operation": "cancel", "ids": ids, "reason": "recall"})
    assert answer.status_code == 200, answer.json
    assert (answer.json["state"], answer.json["total"], answer.json["changed"]) == ("done", 2, 2)
    assert answer.json["undo_until"] is not None
    assert [state_of(api, i) for i in ids] == ["cancelled", "cancelled", "queued"]
    entries = api.get(f"/api/v1/actions/{ids[0]}/audit").json["data"]
    assert [(e["operation"], e["bulk_operation_id"], e["details"]) for e in entries] == [
        ("cancel", answer.json["id"], {"reason": "recall"})
    ]
    summary = api.get("/api/v1/audit", query_string={"operation": "bulk_cancel"}).json["data"]
    assert summary[0]["details"] == {"reason": "recall", "total": 2}
    assert summary[0]["action_id"] is None


def test_a_bulk_operation_over_a_filter_takes_exactly_what_matches(api: Api) -> None:
    sandbox(api)
    ada = pending_action(api, "1", "ada@example.com")
    bob = pending_action(api, "2", "bob@example.com")
    rev = api.post("/api/v1/triggers", json=review(email="cy@example.com")).json["actions"][0]
    until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    body = {"operation": "delay", "filter": {"trigger_type": "order.fulfilled", "q": "bob"}, "until": until.isoformat()}
    answer = api.post("/api/v1/bulk-operations", json=body)
    assert answer.status_code == 200 and answer.json["changed"] == 1, answer.json
    assert datetime.fromisoformat(api.get(f"/api/v1/actions/{bob['id']}").json["run_at"]) == until
    assert api.get(f"/api/v1/actions/{ada['id']}").json["run_at"] == ada["run_at"]
    assert api.get(f"/api/v1/actions/{rev['id']}").json["run_at"] == rev["run_at"]


def test_a_bulk_send_now_and_a_bulk_replay_hand_actions_to_the_workers(api: Api, rt: Runtime, live_server: str) -> None:
    sandbox(api)
    ids = many(api, 2)
    sent = api.post("/api/v1/bulk-operations", json={"operation": "send_now", "filter": {"state": "pending"}})
    assert sent.json["changed"] == 2
    run_worker(rt)
    assert [state_of(api, i) for i in ids] == ["delivered", "delivered"]

    set_state(rt, ids[0], state="failed", reason_code="rejected")
    replayed = api.post("/api/v1/bulk-operations", json={"operation": "replay", "filter": {}})
    assert (replayed.json["changed"], replayed.json["not_applicable"]) == (1, {"delivered": 1})
    make_due(rt)
    dispatch_once(rt)
    run_worker(rt)
    detail = api.get(f"/api/v1/actions/{ids[0]}").json
    assert detail["state"] == "delivered" and len(detail["attempt_log"]) == 2


def test_a_bulk_cancel_can_be_undone_while_the_window_is_open(api: Api, rt: Runtime) -> None:
    sandbox(api)
    ids = many(api, 3)
    op = api.post("/api/v1/bulk-operations", json={"operation": "cancel", "ids": ids}).json
    set_state(rt, ids[0], run_at=datetime.now(UTC) - timedelta(minutes=1))  # its time passed meanwhile
    undone = api.post(f"/api/v1/bulk-operations/{op['id']}/undo")
    assert undone.status_code == 200, undone.json
    assert (undone.json["state"], undone.json["restored"]) == ("undone", 2)
    assert [state_of(api, i) for i in ids] == ["cancelled", "pending", "pending"]
    again = api.post(f"/api/v1/bulk-operations/{op['id']}/undo")
    assert again.status_code == 409 and again.json["error"]["current_state"] == "undone"

    second = api.post("/api/v1/bulk-operations", json={"operation": "cancel", "ids": ids[1:]}).json
    with rt.db.transaction() as session:
        session.execute(update(BulkOperation).values(undo_until=datetime.now(UTC) - timedelta(seconds=1)))
    late = api.post(f"/api/v1/bulk-operations/{second['id']}/undo")
    assert late.status_code == 409 and "closed" in late.json["error"]["message"]
    delay = api.post("/api/v1/bulk-operations", json={"operation": "delay", "ids": ids[1:], "days": 1}).json
    assert api.post(f"/api/v1/bulk-operations/{delay['id']}/undo").status_code == 409


def test_a_large_bulk_operation_runs_in_the_background_and_reports_progress(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "BACKGROUND_THRESHOLD", 3)
    monkeypatch.setattr(bulk, "CHUNK", 2)
    sandbox(api)
    ids = many(api, 5)
    started = api.post("/api/v1/bulk-operations", json={"operation": "cancel", "filter": {"state": "pending"}})
    assert started.status_code == 202, started.json
    assert (started.json["state"], started.json["total"], started.json["done"]) == ("queued", 5, 0)
    assert state_of(api, ids[0]) == "pending"
    pending_action(api, "late", "late@example.com")  # arrives after the operation was asked for

    run_worker(rt)
    progress = api.get(f"/api/v1/bulk-operations/{started.json['id']}").json
    assert (progress["state"], progress["done"], progress["changed"], progress["progress"]) == ("done", 5, 5, 1.0)
    assert {state_of(api, i) for i in ids} == {"cancelled"}
    assert [r["state"] for r in api.get("/api/v1/queue").json["data"]] == ["pending"]
    assert [o["id"] for o in api.get("/api/v1/bulk-operations").json["data"]] == [started.json["id"]]


def upload(api: Api, text: str, **form: Any) -> Any:
    data = {"file": (io.BytesIO(text.encode()), "list.csv"), **{k: str(v).lower() for k, v in form.items()}}
    return api.post("/api/v1/bulk-operations/upload", data=data, content_type="multipart/form-data")


def test_an_uploaded_list_of_emails_phones_or_orders_selects_actions_and_reports_rows_that_matched_nothing(
    api: Api,
) -> None:
    sandbox(api)
    ada = pending_action(api, "A-1", "ada@example.com")
    bob = pending_action(api, "B-2", "bob@example.com")
    cy = pending_action(api, "C-3", "cy@example.com")
    text = "email\nADA@example.com\nnobody@example.com\n\nB-2\n+14155550000\n"
    dry = upload(api, text, operation="cancel", dry_run=True)
    assert dry.status_code == 200, dry.json
    assert dry.json["total"] == 1  # the header says they are all emails: "B-2" is not one
    assert [u["row"] for u in dry.json["unmatched"]] == [3, 5, 6]

    done = upload(api, "ada@example.com\nB-2\nnobody@example.com\n", operation="cancel", reason="list")
    assert done.status_code == 200, done.json
    assert (done.json["changed"], done.json["unmatched"]) == (2, [{"row": 3, "value": "nobody@example.com"}])
    assert [state_of(api, a["id"]) for a in (ada, bob, cy)] == ["cancelled", "cancelled", "pending"]


@pytest.mark.parametrize(
    ("text", "form", "field"),
    [
        ("", {"operation": "cancel"}, "file"),
        ("a@example.com", {"operation": "explode"}, "operation"),
        ("a@example.com", {"operation": "delay"}, "days"),
        ("a@example.com", {"operation": "cancel", "match": "shoe_size"}, "match"),
    ],
)
def test_a_bad_upload_is_a_422(api: Api, text: str, form: dict[str, str], field: str) -> None:
    answer = upload(api, text, **form)
    assert answer.status_code == 422, answer.json
    assert field in answer.json["error"]["fields"]


def test_an_upload_without_a_file_or_in_another_encoding_is_a_422(api: Api) -> None:
    missing = api.post(
        "/api/v1/bulk-operations/upload", data={"operation": "cancel"}, content_type="multipart/form-data"
    )
    assert missing.status_code == 422 and "file" in missing.json["error"]["fields"]
    data = {"operation": "cancel", "file": (io.BytesIO("é@example.com".encode("latin-1")), "l.csv")}
    latin = api.post("/api/v1/bulk-operations/upload", data=data, content_type="multipart/form-data")
    assert latin.status_code == 422 and "file" in latin.json["error"]["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operation": "cancel"}, "_body"),
        ({"operation": "cancel", "ids": [1], "filter": {}}, "_body"),
        ({"operation": "cancel", "ids": []}, "ids"),
        ({"operation": "cancel", "ids": ["x"]}, "ids.0"),
        ({"operation": "nuke", "ids": [1]}, "operation"),
        ({"operation": "delay", "ids": [1]}, "days"),
        ({"operation": "cancel", "filter": {"state": "lost"}}, "filter.state"),
        ({"operation": "cancel", "filter": {"from": "2026-02-01", "to": "2026-01-01"}}, "filter.to"),
    ],
)
def test_an_invalid_bulk_request_is_a_422(api: Api, body: dict[str, Any], field: str) -> None:
    answer = api.post("/api/v1/bulk-operations", json=body)
    assert answer.status_code == 422, answer.json
    assert field in answer.json["error"]["fields"]


def test_bulk_ids_of_another_store_or_unknown_ids_are_a_404_and_change_nothing(api: Api, rt: Runtime) -> None:
    sandbox(api)
    mine = many(api, 1)
    other = Api(api.client, make_tenant(rt, "Other"))
    sandbox(other)
    theirs = pending_action(other, "9", "z@example.com")["id"]
    for ids in ([mine[0], theirs], [mine[0], 999999], [2**62]):
        answer = api.post("/api/v1/bulk-operations", json={"operation": "cancel", "ids": ids})
        assert answer.status_code == 404, answer.json
    assert state_of(api, mine[0]) == "pending" and state_of(other, theirs) == "pending"
    assert api.get("/api/v1/bulk-operations/999999").status_code == 404
    assert other.post("/api/v1/bulk-operations/1/undo").status_code == 404


def test_a_bulk_cancel_racing_the_dispatcher_lets_nothing_out_after_it_committed(
    api: Api, rt: Runtime, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox(api)
    ids = many(api, 40)
    make_due(rt)
    monkeypatch.setattr(bulk, "CHUNK", 4)
    dispatcher_rt = Runtime(rt.config.with_overrides(dispatch_batch=3))
    stop, go, round_done = threading.Event(), threading.Event(), threading.Event()

    def dispatcher() -> None:  # a real dispatcher in its own thread, claiming a few at a time
        while go.wait(10) and not stop.is_set():
            go.clear()
            dispatch_once(dispatcher_rt)
            round_done.set()

    def between_batches(_: int) -> None:
        # Between two batches of the cancel, the dispatcher claims a few of the actions the cancel is
        # about to reach: they are queued now, and the cancel must leave them alone.
        round_done.clear()
        go.set()
        round_done.wait(10)

    thread = threading.Thread(target=dispatcher)
    thread.start()
    try:
        with rt.db.session() as session:
            op, _ = bulk.start(
                rt,
                session,
                api.tenant.store.id,
                "tests",
                {"operation": "cancel", "filter": {}},
                progress=between_batches,
                background=False,
            )
    finally:
        stop.set()
        go.set()
        thread.join()
        dispatcher_rt.close()
    assert op is not None and op.state == "done"
    run_worker(rt)
    with rt.db.session() as session:
        final = {i: s for i, s in session.execute(select(Action.id, Action.state))}
        attempted = set(session.scalars(select(Attempt.action_id)))
    cancelled = {i for i, s in final.items() if s == "cancelled"}
    assert cancelled and len(cancelled) == op.changed < len(ids)  # both sides won some
    assert not cancelled & attempted  # nothing that ended cancelled was ever sent
    assert {final[i] for i in set(ids) - cancelled} == {"delivered"}  # the rest went out


# -- lost background runs --------------------------------------------------------------------------


class Killed(BaseException):
    """What a worker killed mid-run looks like from the row: no except clause runs."""


def background_delay(api: Api, monkeypatch: pytest.MonkeyPatch, count: int) -> tuple[int, list[int], dict[int, str]]:
    monkeypatch.setattr(bulk, "BACKGROUND_THRESHOLD", 3)
    monkeypatch.setattr(bulk, "CHUNK", 2)
    sandbox(api)
    ids = many(api, count)
    before = {i: api.get(f"/api/v1/actions/{i}").json["run_at"] for i in ids}
    started = api.post("/api/v1/bulk-operations", json={"operation": "delay", "filter": {}, "days": 1})
    assert started.status_code == 202, started.json
    return started.json["id"], ids, before


def assert_each_delayed_once(api: Api, ids: list[int], before: dict[int, str]) -> None:
    for i in ids:
        moved = datetime.fromisoformat(api.get(f"/api/v1/actions/{i}").json["run_at"])
        assert moved == datetime.fromisoformat(before[i]) + timedelta(days=1), i
    delays = api.get("/api/v1/audit", query_string={"operation": "delay", "limit": 200}).json["data"]
    assert sorted(e["action_id"] for e in delays) == sorted(ids)


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_background_operation_whose_job_redis_lost_is_started_again_by_the_sweep(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    op_id, ids, before = background_delay(api, monkeypatch, 5)
    assert bulk.sweep(rt) == []  # just queued: its job is there
    assert bulk.sweep(rt, later(bulk.QUEUED_GRACE_SECONDS + 1)) == []  # still there: left alone
    rt.redis.flushdb()  # Redis lost it
    assert bulk.sweep(rt, later(bulk.QUEUED_GRACE_SECONDS + 1)) == [op_id]
    assert bulk.sweep(rt, later(bulk.QUEUED_GRACE_SECONDS + 1)) == []  # once is enough: the new job waits
    run_worker(rt)
    body = api.get(f"/api/v1/bulk-operations/{op_id}").json
    assert (body["state"], body["done"], body["changed"]) == ("done", 5, 5)
    assert_each_delayed_once(api, ids, before)


def test_an_operation_whose_worker_died_mid_run_resumes_where_it_stopped_and_does_nothing_twice(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    op_id, ids, before = background_delay(api, monkeypatch, 5)
    rt.redis.flushdb()  # the job was taken by the worker that dies below

    def die(_: int) -> None:
        raise Killed

    with pytest.raises(Killed):
        bulk.run(rt, op_id, progress=die)  # the first batch commits, then the worker is gone
    body = api.get(f"/api/v1/bulk-operations/{op_id}").json
    assert (body["state"], body["done"]) == ("running", 2)
    assert bulk.sweep(rt) == []  # its lease has not run out yet
    assert bulk.sweep(rt, later(bulk.LEASE_SECONDS + 1)) == [op_id]
    run_worker(rt)
    body = api.get(f"/api/v1/bulk-operations/{op_id}").json
    assert (body["state"], body["done"], body["changed"]) == ("done", 5, 5)
    assert_each_delayed_once(api, ids, before)


def test_a_run_that_lost_its_lease_to_another_stops_and_rolls_its_batch_back(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    op_id, ids, before = background_delay(api, monkeypatch, 5)

    def taken_over(_: int) -> None:  # another run claimed it meanwhile
        with rt.db.transaction() as session:
            session.execute(update(BulkOperation).where(BulkOperation.id == op_id).values(lease_token="other"))

    stopped = bulk.run(rt, op_id, progress=taken_over)
    assert stopped is not None and stopped.state == "running"
    body = api.get(f"/api/v1/bulk-operations/{op_id}").json
    assert (body["state"], body["done"]) == ("running", 2)  # the second batch was rolled back
    delayed = [i for i in ids if api.get(f"/api/v1/actions/{i}").json["run_at"] != before[i]]
    assert delayed == ids[:2]


def test_an_operation_lost_too_many_times_fails_with_a_message(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    op_id, _, _ = background_delay(api, monkeypatch, 4)
    with rt.db.transaction() as session:
        session.execute(update(BulkOperation).values(resumes=bulk.MAX_RESUMES))
    rt.redis.flushdb()
    assert bulk.sweep(rt, later(bulk.QUEUED_GRACE_SECONDS + 1)) == []
    body = api.get(f"/api/v1/bulk-operations/{op_id}").json
    assert body["state"] == "failed" and "lost" in body["error"]


def test_the_dispatchers_housekeeping_restarts_lost_operations_and_folds_the_counters(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    op_id, ids, before = background_delay(api, monkeypatch, 4)
    rt.redis.flushdb()
    with rt.db.transaction() as session:
        session.execute(update(BulkOperation).values(created_at=datetime.now(UTC) - timedelta(minutes=5)))
    housekeeping(rt)
    run_worker(rt)
    assert api.get(f"/api/v1/bulk-operations/{op_id}").json["state"] == "done"
    assert_each_delayed_once(api, ids, before)
    housekeeping(rt)
    with rt.db.session() as session:
        assert set(session.scalars(select(ActionCount.settled))) == {True}
