"""References of actions and triggers kept by triggers (hub.cascades): deleting what an action or a trigger points to
clears the reference and keeps the row, as ON DELETE SET NULL did; deleting a store still takes its actions and
triggers. Both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, select

from hub.models import Action, Customer, Flow, FlowStep, Integration, Store, Trigger
from hub.runtime import Runtime
from tests.conftest import Api
from tests.test_outbox import pending_action, sandbox

REFERENCES = ("flow_id", "step_id", "trigger_id", "customer_id", "integration_id")


def references(rt: Runtime, action_id: int) -> dict[str, Any]:
    with rt.db.session() as session:
        row = session.execute(select(*(getattr(Action, name) for name in REFERENCES)).where(Action.id == action_id))
        return dict(zip(REFERENCES, row.one(), strict=True))


@pytest.mark.parametrize(
    ("model", "column", "cleared"),
    [
        (Flow, "flow_id", {"flow_id", "step_id"}),  # its steps go with it (their own foreign key's cascade)
        (FlowStep, "step_id", {"step_id"}),
        (Trigger, "trigger_id", {"trigger_id"}),
        (Customer, "customer_id", {"customer_id"}),
        (Integration, "integration_id", {"integration_id"}),
    ],
)
def test_deleting_what_an_action_points_to_clears_that_reference_and_keeps_the_action(
    api: Api, rt: Runtime, model: Any, column: str, cleared: set[str]
) -> None:
    sandbox(api)
    action = pending_action(api, "1001")
    other = pending_action(api, "1002", "grace@example.com")
    before, other_before = references(rt, action["id"]), references(rt, other["id"])
    assert all(before.values()), before

    with rt.db.transaction() as session:
        session.execute(delete(model).where(model.id == before[column]))

    # What pointed to the deleted row (or to its steps) is cleared; the rest stays, the other order's own trigger and
    # customer included.
    assert references(rt, action["id"]) == {n: None if n in cleared else v for n, v in before.items()}
    assert references(rt, other["id"]) == {
        n: None if n in cleared and v == before[n] else v for n, v in other_before.items()
    }


def test_deleting_a_customer_clears_the_customer_of_their_triggers_and_keeps_the_triggers(
    api: Api, rt: Runtime
) -> None:
    sandbox(api)
    action = pending_action(api, "1001")
    other = pending_action(api, "1002", "grace@example.com")
    customer_id = references(rt, action["id"])["customer_id"]

    with rt.db.transaction() as session:
        session.execute(delete(Customer).where(Customer.id == customer_id))

    with rt.db.session() as session:
        customers: dict[Any, Any] = dict(session.execute(select(Trigger.order_id, Trigger.customer_id)).all())
    assert customers == {"1001": None, "1002": references(rt, other["id"])["customer_id"]}
    assert customers["1002"] is not None


def test_a_deleted_store_still_takes_its_actions_and_triggers(api: Api, rt: Runtime) -> None:
    sandbox(api)
    pending_action(api, "1001")

    with rt.db.transaction() as session:
        session.execute(delete(Store).where(Store.id == api.tenant.store.id))

    with rt.db.session() as session:
        assert session.scalars(select(Action.id)).all() == []
        assert session.scalars(select(Trigger.id)).all() == []
        assert session.scalars(select(Customer.id)).all() == []
