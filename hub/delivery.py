"""Deliver claimed actions: guards, connector, one HTTP call, classification, attempt + state together."""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from connectors import registry
from connectors.base import Connector, Customer, Event, Outcome, OutcomeKind, Request, SkipEvent
from connectors.http import TransportError, redact
from hub import outbox
from hub.flows import hold_reason
from hub.models import Action, ActionState, Attempt, Integration, IntegrationState
from schemas.events import EventPayload

if TYPE_CHECKING:
    import requests

    from hub.runtime import Runtime

log = logging.getLogger(__name__)
_payload_schema = EventPayload()

RESPONSE_EXCERPT = 2000
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE = re.compile(r"\+\d{7,15}")


def scrub(text: str, limit: int = RESPONSE_EXCERPT) -> str:
    """A platform's answer as we keep it: e-mail addresses and phone numbers removed, truncated."""
    text = _PHONE.sub("[phone]", _EMAIL.sub("[email]", text))
    return text if len(text) <= limit else text[:limit] + "…"


def event_from_payload(payload: Mapping[str, Any]) -> Event:
    data = _payload_schema.load(payload)
    return Event(
        id=data["id"],
        name=data["name"],
        type=data["type"],
        occurred_at=data["occurred_at"],
        customer=Customer(**data["customer"]),
        properties=data["properties"],
        test=data["test"],
    )


def connector_settings(rt: Runtime, integration: Integration) -> dict[str, Any]:
    return {**integration.settings, **rt.box.decrypt(integration.credentials)}


def deliver_batch(rt: Runtime, action_ids: list[int]) -> dict[str, int]:
    """Deliver the queued actions among ``action_ids``; the ones another worker holds are left alone."""
    with rt.db.transaction() as session:
        leases = outbox.claim_for_delivery(session, action_ids, rt.config.lease_seconds)
    if not leases:
        return {}
    with rt.db.session() as session:
        actions = session.scalars(select(Action).where(Action.id.in_(leases)).order_by(Action.id)).all()
        integration_ids = {a.integration_id for a in actions if a.integration_id is not None}
        integrations = {
            i.id: i for i in session.scalars(select(Integration).where(Integration.id.in_(integration_ids))).all()
        }
    tally: Counter[str] = Counter()
    for action in actions:
        integration = integrations.get(action.integration_id) if action.integration_id else None
        tally[deliver_one(rt, action, integration, leases[action.id])] += 1
    return dict(tally)


def deliver_one(rt: Runtime, action: Action, integration: Integration | None, lease: str) -> str:
    """Deliver one action this worker holds under ``lease``. Returns the state it ended in."""
    if integration is None or integration.state == IntegrationState.DISCONNECTED:
        return _finish(rt, action, lease, ActionState.SKIPPED, "integration_disconnected", "the app was disconnected")
    if integration.state != IntegrationState.CONNECTED:
        state, code, text = hold_reason(integration)
        return _finish(rt, action, lease, state, code, text)
    try:
        connector = registry.get(integration.app)
    except registry.UnknownConnector:
        return _finish(
            rt, action, lease, ActionState.FAILED, "unknown_app", f"no connector {integration.app!r} installed"
        )
    try:
        settings = connector_settings(rt, integration)
        request = connector.build_request(event_from_payload(action.payload), settings)
    except SkipEvent as skip:
        return _finish(rt, action, lease, ActionState.SKIPPED, skip.code, skip.message)
    except ValueError as error:
        return _finish(rt, action, lease, ActionState.FAILED, "bad_configuration", str(error))
    return _send(rt, action, integration, connector, request, lease)


