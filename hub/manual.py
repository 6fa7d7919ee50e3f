"""Manual test events: an action with trigger "manual", delivered at once on the fast path."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy.orm import Session

from hub import integrations, outbox
from hub.dispatch import enqueue
from hub.flows import new_event_action
from hub.models import Action, ActionState, Store

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger(__name__)


def send_test_event(rt: Runtime, session: Session, store: Store, app: str, data: dict[str, Any]) -> Action:
    integration = integrations.get(session, store, app)
    at = outbox.now()
    action = new_event_action(
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
    session.add(action)
    session.flush()
    claimed = action.state == ActionState.PENDING and outbox.claim_one(session, action.id, rt.config.lease_seconds)
    session.commit()
    if claimed:
        try:
            enqueue(rt, [outbox.Claimed(action.id, action.integration_id)], at_front=True)
        except redis.RedisError:
            # The action is claimed in the database: its lease runs out and the dispatcher delivers it.
            log.warning("could not enqueue test event %s; the dispatcher will pick it up", action.id)
    session.refresh(action)
    return action
