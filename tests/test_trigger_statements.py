"""POST /triggers on PostgreSQL runs on an autocommit session (Database.statements), with no BEGIN or COMMIT round
trip. With the store's config cached, a trigger is one statement that reads ahead and writes only when what it reads
allows it; otherwise (the first trigger of a process, a changed config, a duplicate, a suppression, an earlier
action for the order...) it wrote nothing and the look-ahead's answer leads to the usual path: the guards' lookups
and one write statement. An order stopper's cancellation and its write still go together, in a transaction of
their own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

import hub.api
import hub.db
from hub import flows, pgraw
from hub.models import Action, ActionState, Customer, Integration, Store, Trigger
from hub.runtime import Runtime
from schemas.triggers import TriggerIn
from tests.conftest import Api
from tests.test_triggers import connect_two_apps, order_trigger


@pytest.fixture
def driver_statements(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, bool, Any]]]:
    """Every statement sent through psycopg: its first word, whether its connection was in autocommit mode, and the
    connection's transaction status just before."""
    if not rt.db.is_postgresql:
        pytest.skip("SQLite keeps its one transaction per trigger")
    seen: list[tuple[str, bool, Any]] = []
    execute = psycopg.Cursor.execute

    def record(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        connection = cursor.connection
        seen.append((str(query).split(None, 1)[0].upper(), connection.autocommit, connection.info.transaction_status))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", record)
    yield seen


IDLE = psycopg.pq.TransactionStatus.IDLE


def words(statements: list[tuple[str, bool, Any]]) -> list[str]:
    return [word for word, _, _ in statements]


def count(rt: Runtime, model: Any) -> int:
    with rt.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_trigger_is_one_statement_that_reads_ahead_and_writes_committed_on_its_own(
    api: Api, rt: Runtime, driver_statements: list[tuple[str, bool, Any]]
) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("0"))  # the token and the store's config are now cached
    driver_statements.clear()
    answer = api.post("/api/v1/triggers", json=order_trigger("1"))
    assert answer.status_code == 202 and len(answer.json["actions"]) == 2
    assert driver_statements == [("WITH", True, IDLE)]  # no transaction was ever open
    with rt.db.session() as session:  # another connection sees all of it
        trigger = session.get(Trigger, answer.json["id"])
        assert trigger is not None and trigger.customer_id is not None
        actions = session.scalars(select(Action).where(Action.order_id == "1").order_by(Action.id)).all()
        assert [a.id for a in actions] == [a["id"] for a in answer.json["actions"]]
        assert {(a.trigger_id, a.customer_id) for a in actions} == {(trigger.id, trigger.customer_id)}
        # The first trigger took the usual path: both stored the same payload, customer and kind of actions.
        first = session.scalars(select(Trigger).where(Trigger.order_id == "0")).one()
        assert trigger.payload == {**first.payload, "order": {**first.payload["order"], "id": "1"}}
        assert trigger.customer_id == first.customer_id
        earlier = session.scalars(select(Action).where(Action.order_id == "0").order_by(Action.id)).all()
        same = ("state", "app", "event_name", "target", "run_at", "scheduled_at", "kind", "trigger", "flow_id")
        assert [[getattr(a, k) for k in same] for a in actions] == [[getattr(a, k) for k in same] for a in earlier]
        assert [a.payload["properties"] for a in actions] == [
            {**a.payload["properties"], "order_id": "1"} for a in earlier
        ]


def test_the_first_trigger_of_a_process_reads_ahead_and_then_writes(
    api: Api, rt: Runtime, driver_statements: list[tuple[str, bool, Any]]
) -> None:
    connect_two_apps(api)
    driver_statements.clear()
    answer = api.post("/api/v1/triggers", json=order_trigger("1"))
    assert answer.status_code == 202 and len(answer.json["actions"]) == 2
    # The token, the look-ahead, the store's config: nothing cached to fold with. Then the write, on its own.
    assert "SELECT" in words(driver_statements) and words(driver_statements).index("WITH") == len(driver_statements) - 1
    assert driver_statements[-1] == ("WITH", True, IDLE)


