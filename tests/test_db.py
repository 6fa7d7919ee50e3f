"""The connection pool on PostgreSQL: no query per checkout, and still no failed request after the database
closed the pooled connections (a restart, an administrator terminating backends)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.pool import NullPool

from hub.runtime import Runtime
from tests.conftest import Api
from tests.test_triggers import order_trigger


@pytest.fixture
def postgresql(rt: Runtime) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("the pool's checkout check is PostgreSQL's")


def terminate_every_other_backend(rt: Runtime) -> int:
    """What a database restart does to the hub's pool: every connection to the test database is closed by the
    server. Waits until those backends are gone."""
    admin = create_engine(rt.db.engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            pids = (
                conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                .scalars()
                .all()
            )
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(200):  # bounded: at most 10 s
                left = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": list(pids)}
                ).scalar()
                if not left:
                    break
                time.sleep(0.05)
    finally:
        admin.dispose()
    return len(pids)


def test_triggers_are_accepted_after_the_database_closed_every_pooled_connection(
    postgresql: None, api: Api, rt: Runtime
) -> None:
    connects: list[object] = []
    event.listen(rt.db.engine, "connect", lambda *_: connects.append(1))
    assert api.post("/api/v1/triggers", json=order_trigger("1")).status_code == 202
    assert terminate_every_other_backend(rt) >= 1
    before = len(connects)
    for n in range(2, 6):
        assert api.post("/api/v1/triggers", json=order_trigger(str(n))).status_code == 202
    assert len(connects) > before  # the closed connection was replaced at checkout, not used and failed


def test_checking_out_a_pooled_connection_sends_no_ping(
    postgresql: None, api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.post("/api/v1/triggers", json=order_trigger("1"))
    pings: list[object] = []
    monkeypatch.setattr(rt.db.engine.dialect, "do_ping", lambda connection: pings.append(connection) or True)
    for n in range(2, 4):
        assert api.post("/api/v1/triggers", json=order_trigger(str(n))).status_code == 202
    assert pings == []


@pytest.mark.parametrize(
    "values",
    [["a", 'b"c', "d\\e", "", " x ", "NULL", "{}", "a,b", "é"], [1, 2, 3], [], ["only"]],
)
def test_an_array_sent_as_text_reads_back_as_the_values_it_was_made_of(
    rt: Runtime, postgresql: None, values: list[Any]
) -> None:
    from hub.db import array_text

    kind = "bigint" if values and type(values[0]) is int else "text"
    with rt.db.session() as session:
        assert session.scalar(text(f"SELECT CAST(:values AS {kind}[])"), {"values": array_text(values)}) == values


def test_only_strings_and_integers_are_sent_as_text() -> None:
    from hub.db import array_text

    assert array_text([True]) is None and array_text([1.5]) is None and array_text(["a", 1]) is None


def test_any_of_does_not_match_a_stored_value_that_a_longer_one_only_begins_with(rt: Runtime, postgresql: None) -> None:
    from hub.db import any_of
    from hub.models import Customer
    from hub.stores import create_store

    stored = "a" * 308 + "@example.com"  # as long as the column allows (320)
    with rt.db.transaction() as session:
        store = create_store(session, "Any of")
        session.add(Customer(store_id=store.id, email=stored))
    with rt.db.session() as session:
        found = select(Customer.email).where(any_of(Customer.email, [stored], "postgresql"))
        assert session.scalars(found).all() == [stored]
        longer = select(Customer.email).where(any_of(Customer.email, [stored + "x", "b"], "postgresql"))
        assert session.scalars(longer).all() == []
