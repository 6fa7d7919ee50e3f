"""Explain: why an action is where it is — its guards with the values they saw, its timing (trigger time
plus the step's delay, quiet hours, retries) and its attempts."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import audit, guards, quiet
from hub.models import Action, ActionState, Attempt, FlowStep, Store, Trigger

if TYPE_CHECKING:
    from hub.runtime import Runtime

WHEN = "%Y-%m-%d %H:%M UTC"


def summary(action: Action, retries_left: int | None) -> str:
    reason = action.reason_text or action.reason_code
    state = action.state
    if state == ActionState.PENDING:
        if action.attempt_count:
            return (
                f"Waiting to retry at {action.run_at:{WHEN}} after {action.attempt_count} attempt(s) "
                f"({reason}); {retries_left} retries left."
            )
        because = f" ({reason})" if reason else ""
        return f"Waiting in the Queue until {action.run_at:{WHEN}}{because}."
    if state == ActionState.HELD:
        return f"Held: {reason}. It goes out when the app is usable again (resume it, or fix its credentials)."
    if state in (ActionState.QUEUED, ActionState.SENDING):
        return (
            f"{state.capitalize()}: a worker has it (since {action.updated_at:{WHEN}}); it can no longer be cancelled."
        )
    if state == ActionState.DELIVERED:
        when = f" at {action.delivered_at:{WHEN}}" if action.delivered_at else ""
        return f"Delivered{when} after {action.attempt_count} attempt(s)."
    who = {"merchant": "by the merchant", "rule": "by a rule", "system": "by the system"}.get(
        action.caused_by or "", ""
    )
    return f"{state.capitalize()} {who}: {reason}.".replace("  ", " ")


def explain(rt: Runtime, session: Session, action: Action) -> dict[str, Any]:
    results = guards.evaluate(session, [guards.Subject.of(action)])[action.id]
    trigger = session.get(Trigger, action.trigger_id) if action.trigger_id else None
    step = session.get(FlowStep, action.step_id) if action.step_id else None
    attempts = session.scalars(select(Attempt).where(Attempt.action_id == action.id).order_by(Attempt.id)).all()
    schedule = rt.config.retry_schedule
    retries_left = max(len(schedule) - action.failure_count, 0)
    retrying = action.state == ActionState.PENDING and action.attempt_count > 0
    return {
        "id": action.id,
        "state": action.state,
        "summary": summary(action, retries_left),
        "reason_code": action.reason_code,
        "reason_text": action.reason_text,
        "caused_by": action.caused_by,
        # For an action still in the outbox these decide what happens next; for a settled one they show
        # how things stand now (the reason above is what decided it then).
        "guards": [{"code": r.code, "passed": r.passed, "text": r.text, "value": r.value} for r in results],
        "timing": {
            "trigger_time": trigger.occurred_at if trigger else None,
            "delay_seconds": step.delay_seconds if step else None,
            "scheduled_at": action.scheduled_at,
            "run_at": action.run_at,
            "quiet_hours": quiet_timing(session, action, results, trigger, step),
            "failures": action.failure_count,
            "retries_left": retries_left,
            "next_attempt_at": action.run_at if retrying else None,
            "rate_limited": action.rate_limited_count,
        },
        "attempts": attempts,
        "audit": audit.for_action(session, action.store_id, action.id),
    }


def quiet_timing(
    session: Session,
    action: Action,
    results: list[guards.GuardResult],
    trigger: Trigger | None,
    step: FlowStep | None,
) -> dict[str, Any] | None:
    """The store's quiet hours as they bear on this action: None when the store has none."""
    hours = quiet.QuietHours.of(session.get(Store, action.store_id))
    if hours is None:
        return None
    [guard] = [r for r in results if r.code == quiet.CODE]
    caps = guards.capabilities_of(action.app)
    bypass = quiet.bypass(action.trigger, action.ignore_quiet_hours)
    flow_time = trigger.occurred_at + timedelta(seconds=step.delay_seconds) if trigger and step else None
    # Moved when it was scheduled: the flow's time fell inside them, and the action was scheduled for their end.
    moved = flow_time is not None and hours.inside(flow_time) and action.scheduled_at == hours.end_after(flow_time)
    moved_from = flow_time if moved else None
    waiting = action.state == ActionState.PENDING and action.reason_code == quiet.CODE
    if moved_from is not None:
        text = (
            f"Due {hours.local(moved_from)} local, inside quiet hours ({hours.label}): "
            f"scheduled for {hours.local(action.scheduled_at)} instead."
        )
    elif waiting:
        text = f"Waiting for the store's quiet hours ({hours.label}) to end at {hours.local(action.run_at)} local."
    else:
        text = guard.text
    return {
        **quiet.describe(hours),  # type: ignore[dict-item]
        "timezone": hours.timezone,
        "applies": hours.governs(channel=action.channel, sms_app=bool(caps and caps.sms)) and bypass is None,
        "bypass": bypass,
        "moved_from": moved_from,
        "waiting_until": action.run_at if waiting else None,
        "text": text,
    }