def test_a_trigger_after_a_config_change_writes_with_the_new_config(
    api: Api, rt: Runtime, driver_statements: list[tuple[str, bool, Any]]
) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("0"))
    with rt.db.transaction() as session:  # another process pauses an app: the cached config is out of date
        session.execute(update(Integration).where(Integration.app == "sandbox").values(state="paused"))
    driver_statements.clear()
    answer = api.post("/api/v1/triggers", json=order_trigger("1"))
    assert answer.status_code == 202
    states = {a["app"]: (a["state"], a["reason_code"]) for a in answer.json["actions"]}
    assert states == {"sandbox": ("held", "integration_paused"), "webhook": ("pending", None)}
    # The folded statement wrote nothing; the config is loaded again, then the usual write.
    assert words(driver_statements)[0] == "WITH" and words(driver_statements)[-1] == "WITH"
    assert "SELECT" in words(driver_statements)
    assert count(rt, Trigger) == 2 and count(rt, Action) == 4 and count(rt, Customer) == 1


@pytest.mark.parametrize(
    ("first", "again", "headers"),
    [
        (order_trigger("9"), order_trigger("9"), {}),
        (order_trigger("9"), order_trigger("10"), {"Idempotency-Key": "k-1"}),
        (
            {**order_trigger("9"), "type": "review.submitted", "review": {"id": "r-1", "rating": 5}},
            {**order_trigger("10"), "type": "review.submitted", "review": {"id": "r-1", "rating": 4}},
            {},
        ),
    ],
    ids=["order", "idempotency key", "review"],
)
def test_a_duplicate_through_the_folded_statement_answers_200_with_the_first_actions(
    api: Api,
    rt: Runtime,
    driver_statements: list[tuple[str, bool, Any]],
    first: dict[str, Any],
    again: dict[str, Any],
    headers: dict[str, str],
) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("0"))  # the store's config is cached
    created = api.post("/api/v1/triggers", json=first, headers=headers)
    assert created.status_code == 202
    driver_statements.clear()
    answer = api.post("/api/v1/triggers", json=again, headers=headers)
    assert answer.status_code == 200 and answer.json["duplicate"] is True
    assert answer.json["id"] == created.json["id"] and answer.json["actions"] == created.json["actions"]
    assert words(driver_statements)[0] == "WITH" and "WITH" not in words(driver_statements)[1:]
    assert count(rt, Trigger) == 2


def test_a_suppressed_customer_is_written_by_the_usual_path_with_its_actions_skipped(
    api: Api, rt: Runtime, driver_statements: list[tuple[str, bool, Any]]
) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("0", customer={"email": "bo@example.com"}))
    api.post("/api/v1/suppressions", json={"value": "ada@example.com"})
    driver_statements.clear()
    answer = api.post("/api/v1/triggers", json=order_trigger("1"))
    assert answer.status_code == 202
    assert {(a["state"], a["reason_code"]) for a in answer.json["actions"]} == {("skipped", "unsubscribed")}
    # Written nothing the first time; the suppressions are read, then the write.
    assert words(driver_statements) == ["WITH", "SELECT", "WITH"]
    assert count(rt, Trigger) == 2 and count(rt, Action) == 4 and count(rt, Customer) == 2


def test_a_second_action_for_the_same_order_is_skipped_as_a_duplicate_through_the_usual_path(
    api: Api, rt: Runtime, driver_statements: list[tuple[str, bool, Any]]
) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("1"))
    driver_statements.clear()
    answer = api.post("/api/v1/triggers", json=order_trigger("1"), headers={"Idempotency-Key": "another"})
    assert answer.status_code == 202
    assert {(a["state"], a["reason_code"]) for a in answer.json["actions"]} == {("skipped", "duplicate")}
    assert words(driver_statements) == ["WITH", "SELECT", "WITH"]


