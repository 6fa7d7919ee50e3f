"""Delivery through a connector that sends in batches (Klaviyo's Bulk Create Events), end to end:
dispatcher → worker → one request for many actions → an attempt and a transition for each of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import responses
from sqlalchemy import delete, event, func, select, update
from sqlalchemy import text as sql

from connectors.base import json_text, splice_of
from connectors.http import Recorder, redact
from connectors.klaviyo import KlaviyoConnector
from hub import delivery, outbox
from hub.dispatch import dispatch_once, enqueue
from hub.flows import new_event_action
from hub.models import Action, ActionState, Attempt, Integration, Store
from hub.outbox import Claimed
from hub.runtime import Runtime
from tests.conftest import Tenant, run_worker

KEY = "pk_0123456789abcdef0123456789abcdef01"
BULK_URL = "https://a.klaviyo.com/api/event-bulk-create-jobs"
SINGLE_URL = "https://a.klaviyo.com/api/events"


def connect_klaviyo(rt: Runtime, tenant: Tenant) -> int:
    with rt.db.transaction() as session:
        integration = Integration(
            store_id=tenant.store.id,
            app="klaviyo",
            credentials=rt.box.encrypt({"api_key": KEY}),
            settings={"base_url": "https://a.klaviyo.com"},
        )
        session.add(integration)
        session.flush()
        return integration.id


def add_actions(rt: Runtime, tenant: Tenant, integration_id: int, customers: list[dict[str, Any]]) -> list[int]:
    now = datetime.now(UTC)
    with rt.db.transaction() as session:
        store = session.get(Store, tenant.store.id)
        integration = session.get(Integration, integration_id)
        assert store and integration
        rows = [
            new_event_action(
                store,
                integration,
                name="Review Request",
                event_type="review_request",
                customer=customer,
                properties={"items": [{"product_id": f"p-{n}", "name": "Linen Shirt"}]},
                occurred_at=now,
                run_at=now,
                trigger="auto",
            )
            for n, customer in enumerate(customers)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def customers(count: int) -> list[dict[str, Any]]:
    return [{"email": f"c{n}@example.com"} for n in range(count)]


def deliver_round(rt: Runtime) -> int:
    claimed = dispatch_once(rt)
    run_worker(rt)
    return claimed


def actions(rt: Runtime) -> list[Action]:
    with rt.db.session() as session:
        return list(session.scalars(select(Action).order_by(Action.id)))


def attempts(rt: Runtime) -> list[Attempt]:
    with rt.db.session() as session:
        return list(session.scalars(select(Attempt).order_by(Attempt.action_id, Attempt.number)))


def bulk_entries(call: Any) -> list[dict[str, Any]]:
    return json.loads(call.request.body)["data"]["attributes"]["events-bulk-create"]["data"]  # type: ignore[no-any-return]


def unique_ids(call: Any) -> list[str]:
    return [e["attributes"]["events"]["data"][0]["attributes"]["unique_id"] for e in bulk_entries(call)]


@responses.activate
@pytest.mark.parametrize("spliced", [True, False], ids=["entries encoded once", "bodies built by the connector"])
def test_a_job_of_actions_goes_out_in_one_bulk_request_and_each_gets_its_own_attempt(
    rt: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, spliced: bool
) -> None:
    if not spliced:
        monkeypatch.setattr(delivery, "splice_of", lambda connector, settings: None)
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(3))
    posted = responses.post(BULK_URL, status=202)

    assert deliver_round(rt) == 3

    [call] = posted.calls
    rows = actions(rt)
    assert unique_ids(call) == [a.idempotency_key for a in rows]
    assert [(a.state, a.attempt_count, a.last_status) for a in rows] == [("delivered", 1, 202)] * 3
    recorded = attempts(rt)
    assert [a.action_id for a in recorded] == ids
    assert {(a.outcome, a.http_status, a.duration_ms) for a in recorded} == {
        ("delivered", 202, recorded[0].duration_ms)
    }
    for position, (attempt, action) in enumerate(zip(recorded, rows, strict=True)):
        # The request as sent for that event: the bulk request carrying it alone, key redacted.
        assert attempt.request["url"] == BULK_URL
        assert attempt.request["headers"]["Authorization"] == "[redacted]"
        [entry] = attempt.request["body"]["data"]["attributes"]["events-bulk-create"]["data"]
        assert entry == bulk_entries(call)[position]
        assert entry["attributes"]["events"]["data"][0]["attributes"]["unique_id"] == action.idempotency_key
        assert attempt.request["batch"] == {"events": 3, "position": position}
        alone = KlaviyoConnector().build_batch_request([entry], {"api_key": KEY, "base_url": "https://a.klaviyo.com"})
        assert attempt.request == {**redact(alone), "batch": {"events": 3, "position": position}}
    assert KEY not in json.dumps([a.request for a in recorded])
    assert call.request.headers["Content-Type"] == "application/vnd.api+json"


@responses.activate
def test_one_action_alone_goes_through_the_single_event_endpoint(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(1))
    single = responses.post(SINGLE_URL, status=202)
    deliver_round(rt)
    assert len(single.calls) == 1
    [attempt] = attempts(rt)
    assert attempt.request["url"] == SINGLE_URL and "batch" not in attempt.request
    assert actions(rt)[0].state == "delivered"


@responses.activate
def test_a_429_on_the_bulk_request_waits_every_action_for_retry_after_without_spending_attempts(
    rt: Runtime, tenant: Tenant
) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(3))
    responses.post(BULK_URL, status=429, headers={"Retry-After": "90"}, json={"errors": []})
    before = datetime.now(UTC)
    deliver_round(rt)

    rows = actions(rt)
    assert {(a.state, a.reason_code, a.failure_count, a.rate_limited_count) for a in rows} == {
        ("pending", "rate_limited", 0, 1)
    }
    for row in rows:
        assert timedelta(seconds=89) <= row.run_at - before <= timedelta(seconds=95)
    assert [a.outcome for a in attempts(rt)] == ["rate_limited"] * 3


@responses.activate
def test_a_503_on_the_bulk_request_retries_every_action_by_the_schedule(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(2))
    bulk = responses.post(BULK_URL, status=503, json={"errors": [{"code": "unavailable", "detail": "Try later."}]})
    deliver_round(rt)
    assert {(a.state, a.reason_code, a.failure_count) for a in actions(rt)} == {("pending", "retrying", 1)}

    responses.replace(responses.POST, BULK_URL, status=202)
    with rt.db.transaction() as session:
        session.execute(update(Action).values(run_at=datetime.now(UTC)))
    deliver_round(rt)
    assert {(a.state, a.attempt_count) for a in actions(rt)} == {("delivered", 2)}
    assert len(bulk.calls) == 1 and len(responses.calls) == 2


@responses.activate
def test_a_400_naming_one_event_fails_that_action_and_retries_the_others(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(3))
    error = {
        "id": "e1",
        "status": 400,
        "code": "invalid",
        "title": "Invalid input.",
        "detail": "Invalid email address",
        "source": {"pointer": "/data/attributes/events-bulk-create/data/1/attributes/profile/data/attributes/email"},
    }
    responses.post(BULK_URL, status=400, json={"errors": [error]})
    deliver_round(rt)

    first, second, third = actions(rt)
    assert (second.state, second.reason_code, second.reason_text) == (
        "failed",
        "rejected",
        "HTTP 400: invalid: Invalid email address",
    )
    for row in (first, third):
        assert (row.state, row.reason_code, row.failure_count) == ("pending", "retrying", 1)
        assert "refused 1 other event(s)" in (row.reason_text or "")


@responses.activate
def test_a_401_on_the_bulk_request_holds_every_action_and_the_integration_needs_attention(
    rt: Runtime, tenant: Tenant
) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(2))
    responses.post(BULK_URL, status=401, json={"errors": [{"code": "not_authenticated", "detail": "Bad key."}]})
    deliver_round(rt)
    assert {(a.state, a.reason_code) for a in actions(rt)} == {("held", "credentials_rejected")}
    with rt.db.session() as session:
        assert session.get(Integration, integration_id).state == "needs_attention"  # type: ignore[union-attr]


@responses.activate
def test_an_idempotency_key_repeated_in_one_job_is_sent_once_and_shares_the_outcome(
    rt: Runtime, tenant: Tenant
) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    first, second, third = add_actions(rt, tenant, integration_id, customers(3))
    with rt.db.transaction() as session:
        original = session.get(Action, first)
        repeat = session.get(Action, third)
        assert original and repeat
        repeat.payload = {**repeat.payload, "id": original.payload["id"]}  # the same event to the platform
    posted = responses.post(BULK_URL, status=202)
    deliver_round(rt)

    [call] = posted.calls
    keys = unique_ids(call)
    assert len(keys) == 2 and len(set(keys)) == 2  # Klaviyo would refuse the whole request for a repeat
    assert {a.state for a in actions(rt)} == {"delivered"}
    by_action = {a.action_id: a for a in attempts(rt)}
    assert by_action[third].request["batch"]["same_key_as"] == first
    assert by_action[third].request["body"] == by_action[first].request["body"]
    assert "same_key_as" not in by_action[second].request["batch"]


@responses.activate
def test_an_event_the_connector_cannot_take_is_skipped_and_left_out_of_the_request(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    # A phone that is not E.164 passes the identity guard but Klaviyo could not use it.
    add_actions(rt, tenant, integration_id, [*customers(2), {"phone": "0415 555 0100"}])
    posted = responses.post(BULK_URL, status=202)
    deliver_round(rt)
    assert len(bulk_entries(posted.calls[0])) == 2
    assert [(a.state, a.reason_code) for a in actions(rt)] == [
        ("delivered", None),
        ("delivered", None),
        ("skipped", "missing_identity"),
    ]


@responses.activate
def test_a_bulk_request_takes_one_rate_limit_token_however_many_events_it_carries(
    rt: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(5))
    responses.post(BULK_URL, status=202)
    taken: list[tuple[str, float, float | None]] = []
    acquire = rt.limiter.acquire

    def counting(bucket: str, per_second: float, burst: float | None = None) -> float:
        taken.append((bucket, per_second, burst))
        return acquire(bucket, per_second, burst)

    monkeypatch.setattr(rt.limiter, "acquire", counting)
    deliver_round(rt)

    capabilities = KlaviyoConnector.capabilities
    # Bulk Create Events' own limit (tier M: 10/s burst, 150/min steady), not Create Event's.
    assert taken == [(f"integration:{integration_id}:batch", 150 / 60, capabilities.batch_rate_burst)]
    assert {a.state for a in actions(rt)} == {"delivered"}


@responses.activate
def test_without_a_token_every_action_of_the_request_waits_in_the_database_without_an_attempt(
    rt: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(3))
    monkeypatch.setattr(rt.limiter, "acquire", lambda bucket, per_second, burst=None: 5.0)  # the next token in 5 s
    posted = responses.post(BULK_URL, status=202)
    before = datetime.now(UTC)
    deliver_round(rt)

    assert not posted.calls and not attempts(rt)
    rows = actions(rt)
    assert {(a.state, a.reason_code, a.attempt_count) for a in rows} == {("pending", "rate_limit_wait", 0)}
    assert all(timedelta(seconds=5) <= a.run_at - before < timedelta(seconds=60) for a in rows)


@responses.activate
def test_a_job_larger_than_a_request_is_split_at_a_thousand_events(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(1001))
    with rt.db.transaction() as session:
        session.execute(update(Action).values(state="queued"))
    posted = responses.post(BULK_URL, status=202)

    tally = delivery.deliver_batch(rt, ids)

    assert tally == {"delivered": 1001}
    assert [len(bulk_entries(c)) for c in posted.calls] == [1000, 1]
    assert len(attempts(rt)) == 1001


def test_the_dispatcher_gives_a_batch_capable_integration_jobs_of_a_whole_request(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    claimed = [Claimed(n, integration_id, "klaviyo") for n in range(1, 1502)]
    assert rt.config.job_batch < 1000
    assert enqueue(rt, claimed) == 2
    assert sorted(len(job.args[0]) for job in rt.queue.get_jobs()) == [501, 1000]
    rt.queue.empty()
    assert enqueue(rt, [Claimed(n, 99, "webhook") for n in range(1, 251)]) == 3  # HUB_JOB_BATCH for the others


@responses.activate
def test_an_action_whose_lease_was_taken_while_sending_keeps_its_new_owners_state_and_the_rest_move(
    rt: Runtime, tenant: Tenant
) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    first, second, third = add_actions(rt, tenant, integration_id, customers(3))

    def lease_runs_out_meanwhile(request: Any) -> tuple[int, dict[str, str], str]:
        with rt.db.transaction() as session:  # another worker re-claimed the first one
            session.execute(update(Action).where(Action.id == first).values(lease_token="another-worker"))
        body = {"errors": [{"id": "e", "code": "invalid", "title": "Invalid input.", "detail": "Bad email"}]}
        body["errors"][0]["source"] = {"pointer": "/data/attributes/events-bulk-create/data/2/attributes"}
        return 400, {}, json.dumps(body)

    responses.add_callback(responses.POST, BULK_URL, callback=lease_runs_out_meanwhile)
    with rt.db.transaction() as session:
        session.execute(update(Action).values(state="queued"))

    tally = delivery.deliver_batch(rt, [first, second, third])

    assert tally == {"pending": 1, "failed": 1, "lease_lost": 1}
    rows = {a.id: a for a in actions(rt)}
    assert (rows[first].state, rows[first].lease_token, rows[first].attempt_count) == ("sending", "another-worker", 0)
    assert (rows[second].state, rows[second].reason_code) == ("pending", "retrying")
    assert (rows[third].state, rows[third].reason_text) == ("failed", "HTTP 400: invalid: Bad email")
    assert sorted(a.action_id for a in attempts(rt)) == [first, second, third]  # recorded all the same


# -- the dispatcher's lease travels in the job -------------------------------------------------------


def test_the_dispatcher_claims_straight_into_sending_and_the_job_carries_the_lease(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(3))

    assert dispatch_once(rt) == 3

    rows = actions(rt)
    assert {a.state for a in rows} == {"sending"}
    [lease] = {a.lease_token for a in rows}
    [job] = rt.queue.get_jobs()
    assert job.args == (ids, lease)


@responses.activate
def test_a_job_sends_none_of_the_actions_claimed_again_under_a_newer_lease(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    first, second, third = add_actions(rt, tenant, integration_id, customers(3))
    dispatch_once(rt)
    with rt.db.transaction() as session:  # its lease ran out while the job waited, and a dispatcher took it again
        session.execute(update(Action).where(Action.id == first).values(lease_token="newer-claim"))
    posted = responses.post(BULK_URL, status=202)

    run_worker(rt)

    assert [len(bulk_entries(c)) for c in posted.calls] == [2]
    rows = {a.id: a for a in actions(rt)}
    assert (rows[first].state, rows[first].lease_token, rows[first].attempt_count) == ("sending", "newer-claim", 0)
    assert (rows[second].state, rows[third].state) == ("delivered", "delivered")
    assert sorted(a.action_id for a in attempts(rt)) == [second, third]


@responses.activate
def test_a_job_whose_lease_ran_out_in_the_queue_sends_nothing_and_the_next_claim_delivers(
    rt: Runtime, tenant: Tenant
) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(2))
    dispatch_once(rt)
    with rt.db.transaction() as session:
        session.execute(update(Action).values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    posted = responses.post(BULK_URL, status=202)

    run_worker(rt)
    assert not posted.calls and {a.state for a in actions(rt)} == {"sending"}

    assert dispatch_once(rt) == 2  # the lost-lease scan
    run_worker(rt)
    assert len(posted.calls) == 1 and {a.state for a in actions(rt)} == {"delivered"}


def test_a_job_that_waited_long_in_the_queue_extends_its_lease_before_delivering(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(2))
    dispatch_once(rt)
    [lease] = {a.lease_token for a in actions(rt)}
    soon = datetime.now(UTC) + timedelta(seconds=5)
    with rt.db.transaction() as session:
        session.execute(update(Action).values(lease_expires_at=soon))

    with rt.db.transaction() as session:
        rows = outbox.read_for_delivery(session, ids, lease, rt.config.lease_seconds)

    assert sorted(r.id for r in rows) == ids
    assert all(a.lease_expires_at > soon + timedelta(seconds=rt.config.lease_seconds / 2) for a in actions(rt))
    assert {(a.state, a.lease_token) for a in actions(rt)} == {("sending", lease)}


@responses.activate
def test_a_workers_reads_and_transitions_go_by_primary_key_however_many_actions_are_in_flight(
    rt: Runtime, tenant: Tenant
) -> None:
    """Statistics taken while nothing is in flight must not lead a job to walk every action in flight: the worker's
    statements name state = 'sending' and the lease, and go to its actions by primary key (migrations 0009, 0011:
    the lease index now lives on open_actions)."""
    if not rt.db.is_postgresql:
        pytest.skip("PostgreSQL's planner")
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(800))
    with rt.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE actions")
    assert dispatch_once(rt) == 800  # all in flight under one lease
    [lease] = {a.lease_token for a in actions(rt)}
    responses.post(BULK_URL, status=202)
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.startswith(("SELECT actions.lease_expires_at", "UPDATE actions")):
            statements.append((statement, parameters))

    event.listen(rt.db.engine, "before_cursor_execute", capture)
    try:
        delivery.deliver_batch(rt, ids[:100], lease)
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", capture)

    assert len(statements) == 1  # the one transition of its delivered actions; the read goes straight to psycopg
    read = outbox._raw_read()
    statements.append((read.sql, {**read.constants, "ids": ids[100:200], "lease": lease}))
    with rt.db.engine.connect() as connection:
        for statement, parameters in statements:
            plan = "\n".join(connection.exec_driver_sql("EXPLAIN " + statement, parameters).scalars())
            assert "pk_actions" in plan and "Seq Scan" not in plan, plan  # found by id, not by a scan
    assert sum(a.state == "delivered" for a in actions(rt)) == 100


@pytest.mark.parametrize("same", [True, False], ids=["values shared by every row", "values of each row"])
def test_a_batch_transition_gives_each_action_its_values_and_leaves_one_under_another_lease(
    rt: Runtime, tenant: Tenant, same: bool
) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(3))
    dispatch_once(rt)
    [lease] = {a.lease_token for a in actions(rt)}
    with rt.db.transaction() as session:
        session.execute(update(Action).where(Action.id == ids[2]).values(lease_token="another"))
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    changes = [
        (
            action_id,
            {"attempt_count": 1 if same else n + 1, "last_status": 202, "delivered_at": at, "reason_code": None},
        )
        for n, action_id in enumerate(ids)
    ]

    with rt.db.transaction() as session:
        moved = outbox.transition_many(
            session, changes, expected=ActionState.SENDING, lease_token=lease, state=ActionState.DELIVERED
        )

    assert moved == set(ids[:2])
    rows = actions(rt)
    assert [(a.state, a.attempt_count, a.last_status, a.delivered_at) for a in rows[:2]] == [
        ("delivered", 1, 202, at),
        ("delivered", 1 if same else 2, 202, at),
    ]
    assert (rows[2].state, rows[2].attempt_count, rows[2].delivered_at) == ("sending", 0, None)


@responses.activate
def test_the_events_of_one_bulk_request_are_delivered_at_the_moment_of_its_answer(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(3))
    responses.post(BULK_URL, status=202)

    deliver_round(rt)

    rows = actions(rt)
    [delivered_at] = {a.delivered_at for a in rows}
    [started_at] = {a.started_at for a in attempts(rt)}
    assert delivered_at is not None and started_at <= delivered_at


def test_a_transition_of_values_of_each_row_is_planned_for_its_arrays_however_often_it_runs(
    rt: Runtime, tenant: Tenant
) -> None:
    """psycopg prepares a statement run five times; PostgreSQL's generic plan for the unnest join compares every
    action with every row of the arrays. The transition asks for a plan of its own each time."""
    if not rt.db.is_postgresql:
        pytest.skip("plans and prepared statements are PostgreSQL's")
    integration_id = connect_klaviyo(rt, tenant)
    for round_ in range(7):
        ids = add_actions(rt, tenant, integration_id, customers(3))
        dispatch_once(rt)
        [lease] = {a.lease_token for a in actions(rt) if a.id in ids}
        changes = [(action_id, {"attempt_count": n + 1, "last_status": 202}) for n, action_id in enumerate(ids)]
        with rt.db.transaction() as session:
            moved = outbox.transition_many(
                session, changes, expected=ActionState.SENDING, lease_token=lease, state=ActionState.DELIVERED
            )
            mode = session.scalar(select(func.current_setting("plan_cache_mode")))

        assert moved == set(ids), round_
        assert mode == "force_custom_plan"
        assert [a.attempt_count for a in actions(rt) if a.id in ids] == [1, 2, 3]


@responses.activate
def test_a_deleted_store_takes_its_attempts_with_its_actions(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    add_actions(rt, tenant, integration_id, customers(2))
    responses.post(BULK_URL, status=202)
    deliver_round(rt)
    assert len(attempts(rt)) == 2

    with rt.db.transaction() as session:
        session.execute(delete(Store).where(Store.id == tenant.store.id))

    assert attempts(rt) == [] and actions(rt) == []


def delivered_in_bulk(rt: Runtime, tenant: Tenant, count: int) -> list[int]:
    """``count`` Klaviyo actions delivered in one bulk request (a 202), an attempt each."""
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(count))
    responses.post(BULK_URL, status=202)
    deliver_round(rt)
    assert len(attempts(rt)) == count
    return ids


@responses.activate
def test_a_deleted_action_takes_its_attempts_and_leaves_the_others(rt: Runtime, tenant: Tenant) -> None:
    ids = delivered_in_bulk(rt, tenant, 3)

    with rt.db.transaction() as session:
        session.execute(delete(Action).where(Action.id.in_(ids[:2])))

    assert [a.action_id for a in attempts(rt)] == [ids[2]]


@responses.activate
def test_orphan_attempts_are_pruned_by_the_cli_and_the_others_kept(rt: Runtime, tenant: Tenant) -> None:
    from click.testing import CliRunner

    from hub.cli import main
    from tests.test_cli import env_for

    ids = delivered_in_bulk(rt, tenant, 2)
    with rt.db.transaction() as session:  # as an attempt written while its store was being deleted is left
        kept = session.scalars(select(Attempt).where(Attempt.action_id == ids[0])).one()
        session.add(
            Attempt(
                action_id=10**9, store_id=tenant.store.id, number=1, started_at=kept.started_at, duration_ms=1,
                outcome="delivered", request={},
            )
        )  # fmt: skip

    result = CliRunner().invoke(main, ["db", "prune-orphan-attempts"], env=env_for(rt), catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "1 orphan attempts deleted" in result.output
    assert sorted(a.action_id for a in attempts(rt)) == sorted(ids)


@responses.activate
def test_numbers_of_the_payload_reach_the_platform_as_they_were_stored(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(2))
    numbers = {"big": 2**70, "negative": -(2**64), "price": 49.99, "tiny": 1e-300, "count": 3}
    with rt.db.transaction() as session:
        for action in session.scalars(select(Action).where(Action.id.in_(ids))):
            action.payload = {**action.payload, "properties": {**action.payload["properties"], **numbers}}
    posted = responses.post(BULK_URL, status=202)

    deliver_round(rt)

    for entry in bulk_entries(posted.calls[0]):
        properties = entry["attributes"]["events"]["data"][0]["attributes"]["properties"]
        assert {k: properties[k] for k in numbers} == numbers
        assert isinstance(properties["big"], int)


def test_the_workers_json_reader_reads_as_json_loads_does() -> None:
    for text in (
        '{"a": [1, 2.5, null, true, "é"]}',
        '{"big": 123456789012345678901234567890}',
        '{"big":-123456789012345678901234567890}',
        '{"in": [1, 18446744073709551616]}',
        '{"in": [18446744073709551616]}',
        '{"after":\n\t 18446744073709551616}',
        "18446744073709551616",
        " -18446744073709551616",
        '{"id": "1234567890123456789012345"}',
        "[1e400]",
        '"x"',
    ):
        assert json.dumps(outbox._json(text)) == json.dumps(json.loads(text)), text  # an int, not an equal float
    assert outbox._json(None) is None


def test_attempt_rows_written_in_one_batch_read_back_exactly_as_they_were_given(rt: Runtime, tenant: Tenant) -> None:
    """PostgreSQL takes them by a binary COPY: times to the microsecond whatever their zone, empty values as NULL,
    the record's JSON text as it was written (escapes, non-ASCII text), a record given as a value encoded."""
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(3))
    started = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    elsewhere = started.astimezone(timezone(timedelta(hours=5, minutes=30)))
    record = r'{"url": "https://a.example/x", "body": {"name": "Zo\u00eb \\ \"q\"", "city": "Zürich\t"}}'
    rows: list[dict[str, Any]] = [
        {
            "action_id": ids[0],
            "store_id": tenant.store.id,
            "number": 1,
            "started_at": started,
            "duration_ms": 0,
            "outcome": "delivered",
            "http_status": 202,
            "error": None,
            "request": record,
            "response": None,
            "next_attempt_at": None,
        },
        {
            "action_id": ids[1],
            "store_id": tenant.store.id,
            "number": 7,
            "started_at": elsewhere,
            "duration_ms": 2_147_483_647,
            "outcome": "retry",
            "http_status": None,
            "error": "timeout error: \\N, tab\there, line\nbreak, Zürich",
            "request": {"url": "https://a.example/y", "body": {"n": 1, "z": [None, True, "ü"]}},
            "response": "HTTP 503: \\ back",
            "next_attempt_at": elsewhere + timedelta(seconds=90),
        },
        {
            "action_id": ids[2],
            "store_id": tenant.store.id,
            "number": 2,
            "started_at": started,
            "duration_ms": 12,
            "outcome": "permanent",
            "http_status": 400,
            "error": "",
            "request": "{}",
            "response": "",
            "next_attempt_at": None,
        },
    ]

    with rt.db.transaction() as session:
        delivery.insert_attempts(session, rows)

    found = attempts(rt)
    assert [a.action_id for a in found] == ids
    for given, attempt in zip(rows, found, strict=True):
        for name in delivery.ATTEMPT_COLUMNS:
            value = getattr(attempt, name)
            if name == "request":
                request = given["request"]
                assert value == (json.loads(request) if isinstance(request, str) else request)
            else:
                assert value == given[name], name
    if rt.db.is_postgresql:  # the record's text is kept as written (a json column), escapes and all
        with rt.db.engine.connect() as connection:
            kept = connection.exec_driver_sql(
                "SELECT request::text FROM attempts WHERE action_id = %(id)s", {"id": ids[0]}
            ).scalar()
        assert kept == record


