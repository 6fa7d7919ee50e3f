"""API GETs read through Database.reader: on PostgreSQL outside a transaction (no BEGIN, no ROLLBACK round trips),
while every other method keeps its one transaction (but POST /triggers: tests/test_trigger_statements.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from hub.models import ApiToken
from hub.runtime import Runtime
from tests.conftest import Api


@pytest.fixture
def autocommit_seen(rt: Runtime) -> Iterator[list[bool]]:
    """For each statement the API runs: whether its connection was in autocommit mode."""
    if not rt.db.is_postgresql:
        pytest.skip("the reader differs from a plain session on PostgreSQL only")
    seen: list[bool] = []

    def record(conn: Any, *_: Any) -> None:
        seen.append(conn.connection.dbapi_connection.autocommit)

    event.listen(rt.db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(rt.db.engine, "before_cursor_execute", record)


def test_a_get_runs_its_queries_outside_a_transaction_on_postgresql(api: Api, autocommit_seen: list[bool]) -> None:
    assert api.get("/api/v1/actions").status_code == 200
    assert autocommit_seen and all(autocommit_seen)


def test_a_post_still_runs_in_one_transaction(api: Api, autocommit_seen: list[bool]) -> None:
    assert api.post("/api/v1/suppressions", json={"value": "ada@example.com"}).status_code == 201
    assert autocommit_seen and not any(autocommit_seen)


def test_a_connection_lent_to_a_get_is_back_in_transaction_mode_for_the_next_post(
    api: Api, rt: Runtime, autocommit_seen: list[bool]
) -> None:
    rt.db.engine.pool.dispose()  # one pooled connection at a time from here: the GET's is the POST's
    assert api.get("/api/v1/integrations").status_code == 200
    read = len(autocommit_seen)
    assert api.post("/api/v1/suppressions", json={"value": "ada@example.com"}).status_code == 201
    assert autocommit_seen[read:] and not any(autocommit_seen[read:])
    with rt.db.engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False


def test_a_get_still_records_a_tokens_first_use(api: Api, rt: Runtime) -> None:
    with rt.db.session() as session:
        assert session.scalar(select(ApiToken.last_used_at)) is None
    assert api.get("/api/v1/integrations").status_code == 200
    with rt.db.session() as session:  # another connection sees it: the write was committed
        assert session.scalar(select(ApiToken.last_used_at)) is not None