def test_the_folded_statement_updates_a_known_customer_only_with_what_is_new(api: Api, rt: Runtime) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("the folded statement is PostgreSQL's")
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("0"))
    with rt.db.session() as session:
        before = session.scalars(select(Customer)).one()
    assert api.post("/api/v1/triggers", json=order_trigger("1")).status_code == 202  # nothing new about Ada
    with rt.db.session() as session:
        same = session.scalars(select(Customer)).one()
        assert same.updated_at == before.updated_at
    renamed = order_trigger("2", customer={"email": "ada@example.com", "last_name": "Lovelace"})
    answer = api.post("/api/v1/triggers", json=renamed)
    assert answer.status_code == 202
    with rt.db.session() as session:
        customer = session.scalars(select(Customer)).one()
        assert (customer.first_name, customer.last_name, customer.phone) == ("Ada", "Lovelace", "+14155550123")
        assert customer.updated_at > before.updated_at
        trigger = session.get(Trigger, answer.json["id"])
        assert trigger is not None and trigger.customer_id == customer.id


def test_a_trigger_whose_folded_write_loses_the_race_answers_with_the_winners_actions(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("the folded statement is PostgreSQL's")
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("0"))  # the store's config is cached
    data = order_trigger("race-3")
    lost: list[str] = []
    real_race_lost = flows._race_lost

    def race_lost(*args: Any, **kwargs: Any) -> Any:
        lost.append("lost")
        return real_race_lost(*args, **kwargs)

    monkeypatch.setattr(flows, "_race_lost", race_lost)
    winner = rt.db.session()
    won = flows.ingest(winner, winner.scalars(select(Store)).one(), TriggerIn().load(data))  # not committed yet
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(api.post("/api/v1/triggers", json=data)))
    thread.start()
    with rt.db.engine.connect() as watcher:  # the loser's statement waits on the winner's trigger row
        for _ in range(600):
            waiting = watcher.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'WITH%'")
            )
            watcher.rollback()
            if waiting:
                break
            thread.join(0.05)
    winner.commit()
    winner.close()
    thread.join()
    assert lost == ["lost"]
    assert answers[0].status_code == 200 and answers[0].json["duplicate"] is True
    assert [a["id"] for a in answers[0].json["actions"]] == [a.id for a in won.actions]
    assert count(rt, Trigger) == 2 and count(rt, Action) == 4 and count(rt, Customer) == 1


def test_the_connection_a_trigger_used_is_back_in_transaction_mode(api: Api, rt: Runtime) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("autocommit is PostgreSQL's")
    rt.db.engine.pool.dispose()  # one pooled connection at a time from here: the trigger's is the next one's
    assert api.post("/api/v1/triggers", json=order_trigger()).status_code == 202
    with rt.db.engine.connect() as conn:
        assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]


