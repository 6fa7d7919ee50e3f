"""The outbox, read: actions, their attempts, and the Sent → Events rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from schemas.filters import KINDS, STATES, TRIGGERS, ActionFilterQuery

__all__ = ["KINDS", "STATES", "TRIGGERS"]


class AttemptOut(ma.Schema):
    number = fields.Integer()
    started_at = fields.AwareDateTime()
    duration_ms = fields.Integer()
    outcome = fields.String()
    http_status = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    request = fields.Dict(metadata={"description": "The request as sent, secrets redacted."})
    response = fields.String(allow_none=True, metadata={"description": "The platform's answer, truncated."})
    next_attempt_at = fields.AwareDateTime(allow_none=True)


class ActionOut(ma.Schema):
    id = fields.Integer()
    state = fields.String()
    kind = fields.String()
    app = fields.String(allow_none=True)
    channel = fields.String(allow_none=True)
    event_name = fields.String(allow_none=True)
    event_type = fields.String(allow_none=True)
    target = fields.Dict()
    trigger = fields.String()
    flow_id = fields.Integer(allow_none=True)
    trigger_id = fields.Integer(allow_none=True)
    scheduled_at = fields.AwareDateTime()
    run_at = fields.AwareDateTime()
    attempt_count = fields.Integer(data_key="attempts")
    reason_code = fields.String(allow_none=True)
    reason_text = fields.String(allow_none=True)
    idempotency_key = fields.String()
    last_status = fields.Integer(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    delivered_at = fields.AwareDateTime(allow_none=True)
    order_id = fields.String(allow_none=True)
    caused_by = fields.String(allow_none=True, metadata={"description": "Who took it out of the Queue."})


class ActionDetailOut(ActionOut):
    payload = fields.Dict(metadata={"description": "The event as handed to the connector."})
    attempt_list = fields.List(fields.Nested(AttemptOut), data_key="attempt_log")


class ActionsQuery(ActionFilterQuery):
    """Actions of every state, through the shared filter."""


class ActionList(ma.Schema):
    data = fields.List(fields.Nested(ActionOut))


class ActionPage(ma.Schema):
    data = fields.List(fields.Nested(ActionOut))
    next_cursor = fields.String(allow_none=True)


class LastAttemptOut(ma.Schema):
    """The latest call out for an action: when, how long it took, and what the platform answered."""

    at = fields.AwareDateTime(attribute="started_at")
    duration_ms = fields.Integer(metadata={"description": "The call's latency."})
    http_status = fields.Integer(allow_none=True, metadata={"description": "None when no answer came (timeout)."})
    outcome = fields.String()


class EventRowOut(ma.Schema):
    """One row of Sent → Events: date, event, app, target, trigger (auto, manual, test, replay), result
    (status, with the reason when it failed) and the last attempt's latency and HTTP status."""

    id = fields.Integer()
    date = fields.AwareDateTime()
    event = fields.String(allow_none=True)
    app = fields.String(allow_none=True)
    target = fields.Dict()
    trigger = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    last_status = fields.Integer(allow_none=True)
    reason_text = fields.String(allow_none=True)
    next_attempt_at = fields.AwareDateTime(allow_none=True, metadata={"description": "When retrying: the next try."})
    last_attempt = fields.Nested(LastAttemptOut, allow_none=True)


class EventsQuery(ActionFilterQuery):
    status = fields.String(validate=validate.OneOf(("sending", "retrying", "delivered", "failed")))


class EventPage(ma.Schema):
    data = fields.List(fields.Nested(EventRowOut))
    next_cursor = fields.String(allow_none=True)


def action_out(action: Any) -> dict[str, Any]:
    """What ``ActionOut().dump(action)`` gives, built directly: POST /triggers answers with every action it created,
    and marshmallow's dump cost as much as a statement. tests/test_triggers.py checks the two agree."""
    return {
        "id": action.id,
        "state": _text(action.state),
        "kind": _text(action.kind),
        "app": _text(action.app),
        "channel": _text(action.channel),
        "event_name": _text(action.event_name),
        "event_type": _text(action.event_type),
        "target": dict(action.target) if action.target is not None else None,
        "trigger": _text(action.trigger),
        "flow_id": action.flow_id,
        "trigger_id": action.trigger_id,
        "scheduled_at": _iso(action.scheduled_at),
        "run_at": _iso(action.run_at),
        "attempts": action.attempt_count,
        "reason_code": _text(action.reason_code),
        "reason_text": _text(action.reason_text),
        "idempotency_key": _text(action.idempotency_key),
        "last_status": action.last_status,
        "created_at": _iso(action.created_at),
        "updated_at": _iso(action.updated_at),
        "delivered_at": _iso(action.delivered_at),
        "order_id": _text(action.order_id),
        "caused_by": _text(action.caused_by),
    }


# ActionOut's keys, in the order of its fields; the positions of its times among them.
ACTION_KEYS = tuple(field.data_key or name for name, field in ActionOut._declared_fields.items())
_ACTION_TIMES = tuple(
    n for n, field in enumerate(ActionOut._declared_fields.values()) if isinstance(field, fields.DateTime)
)


def action_row(values: Sequence[Any]) -> dict[str, Any]:
    """What ``action_out`` gives, from the values of ActionOut's fields in their order (a row of the actions' columns
    of the same names, read as plain values): the texts are already strings and the target a dict of its own, so
    only the times need converting. GET /actions builds its pages with it; tests/test_outbox.py checks the answer is
    what ActionPage dumps."""
    row = dict(zip(ACTION_KEYS, values, strict=True))
    for n in _ACTION_TIMES:
        value = values[n]
        if value is not None:
            row[ACTION_KEYS[n]] = value.isoformat()
    return row


def _text(value: Any) -> str | None:
    return None if value is None else str(value)  # an enum state as its value, as fields.String dumps it


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


TRIGGER_STATUSES = ("processed", "received", "failed")


class TriggerOut(ma.Schema):
    id = fields.Integer()
    type = fields.String()
    duplicate = fields.Boolean(
        metadata={"description": "True when this trigger was seen before: nothing new was created."}
    )
    actions = fields.List(fields.Nested(ActionOut))
    cancelled = fields.Integer(
        metadata={
            "description": "Waiting actions of the order that this trigger cancelled (order.cancelled/refunded). "
            "Only in the answer to a plain POST, which processes the trigger before it answers."
        }
    )
    status = fields.String(
        validate=validate.OneOf(TRIGGER_STATUSES),
        metadata={
            "description": "`processed`: its actions exist (listed here). `received`: taken in with "
            "`Prefer: respond-async` and processed a moment later (GET /triggers/{id} shows its actions then). "
            "`failed`: received, but could not be processed (`error` says why)."
        },
    )
    error = fields.String(metadata={"description": "Why a received trigger could not be processed."})
