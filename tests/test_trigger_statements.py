"""POST /triggers on PostgreSQL runs on an autocommit session (Database.statements): the look-ahead and one write
statement, each its own transaction, with no BEGIN or COMMIT round trip; an order stopper's cancellation and its
write still go together, in a transaction of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

import hub.api
from hub import flows, pgraw
from hub.models import Action, ActionState, Customer, Store, Trigger
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


def test_a_trigger_is_a_look_ahead_and_one_write_each_committed_on_its_own(
    api: Api, rt: Runtime, driver_statements: list[tuple[str, bool, Any]]
) -> None:
    connect_two_apps(api)
    api.post("/api/v1/triggers", json=order_trigger("0"))  # the token and the store's config are now cached
    driver_statements.clear()
    answer = api.post("/api/v1/triggers", json=order_trigger("1"))
    assert answer.status_code == 202 and len(answer.json["actions"]) == 2
    idle = psycopg.pq.TransactionStatus.IDLE
    assert driver_statements == [("SELECT", True, idle), ("WITH", True, idle)]  # no transaction was ever open
    with rt.db.session() as session:  # another connection sees all of it
        assert session.scalar(select(func.count()).select_from(Action).where(Action.order_id == "1")) == 2


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
    with pytest.raises(RuntimeError), rt.db.statements() as session:
        flows.ingest(session, session.scalars(select(Store)).one(), TriggerIn().load(cancel))
        session.commit()
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
    with rt.db.statements() as session:
        with pgraw.atomic(session):
            assert pgraw.driver(session).info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert pgraw.driver(session).info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with rt.db.session() as session:
        with pgraw.atomic(session):
            session.scalar(select(func.count()).select_from(Customer))
        assert session.in_transaction()  # left to the caller, who commits
        session.rollback()