def test_a_trigger_served_from_the_token_cache_opens_no_request_session(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.post("/api/v1/triggers", json=order_trigger("0"))  # the token's first use is written, and it is cached
    opened: list[str] = []
    real = hub.api.db_session

    def db_session() -> Any:
        opened.append("session")
        return real()

    monkeypatch.setattr(hub.api, "db_session", db_session)
    assert api.post("/api/v1/triggers", json=order_trigger("1")).status_code == 202
    assert opened == []


def test_an_order_stopper_cancels_in_the_same_transaction_as_its_write(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("7"))
    real_write = flows._write_pg if rt.db.is_postgresql else flows.insert_actions

    def failing_write(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the write failed after the cancellation")

    monkeypatch.setattr(flows, "_write_pg" if rt.db.is_postgresql else "insert_actions", failing_write)
    cancel = order_trigger("7", type="order.cancelled")
    with pytest.raises(RuntimeError), rt.db.statements() as work:
        flows.ingest(work, work.session.scalars(select(Store)).one(), TriggerIn().load(cancel))
        work.commit()
    with rt.db.session() as session:  # the cancellation went with the failed write
        states = session.scalars(select(Action.state).where(Action.order_id == "7")).all()
        assert states and set(states) == {ActionState.PENDING}
        assert session.scalar(select(func.count()).select_from(Trigger)) == 1

    monkeypatch.setattr(flows, "_write_pg" if rt.db.is_postgresql else "insert_actions", real_write)
    answer = api.post("/api/v1/triggers", json=cancel)
    assert answer.status_code == 202 and answer.json["cancelled"] == 2
    with rt.db.session() as session:
        states = session.scalars(select(Action.state).where(Action.order_id == "7")).all()
        assert set(states) == {ActionState.CANCELLED}
        assert session.scalar(select(func.count()).select_from(Trigger)) == 2


def test_atomic_opens_a_transaction_only_on_an_autocommit_session(rt: Runtime) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("the driver connection is psycopg's")
    with rt.db.statements() as work:
        session = work.session
        with pgraw.atomic(session):
            assert pgraw.driver(session).info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert pgraw.driver(session).info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with rt.db.session() as session:
        with pgraw.atomic(session):
            session.scalar(select(func.count()).select_from(Customer))
        assert session.in_transaction()  # left to the caller, who commits
        session.rollback()


def test_numbered_gives_each_positional_placeholder_its_number_in_order() -> None:
    sql = "INSERT INTO t (a, b) VALUES (%s::integer, %s::text), (%s::integer, %s)"
    assert pgraw.numbered(sql) == "INSERT INTO t (a, b) VALUES ($1::integer, $2::text), ($3::integer, $4)"


def test_numbered_refuses_a_text_that_psycopg_would_have_unescaped() -> None:
    with pytest.raises(ValueError, match="only %s placeholders"):
        pgraw.numbered("SELECT 'a%%' LIKE %s")


def test_a_trigger_the_folded_statement_wrote_makes_no_session(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("the folded statement is PostgreSQL's")
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("0"))  # the token and the store's config are now cached
    made: list[Session] = []
    real = hub.db.Session

    def session(*args: Any, **kwargs: Any) -> Session:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(hub.db, "Session", session)
    assert api.post("/api/v1/triggers", json=order_trigger("1")).status_code == 202
    assert made == []
    # One the folded statement did not write (a duplicate) reads on: through a session on the same connection.
    again = api.post("/api/v1/triggers", json=order_trigger("1"))
    assert again.status_code == 200 and again.json["duplicate"] is True
    assert len(made) == 1 and made[0].info[hub.db.DRIVER] is not None


def test_the_folded_statement_goes_through_one_cursor_kept_with_its_connection(api: Api, rt: Runtime) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("the folded statement is PostgreSQL's")
    connect_two_apps(api)
    rt.db.engine.pool.dispose()  # one pooled connection at a time from here: each trigger's is the next one's
    api.post("/api/v1/triggers", json=order_trigger("0"))  # the token and the store's config are now cached
    cursors = []
    for order in ("1", "2"):
        assert api.post("/api/v1/triggers", json=order_trigger(order)).status_code == 202
        with rt.db.engine.connect() as conn:
            cursors.append(conn.connection.info[pgraw.RAW_CURSOR])
            assert cursors[-1].connection is conn.connection.driver_connection
    assert cursors[0] is cursors[1] and not cursors[0].closed


def test_a_raw_insert_refuses_a_value_longer_than_its_column_instead_of_cutting_it(rt: Runtime) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("the raw statements are PostgreSQL's")
    from hub.stores import create_store

    with rt.db.transaction() as session:
        store_id = create_store(session, "Long values").id
    columns = ("store_id", "email", "created_at", "updated_at")
    sql = pgraw.insert_values(Customer.__table__, columns)
    assert "VARCHAR(" not in sql  # an explicit cast to VARCHAR(n) would cut the value silently
    email = "a" * 400 + "@example.com"  # the column holds 320
    now = datetime.now(UTC)
    with rt.db.session() as session, pytest.raises(psycopg.errors.StringDataRightTruncation):
        pgraw.driver(session).execute(sql, (store_id, email, now, now))
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Customer).where(Customer.store_id == store_id)) == 0


def test_the_folded_statement_casts_no_value_to_a_bounded_string() -> None:
    statement = flows._fold_statement(("email",), True, ("email", "first_name"), 2)
    assert "VARCHAR(" not in statement.sql
