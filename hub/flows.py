"""Triggers become actions: match the store's enabled flows, one action per step and app."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.models import Action, ActionState, Actor, Customer, Flow, Integration, IntegrationState, Store, Trigger
from hub.stores import event_name
from schemas.events import EventPayload
from schemas.triggers import ORDER_STOPPERS

_payload_schema = EventPayload()


@dataclass
class Ingested:
    trigger: Trigger
    actions: list[Action]
    duplicate: bool
    cancelled: int = 0  # actions an order.cancelled / order.refunded trigger took out of the Queue


def idempotency_key(*parts: object) -> str:
    """Deterministic: the same trigger, step and app always give the same key, across retries and replays."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:40]


def dedupe_key(data: dict[str, Any], header_key: str | None) -> str:
    if header_key:
        return f"key:{header_key}"
    if data["type"] == "review.submitted" and data.get("review", {}).get("id"):
        return f"{data['type']}:{data['review']['id']}"
    if data.get("order", {}).get("id"):
        return f"{data['type']}:{data['order']['id']}"
    body = json.dumps(data, sort_keys=True, default=str)
    return f"body:{hashlib.sha256(body.encode()).hexdigest()}"


def upsert_customer(session: Session, store_id: int, data: dict[str, Any]) -> Customer:
    """Find the customer by external id, then email, then phone; create one if none matches."""
    clauses = []
    for key in ("external_id", "email", "phone"):
        if data.get(key):
            clauses.append(getattr(Customer, key) == data[key])
    customer = session.scalars(
        select(Customer).where(Customer.store_id == store_id, or_(*clauses)).order_by(Customer.id).limit(1)
    ).first()
    if customer is None:
        customer = Customer(store_id=store_id)
        session.add(customer)
    for key in ("email", "phone", "first_name", "last_name", "external_id"):
        if data.get(key):
            setattr(customer, key, data[key])
    session.flush()
    return customer


def target_of(customer: dict[str, Any]) -> dict[str, str]:
    return {k: customer[k] for k in ("email", "phone", "external_id") if customer.get(k)}


def event_properties(store: Store, data: dict[str, Any], flow: Flow | None) -> dict[str, Any]:
    properties: dict[str, Any] = {"store": store.name, "trigger": data["type"]}
    if flow is not None:
        properties["flow"] = flow.name
    order = data.get("order")
    if order:
        properties["order_id"] = order["id"]
        properties["items"] = [{k: (str(v) if k == "price" else v) for k, v in item.items()} for item in order["items"]]
    if data.get("review"):
        properties["review"] = dict(data["review"])
    return properties


def ingest(session: Session, store: Store, data: dict[str, Any], header_key: str | None = None) -> Ingested:
    """Record a trigger and create its actions, or return the ones created the first time it came."""
    key = dedupe_key(data, header_key)
    existing = _existing(session, store.id, key)
    if existing is not None:
        return existing
    occurred_at = data.get("occurred_at") or datetime.now(UTC)
    customer = upsert_customer(session, store.id, data["customer"])
    trigger = Trigger(
        store_id=store.id,
        type=data["type"],
        dedupe_key=key,
        order_id=(data.get("order") or {}).get("id"),
        customer_id=customer.id,
        occurred_at=occurred_at,
        payload=json.loads(json.dumps(data, default=str)),
    )
    session.add(trigger)
    try:
        session.flush()
    except IntegrityError:
        # The same trigger arrived concurrently and won the race: answer with what it created.
        session.rollback()
        found = _existing(session, store.id, key)
        if found is None:
            raise
        return found

    integrations = session.scalars(
        select(Integration).where(Integration.store_id == store.id, Integration.state != IntegrationState.DISCONNECTED)
    ).all()
    by_app = {i.app: i for i in integrations}
    flows = session.scalars(
        select(Flow).where(Flow.store_id == store.id, Flow.trigger == data["type"], Flow.enabled.is_(True))
    ).all()
    actions: list[Action] = []
    for flow in flows:
        for step in flow.steps:
            run_at = occurred_at + timedelta(seconds=step.delay_seconds)
            if step.kind != "event":
                # Native email/SMS steps are admitted by the model; their delivery comes with the messages issue.
                continue
            apps = [step.app] if step.app else sorted(by_app)
            for app in apps:
                integration = by_app.get(app)
                if integration is None:
                    continue
                action = new_event_action(
                    store,
                    integration,
                    name=step.event_name or "Event",
                    event_type=step.event_type or "event",
                    customer=data["customer"],
                    properties={**event_properties(store, data, flow), "trigger_occurred_at": occurred_at.isoformat()},
                    # The flow step's event happens when the step comes due, not when the order shipped: platforms
                    # judge an event's age by this time (Attentive ignores custom events older than 12 hours).
                    occurred_at=run_at,
                    run_at=run_at,
                    trigger="auto",
                    key=idempotency_key(store.id, key, step.id, app),
                )
                action.flow_id, action.step_id, action.trigger_id, action.customer_id = (
                    flow.id,
                    step.id,
                    trigger.id,
                    customer.id,
                )
                action.order_id = trigger.order_id
                actions.append(action)
    cancelled = stop_order(session, store.id, data["type"], trigger.order_id) if data["type"] in ORDER_STOPPERS else 0
    apply_guards(session, actions, {i.id: i for i in integrations})
    session.add_all(actions)
    session.flush()
    return Ingested(trigger=trigger, actions=actions, duplicate=False, cancelled=cancelled)


