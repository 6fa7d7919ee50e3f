"""Rows written by hub.pgcopy (COPY in binary form on PostgreSQL, a multi-row INSERT elsewhere) read back as the values
given, and a value a column refuses is refused as an INSERT refuses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from hub import pgcopy
from hub.models import Customer, Trigger, table_of
from hub.runtime import Runtime
from tests.conftest import Tenant

ROWS = pgcopy.MIN_ROWS  # enough for COPY on PostgreSQL


def test_copied_rows_read_back_as_the_values_given_times_json_and_text_alike(rt: Runtime, tenant: Tenant) -> None:
    store_id = tenant.store.id
    berlin = timezone(timedelta(hours=1))
    when = datetime(2026, 3, 29, 1, 59, 59, 999_999, tzinfo=berlin)
    customers = [
        {
            "store_id": store_id,
            "email": f"zoë-{n}@example.com",
            "phone": None,
            "first_name": 'Ünal \\ tab\there "quoted" \u2028 new\nline',
            "last_name": None,
            "external_id": "x" * 200,
            "created_at": when + timedelta(microseconds=n),
            "updated_at": datetime(1999, 12, 31, 23, 0, tzinfo=UTC),
        }
        for n in range(ROWS)
    ]
    payload = {
        "type": "order.fulfilled",
        "note": "ça \u0001 \\u0000-free 🎉",
        "n": 12345678901234,
        "l": [1, None, True],
    }
    with rt.db.transaction() as session:
        customer_ids = pgcopy.insert_rows(session, table_of(Customer), customers)
        triggers = [
            (store_id, "order.fulfilled", f"key-{n}", f"o-{n}", customer_ids[n], when, pgcopy.json_text(payload), when)
            for n in range(ROWS)
        ]
        names = ("store_id", "type", "dedupe_key", "order_id", "customer_id", "occurred_at", "payload", "created_at")
        trigger_ids = pgcopy.insert_tuples(session, table_of(Trigger), names, triggers, json_text=("payload",))

    with rt.db.session() as session:
        stored = session.scalars(select(Customer).order_by(Customer.id)).all()
        assert [c.id for c in stored] == customer_ids
        for given, row in zip(customers, stored, strict=True):
            assert {k: getattr(row, k) for k in given} == given
        stored_triggers = session.scalars(select(Trigger).order_by(Trigger.id)).all()
        assert [t.id for t in stored_triggers] == trigger_ids
        for given, row in zip(triggers, stored_triggers, strict=True):
            values: dict[str, Any] = dict(zip(names, given, strict=True))
            values["payload"] = payload
            assert {k: getattr(row, k) for k in names} == values


def test_a_value_too_long_for_its_column_is_refused_not_cut(rt: Runtime, tenant: Tenant) -> None:
    if not rt.db.is_postgresql:
        pytest.skip("SQLite does not enforce a VARCHAR's length")
    now = datetime.now(UTC)
    rows = [
        {"store_id": tenant.store.id, "email": f"c{n}@example.com", "external_id": "x" * (201 if n == 7 else 200)}
        for n in range(ROWS)
    ]
    with pytest.raises(Exception, match="too long"), rt.db.transaction() as session:
        pgcopy.insert_rows(session, table_of(Customer), [{**r, "created_at": now, "updated_at": now} for r in rows])
    with rt.db.session() as session:
        assert session.scalars(select(Customer.id)).all() == []
