"""Customers: their suppressions (who must not be contacted, on which channel) and their timeline."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.models import Action, Attempt, AuditEntry, Customer, Suppression, Trigger
from hub.operations import OperationError, find_in_store


def normalise(value: str) -> str:
    value = value.strip()
    return value.lower() if "@" in value else value


def suppress(session: Session, store_id: int, data: dict[str, Any]) -> Suppression:
    row = Suppression(store_id=store_id, value=normalise(data["value"]), channel=data["channel"], reason=data["reason"])
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise OperationError(
            409,
            f"{data['value']} is already suppressed for {data['channel']}.",
            fields={"value": ["Already suppressed."]},
        ) from None
    return row


def unsuppress(session: Session, store_id: int, suppression_id: int) -> None:
    session.delete(find_in_store(session, Suppression, store_id, suppression_id, "suppression"))


def find(session: Session, store_id: int, customer_id: int) -> Customer:
    return find_in_store(session, Customer, store_id, customer_id, "customer")


def timeline(session: Session, store_id: int, customer: Customer) -> list[dict[str, Any]]:
    """Everything that happened to one customer, oldest first: triggers, actions, attempts (the events and
    messages sent) and the manual operations on those actions."""
    items: list[dict[str, Any]] = []
    triggers = session.scalars(
        select(Trigger).where(Trigger.store_id == store_id, Trigger.customer_id == customer.id)
    ).all()
    for t in triggers:
        items.append(
            {
                "at": t.occurred_at,
                "type": "trigger",
                "summary": f"{t.type}" + (f" for order {t.order_id}" if t.order_id else ""),
                "trigger_id": t.id,
                "action_id": None,
                "details": {"type": t.type, "order_id": t.order_id},
            }
        )
    actions = session.scalars(
        select(Action).where(Action.store_id == store_id, Action.customer_id == customer.id)
    ).all()
    by_id = {a.id: a for a in actions}
    for a in actions:
        what = a.event_name or a.channel or a.kind
        items.append(
            {
                "at": a.created_at,
                "type": "action",
                "summary": f"{a.kind} {what!r} to {a.app or a.channel}, due {a.run_at:%Y-%m-%d %H:%M} UTC: {a.state}"
                + (f" ({a.reason_text})" if a.reason_text else ""),
                "trigger_id": a.trigger_id,
                "action_id": a.id,
                "details": {"state": a.state, "kind": a.kind, "app": a.app, "reason_code": a.reason_code},
            }
        )
    if by_id:
        for attempt in session.scalars(select(Attempt).where(Attempt.action_id.in_(by_id))).all():
            action = by_id[attempt.action_id]
            items.append(
                {
                    "at": attempt.started_at,
                    "type": "message" if action.kind == "message" else "event",
                    "summary": f"attempt {attempt.number} to {action.app or action.channel}: {attempt.outcome}"
                    + (f" (HTTP {attempt.http_status})" if attempt.http_status else ""),
                    "trigger_id": action.trigger_id,
                    "action_id": action.id,
                    "details": {
                        "outcome": attempt.outcome,
                        "http_status": attempt.http_status,
                        "duration_ms": attempt.duration_ms,
                    },
                }
            )
        for entry in session.scalars(
            select(AuditEntry).where(AuditEntry.store_id == store_id, AuditEntry.action_id.in_(by_id))
        ).all():
            items.append(
                {
                    "at": entry.created_at,
                    "type": "operation",
                    "summary": f"{entry.operation} by {entry.actor}",
                    "trigger_id": None,
                    "action_id": entry.action_id,
                    "details": entry.details,
                }
            )
    order = {"trigger": 0, "action": 1, "operation": 2, "event": 3, "message": 3}
    items.sort(key=lambda i: (i["at"], order[i["type"]]))
    return items