def apply_guards(session: Session, actions: list[Action], integrations: dict[int, Integration]) -> None:
    """Guards at scheduling: an action that must not go is created skipped, with the guard's reason; one due in
    the store's quiet hours is scheduled for their end."""
    from hub import guards

    results = guards.evaluate(
        session, [guards.Subject.of(a, key=n) for n, a in enumerate(actions)], integrations=integrations
    )
    for n, action in enumerate(actions):
        failed = guards.first_failure(results[n])
        if failed is not None and failed.until is not None:  # quiet hours: the flow's time moves to their end
            action.run_at = action.scheduled_at = failed.until
            action.reason_code, action.reason_text = failed.code, failed.text
        elif failed is not None and not failed.hold:
            action.state, action.reason_code, action.reason_text = ActionState.SKIPPED, failed.code, failed.text
            action.caused_by = Actor.RULE


def stop_order(session: Session, store_id: int, trigger_type: str, order_id: str | None) -> int:
    """An order was cancelled or refunded: what still waits for it is cancelled (by a rule)."""
    if not order_id:
        return 0
    word = trigger_type.split(".")[1]
    result = session.execute(
        update(Action)
        .where(
            Action.store_id == store_id,
            Action.order_id == order_id,
            Action.state.in_((ActionState.PENDING, ActionState.HELD)),
        )
        .values(
            state=ActionState.CANCELLED,
            reason_code=f"order_{word}",
            reason_text=f"order {order_id} was {word}",
            caused_by=Actor.RULE,
            updated_at=datetime.now(UTC),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount  # type: ignore[attr-defined,no-any-return]


def new_event_action(
    store: Store,
    integration: Integration,
    *,
    name: str,
    event_type: str,
    customer: dict[str, Any],
    properties: dict[str, Any],
    occurred_at: datetime,
    run_at: datetime,
    trigger: str,
    key: str | None = None,
    test: bool = False,
) -> Action:
    key = key or idempotency_key(store.id, "manual", uuid.uuid4().hex)
    full_name = event_name(store, name)
    payload = _payload_schema.dump(
        {
            "id": key,
            "name": full_name,
            "type": event_type,
            "occurred_at": occurred_at,
            "customer": {k: customer.get(k) for k in ("email", "phone", "first_name", "last_name", "external_id")},
            "properties": properties,
            "test": test,
        }
    )
    state, reason_code, reason_text = ActionState.PENDING, None, None
    if integration.state != IntegrationState.CONNECTED:
        state, reason_code, reason_text = hold_reason(integration)
    return Action(
        store_id=store.id,
        integration_id=integration.id,
        kind="event",
        app=integration.app,
        event_name=full_name,
        event_type=event_type,
        target=target_of(customer),
        trigger=trigger,
        state=state,
        reason_code=reason_code,
        reason_text=reason_text,
        scheduled_at=run_at,
        run_at=run_at,
        idempotency_key=key,
        payload=payload,
    )


def hold_reason(integration: Integration) -> tuple[ActionState, str, str]:
    if integration.state == IntegrationState.PAUSED:
        return ActionState.HELD, "integration_paused", f"{integration.app} is paused"
    return (
        ActionState.HELD,
        "integration_needs_attention",
        f"{integration.app} needs attention: {integration.last_error or 'its credentials were rejected'}",
    )


def _existing(session: Session, store_id: int, key: str) -> Ingested | None:
    trigger = session.scalars(select(Trigger).where(Trigger.store_id == store_id, Trigger.dedupe_key == key)).first()
    if trigger is None:
        return None
    actions = session.scalars(select(Action).where(Action.trigger_id == trigger.id).order_by(Action.id)).all()
    return Ingested(trigger=trigger, actions=list(actions), duplicate=True)
