"""The action counters behind the stats: exact after every kind of write, compacted without changing a sum."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import responses
from sqlalchemy import delete, func, insert, select, update

from hub import bulk, counters, stats
from hub.models import Action, ActionCount, Store
from hub.runtime import Runtime
from tests.conftest import Api, make_tenant, run_worker
from tests.test_delivery import HOOK_URL, connect_webhook, deliver_round, make_due
from tests.test_outbox import order, pending_action, review, sandbox, set_state

NOW = datetime.now(UTC)
FILTERS: list[dict[str, Any]] = [
    {},
    {"app": "webhook"},
    {"app": "sandbox", "kind": "event"},
    {"state": ["delivered", "failed"]},
    {"state": ["pending", "held", "queued", "sending"]},
    {"trigger": "manual"},
    {"caused_by": "merchant"},
    {"date_from": NOW - timedelta(days=2, minutes=17), "date_to": NOW + timedelta(minutes=23)},
    {"date_from": NOW - timedelta(days=1), "app": "webhook", "state": "cancelled"},
    {"date_to": NOW - timedelta(hours=5, minutes=1)},
]


def both_ways(rt: Runtime, store_id: int, f: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    with rt.db.session() as session:
        assert stats._countable({"date_by": "created", **f})
        counted = stats.stats(session, store_id, {"date_by": "created", **f})
        scanned = stats.stats(session, store_id, {"date_by": "created", **f}, counters=False)
    return counted, scanned


def assert_exact(rt: Runtime, store_id: int) -> None:
    for f in FILTERS:
        counted, scanned = both_ways(rt, store_id, f)
        assert counted == scanned, f


def live_totals(rt: Runtime) -> dict[tuple[Any, ...], int]:
    """What the counters must say, computed from the actions themselves (store, app, bucket, sent)."""
    with rt.db.session() as session:
        rows = session.execute(
            select(Action.store_id, Action.app, Action.state, Action.attempt_count, func.count()).group_by(
                Action.store_id, Action.app, Action.state, Action.attempt_count
            )
        ).all()
    totals: dict[tuple[Any, ...], int] = {}
    for store_id, app, state, sent, n in rows:
        bucket = "open" if state in stats.OPEN else state
        key = (store_id, app or "", bucket, sent > 0)
        totals[key] = totals.get(key, 0) + n
    return totals


def counted_totals(rt: Runtime) -> dict[tuple[Any, ...], int]:
    c = ActionCount
    with rt.db.session() as session:
        rows = session.execute(
            select(c.store_id, c.app, c.bucket, c.sent, func.sum(c.count)).group_by(c.store_id, c.app, c.bucket, c.sent)
        ).all()
    return {(s, a, b, bool(sent)): int(n) for s, a, b, sent, n in rows if n}


@responses.activate
def test_counters_match_the_actions_after_deliveries_failures_retries_and_operations(
    api: Api, rt: Runtime, live_server: str
) -> None:
    responses.add_passthru(live_server)
    connect_webhook(api)
    sandbox(api)
    responses.add(responses.POST, HOOK_URL, status=503)
    responses.add(responses.POST, HOOK_URL, status=202)
    responses.add(responses.POST, HOOK_URL, status=400)
    ids = [
        a["id"]
        for n in range(3)
        for a in api.post("/api/v1/triggers", json=order(f"o{n}", f"c{n}@example.com")).json["actions"]
    ]
    assert len(ids) == 6  # one for each app
    api.post("/api/v1/triggers", json=review(email="r@example.com"))
    api.post("/api/v1/integrations/sandbox/test-events", json={"target": {"email": "qa@example.com"}})
    set_state(rt, ids[5], created_at=NOW - timedelta(days=1, hours=3))  # another day and hour
    assert_exact(rt, 1)
    assert api.post(f"/api/v1/actions/{ids[0]}/cancel", json={"reason": "no"}).status_code == 200
    assert api.post(f"/api/v1/actions/{ids[1]}/delay", json={"days": 1}).status_code == 200
    make_due(rt)
    deliver_round(rt)  # the first webhook try is a 503: retried later, sent but still open
    assert_exact(rt, 1)
    make_due(rt)
    deliver_round(rt)
    make_due(rt)
    deliver_round(rt)
    assert api.post(f"/api/v1/actions/{ids[0]}/restore").status_code == 200
    failed = [a for a in api.get("/api/v1/actions", query_string={"state": "failed"}).json["data"]]
    if failed:
        assert api.post(f"/api/v1/actions/{failed[0]['id']}/replay", json={"new_key": True}).status_code == 202
    run_worker(rt)
    assert_exact(rt, 1)
    assert counted_totals(rt) == live_totals(rt)
    with rt.db.transaction() as session:
        assert counters.compact(session) > 0
    assert_exact(rt, 1)
    assert counted_totals(rt) == live_totals(rt)


def test_bulk_operations_and_statements_over_many_rows_are_counted_exactly(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "CHUNK", 3)
    sandbox(api)
    ids = [pending_action(api, f"o{n}", f"c{n}@example.com")["id"] for n in range(10)]
    with rt.db.transaction() as session:  # a plain bulk insert, as the bench seeds
        template = session.get_one(Action, ids[0])
        base = {c.key: getattr(template, c.key) for c in Action.__table__.columns if c.key != "id"}
        session.execute(
            insert(Action),
            [{**base, "idempotency_key": f"k{n}", "created_at": NOW - timedelta(hours=n)} for n in range(40)],
        )
    assert api.post("/api/v1/bulk-operations", json={"operation": "cancel", "filter": {}}).json["changed"] == 50
    op = api.get("/api/v1/bulk-operations").json["data"][0]
    assert api.post(f"/api/v1/bulk-operations/{op['id']}/undo").json["restored"] == 50
    with rt.db.transaction() as session:
        session.execute(update(Action).where(Action.id.in_(ids[:7])).values(state="failed", attempt_count=1))
        session.execute(update(Action).where(Action.id.in_(ids[5:])).values(app="other"))
        session.execute(delete(Action).where(Action.id == ids[9]))
    replayed = {"operation": "replay", "ids": ids[:3], "new_key": True}
    assert api.post("/api/v1/bulk-operations", json=replayed).json["changed"] == 3
    assert api.post("/api/v1/bulk-operations", json={"operation": "replay", "ids": ids[3:5]}).json["changed"] == 2
    assert_exact(rt, 1)
    assert counted_totals(rt) == live_totals(rt)


def test_compaction_folds_each_key_into_one_row_and_changes_no_sum(api: Api, rt: Runtime) -> None:
    sandbox(api)
    ids = [pending_action(api, f"o{n}", f"c{n}@example.com")["id"] for n in range(4)]
    with rt.db.transaction() as session:  # one hour for all, even if the clock passed an hour meanwhile
        session.execute(update(Action).values(created_at=NOW - timedelta(days=3)))
    for action_id in ids[:3]:
        api.post(f"/api/v1/actions/{action_id}/cancel")
        api.post(f"/api/v1/actions/{action_id}/restore")
    api.post(f"/api/v1/actions/{ids[0]}/cancel")
    before = counted_totals(rt)
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ActionCount)) > 4
        counters.compact_all(session)
        rows = session.execute(select(ActionCount.bucket, ActionCount.count, ActionCount.settled)).all()
    assert sorted(rows) == [("cancelled", 1, True), ("open", 3, True)]  # a key that sums to zero is gone
    assert counted_totals(rt) == before == live_totals(rt)
    with rt.db.session() as session:
        assert counters.compact_all(session) == 0  # nothing left to fold


def test_writers_and_compactions_running_at_once_lose_and_double_nothing(api: Api, rt: Runtime) -> None:
    sandbox(api)
    ids = [pending_action(api, f"o{n}", f"c{n}@example.com")["id"] for n in range(12)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def flip(mine: list[int]) -> None:
        try:
            for n in range(15):
                with rt.db.transaction() as session:
                    state, attempts = ("delivered", 1) if n % 2 == 0 else ("pending", 0)
                    session.execute(
                        update(Action).where(Action.id.in_(mine)).values(state=state, attempt_count=attempts)
                    )
        except BaseException as error:  # reported below
            errors.append(error)

    def compact() -> None:
        try:
            while not stop.is_set():
                with rt.db.transaction() as session:
                    counters.compact(session, keys=3)
        except BaseException as error:  # reported below
            errors.append(error)

    writers = [threading.Thread(target=flip, args=(ids[i::3],)) for i in range(3)]
    compactor = threading.Thread(target=compact)
    compactor.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    compactor.join()
    assert errors == []
    assert counted_totals(rt) == live_totals(rt)
    assert_exact(rt, 1)


def test_a_stores_counters_go_with_it_and_other_stores_keep_theirs(api: Api, rt: Runtime) -> None:
    sandbox(api)
    pending_action(api)
    other = Api(api.client, make_tenant(rt, "Other"))
    sandbox(other)
    pending_action(other)
    with rt.db.transaction() as session:
        session.execute(delete(Store).where(Store.id == api.tenant.store.id))
    with rt.db.session() as session:
        left = session.execute(select(ActionCount.store_id, func.sum(ActionCount.count)).group_by(ActionCount.store_id))
        assert [tuple(row) for row in left] == [(other.tenant.store.id, 1)]


def test_filters_the_counters_cannot_answer_read_the_actions(api: Api, rt: Runtime) -> None:
    sandbox(api)
    pending_action(api, "o1", "ada@example.com")
    for f in ({"q": "ada"}, {"order_id": "o1"}, {"trigger_type": "order.fulfilled"}, {"state": ["pending"]}):
        assert not stats._countable({"date_by": "created", **f})
        assert api.get("/api/v1/stats", query_string={k: v for k, v in f.items()}).json["pending"] == 1
    assert not stats._countable({"date_by": "updated"})
    assert api.get("/api/v1/stats", query_string={"state": "pending,held,queued,sending"}).json["pending"] == 1
