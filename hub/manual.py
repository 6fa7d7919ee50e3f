"""Manual test events: an action with trigger "manual", delivered at once on the fast path."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import integrations, outbox
from hub.dispatch import enqueue
from hub.flows import new_event_action
from hub.models import Action, ActionState, Flow, FlowStep, Store

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger(__name__)


def send_test_event(rt: Runtime, session: Session, store: Store, app: str, data: dict[str, Any]) -> Action:
    integration = integrations.get(session, store, app)
    at = outbox.now()
    action: Action = new_event_action(
        store,
        integration,
        name=data["event"],
        event_type="test",
        customer=data["target"],
        properties={"store": store.name, "test": True, **data["properties"]},
        occurred_at=at,
        run_at=at,
        trigger="manual",
        test=True,
    )
    return _send_now(rt, session, [action])[0]


def send_samples(rt: Runtime, session: Session, store: Store, app: str, target: dict[str, Any]) -> list[Action]:
    """One labelled sample of every event the store's flows send, so a merchant can build the platform's
    flows on those metrics before real traffic arrives. Names are the real ones; properties say "sample"."""
    integration = integrations.get(session, store, app)
    steps = session.execute(
        select(FlowStep.event_name, FlowStep.event_type, Flow.trigger)
        .join(Flow, Flow.id == FlowStep.flow_id)
        .where(Flow.store_id == store.id, FlowStep.kind == "event", (FlowStep.app.is_(None)) | (FlowStep.app == app))
        .order_by(Flow.id, FlowStep.position)
    ).all()
    at = outbox.now()
    actions: list[Action] = []
    for name, event_type, trigger in dict.fromkeys(steps):
        properties = {"store": store.name, "sample": True, "trigger": trigger, **SAMPLE_ORDER}
        if trigger == "review.submitted":
            properties["review"] = SAMPLE_REVIEW
        actions.append(
            new_event_action(
                store,
                integration,
                name=name or "Event",
                event_type=event_type or "event",
                customer={"first_name": "Sample", **target},
                properties=properties,
                occurred_at=at,
                run_at=at,
                trigger="manual",
                test=True,
            )
        )
    return _send_now(rt, session, actions)


SAMPLE_ORDER: dict[str, Any] = {
    "order_id": "sample-1001",
    "items": [
        {
            "product_id": "sample-p1",
            "name": "Sample Product",
            "url": "https://example.com/products/sample",
            "image_url": "https://example.com/images/sample.jpg",
            "price": "49.00",
            "currency": "USD",
        }
    ],
}
SAMPLE_REVIEW: dict[str, Any] = {"id": "sample-r1", "product_id": "sample-p1", "rating": 5, "title": "Sample review"}


def _send_now(rt: Runtime, session: Session, actions: list[Action]) -> list[Action]:
    """Store the actions and hand them straight to a worker (the fast path, not the dispatcher's poll)."""
    session.add_all(actions)
    session.flush()
    leases = {
        a.id: outbox.claim_one(session, a.id, rt.config.lease_seconds) if a.state == ActionState.PENDING else None
        for a in actions
    }
    claimed = [outbox.Claimed(a.id, a.integration_id, lease=leases[a.id]) for a in actions if leases[a.id]]
    session.commit()
    if claimed:
        try:
            enqueue(rt, claimed, at_front=True)
        except redis.RedisError:
            # The actions are claimed in the database: their leases run out and the dispatcher delivers them.
            log.warning("could not enqueue %d manual actions; the dispatcher will pick them up", len(claimed))
    for action in actions:
        session.refresh(action)
    return actions