def test_an_attempt_whose_outcome_is_too_long_for_its_column_is_refused_not_cut(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    [action_id] = add_actions(rt, tenant, integration_id, customers(1))
    row = {
        "action_id": action_id,
        "store_id": tenant.store.id,
        "number": 1,
        "started_at": datetime.now(UTC),
        "duration_ms": 1,
        "outcome": "x" * 17,  # String(16)
        "http_status": None,
        "error": None,
        "request": "{}",
        "response": None,
        "next_attempt_at": None,
    }
    if not rt.db.is_postgresql:
        pytest.skip("SQLite keeps any length")
    with pytest.raises(Exception, match="too long"), rt.db.transaction() as session:
        delivery.insert_attempts(session, [row])
    assert attempts(rt) == []


def test_the_workers_read_gives_its_times_in_utc_whatever_the_sessions_time_zone(rt: Runtime, tenant: Tenant) -> None:
    integration_id = connect_klaviyo(rt, tenant)
    ids = add_actions(rt, tenant, integration_id, customers(2))
    dispatch_once(rt)
    [lease] = {a.lease_token for a in actions(rt)}
    stored = {a.id: a for a in actions(rt)}

    with rt.db.transaction() as session:
        if rt.db.is_postgresql:
            session.execute(sql("SET LOCAL TIME ZONE 'Asia/Kolkata'"))
        rows = outbox.read_for_delivery(session, ids, lease, rt.config.lease_seconds)

    assert sorted(r.id for r in rows) == ids
    for row in rows:
        action = stored[row.id]
        assert row.scheduled_at.tzinfo is UTC and row.run_at.tzinfo is UTC
        assert (row.scheduled_at, row.run_at) == (action.scheduled_at, action.run_at)
        assert (row.payload, row.target, row.store_id, row.integration_id, row.trigger) == (
            action.payload,
            action.target,
            action.store_id,
            action.integration_id,
            action.trigger,
        )


def test_a_claim_refuses_a_moment_without_a_time_zone(rt: Runtime) -> None:
    with pytest.raises(ValueError, match="naive"):
        outbox.claim_due(rt.db, 10, rt.config.lease_seconds, at=datetime(2030, 1, 1))


def test_the_batch_key_of_an_events_record_is_written_as_json_text_writes_it() -> None:
    connector = KlaviyoConnector()
    settings = {"api_key": KEY, "base_url": "https://a.klaviyo.com"}
    splice = splice_of(connector, settings)
    assert splice is not None
    recorder = Recorder(splice.request)
    body = splice.body([json_text({"type": "event-bulk-create", "key": KEY})])
    for events, position, same_key_as in [(1000, 0, None), (3, 2, 7), (1, 0, 2**62), (250, 249, 1)]:
        batch = {"events": events, "position": position}
        if same_key_as is not None:
            batch["same_key_as"] = same_key_as
        members = delivery.batch_members(events, position, same_key_as)
        assert members == json_text({"batch": batch})[1:-1]
        assert recorder.text_of(body, members) == recorder.text(body, {"batch": batch})
        assert KEY not in recorder.text_of(body, members)