def _send(
    rt: Runtime, action: Action, integration: Integration, connector: Connector, request: Request, lease: str
) -> str:
    started = outbox.now()
    clock = time.perf_counter()
    response: requests.Response | None = None
    error: TransportError | None = None
    try:
        response = rt.http.send(request)
    except TransportError as exc:
        error = exc
    duration_ms = int((time.perf_counter() - clock) * 1000)
    outcome = connector.classify(response, error)
    attempt = Attempt(
        action_id=action.id,
        store_id=action.store_id,
        number=action.attempt_count + 1,
        started_at=started,
        duration_ms=duration_ms,
        outcome=outcome.kind.value,
        http_status=response.status_code if response is not None else None,
        error=str(error) if error else (outcome.reason if outcome.kind != OutcomeKind.DELIVERED else None),
        request=redact(request),
        response=scrub(response.text) if response is not None else None,
    )
    state, values = _next_state(rt, action, outcome)
    attempt.next_attempt_at = values.get("run_at") if state == ActionState.PENDING else None  # type: ignore[assignment]
    with rt.db.transaction() as session:
        session.add(attempt)
        moved = outbox.transition(
            session,
            action.id,
            expected=ActionState.SENDING,
            lease_token=lease,
            state=state,
            attempt_count=Action.attempt_count + 1,
            last_status=attempt.http_status,
            lease_expires_at=None,
            **values,
        )
        if moved and outcome.kind == OutcomeKind.CREDENTIALS:
            _needs_attention(session, integration, outcome.reason)
    log.info(
        "attempt action=%s app=%s status=%s outcome=%s duration_ms=%s%s",
        action.id,
        integration.app,
        attempt.http_status,
        outcome.kind.value,
        duration_ms,
        "" if moved else " (lease lost: another worker owns this action now)",
    )
    return state.value if moved else "lease_lost"


def _next_state(rt: Runtime, action: Action, outcome: Outcome) -> tuple[ActionState, dict[str, Any]]:
    at = outbox.now()
    policy = rt.retry_policy
    if outcome.kind == OutcomeKind.DELIVERED:
        return ActionState.DELIVERED, {"delivered_at": at, "reason_code": None, "reason_text": None}
    if outcome.kind == OutcomeKind.RATE_LIMITED:
        count = action.rate_limited_count + 1
        if count > rt.config.max_rate_limited:
            return ActionState.FAILED, {
                "reason_code": "rate_limited",
                "reason_text": outcome.reason,
                "rate_limited_count": count,
            }
        delay = policy.rate_limited_delay(count, outcome.retry_after)
        return ActionState.PENDING, {
            "run_at": at + timedelta(seconds=delay),
            "rate_limited_count": count,
            "reason_code": "rate_limited",
            "reason_text": outcome.reason,
        }
    if outcome.kind == OutcomeKind.RETRY:
        failures = action.failure_count + 1
        delay = policy.delay(failures, outcome.retry_after)
        if delay is None:
            return ActionState.FAILED, {
                "failure_count": failures,
                "reason_code": "retries_exhausted",
                "reason_text": f"gave up after {failures} failed attempts; last: {outcome.reason}",
            }
        return ActionState.PENDING, {
            "run_at": at + timedelta(seconds=delay),
            "failure_count": failures,
            "reason_code": "retrying",
            "reason_text": outcome.reason,
        }
    if outcome.kind == OutcomeKind.CREDENTIALS:
        return ActionState.HELD, {"reason_code": "credentials_rejected", "reason_text": outcome.reason}
    return ActionState.FAILED, {"reason_code": "rejected", "reason_text": outcome.reason}


def _needs_attention(session: Any, integration: Integration, reason: str) -> None:
    session.execute(
        update(Integration)
        .where(Integration.id == integration.id, Integration.state == IntegrationState.CONNECTED)
        .values(
            state=IntegrationState.NEEDS_ATTENTION,
            last_error=f"credentials rejected: {reason}",
            updated_at=outbox.now(),
        )
        .execution_options(synchronize_session=False)
    )
    outbox.hold_integration(
        session, integration.id, "integration_needs_attention", f"{integration.app} needs attention: {reason}"
    )


def _finish(rt: Runtime, action: Action, lease: str, state: ActionState, code: str, text: str) -> str:
    """End (or hold) an action without calling out: no attempt is recorded."""
    with rt.db.transaction() as session:
        moved = outbox.transition(
            session,
            action.id,
            expected=ActionState.SENDING,
            lease_token=lease,
            state=state,
            reason_code=code,
            reason_text=text,
            lease_expires_at=None,
        )
    log.info("action=%s %s: %s", action.id, state.value, code)
    return state.value if moved else "lease_lost"
