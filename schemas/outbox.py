"""Steering the outbox: the shared filter, the Queue and Incomplete views, operations on one action or many,
stats, export, explain, the customer timeline, the audit log and suppressions."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from schemas.actions import AttemptOut
from schemas.common import MAX_ID, PageQuery, decode_position, encode_cursor
from schemas.filters import ActionFilter, ActionFilterQuery, CommaList

QUEUE_STATES = ("pending", "held")
INCOMPLETE_STATES = ("cancelled", "skipped", "failed")
OPERATIONS = ("send_now", "delay", "cancel", "restore", "replay")
MAX_IDS = 100_000
MAX_DELAY_DAYS = 365


class QueueCursor(fields.String):
    """The Queue's keyset cursor: the (run_at, id) of the last row, opaque."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> tuple[int, ...]:  # type: ignore[override]
        return decode_position(str(super()._deserialize(value, attr, data, **kwargs)), "q1", (2**53 - 1, MAX_ID))


def encode_queue_cursor(at_micros: int, last_id: int) -> str:
    return encode_cursor(at_micros, last_id, version="q1")


class QueueQuery(ActionFilter):
    state = CommaList(
        fields.String(), validate=validate.ContainsOnly(QUEUE_STATES, error="The Queue holds pending and held actions.")
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = QueueCursor(load_default=None, metadata={"description": "next_cursor of the previous page"})


class QueueRowOut(ma.Schema):
    """One row of the Queue: what goes out, where, to whom, when, and why it waits."""

    id = fields.Integer()
    state = fields.String()
    run_at = fields.AwareDateTime(metadata={"description": "When it is due."})
    scheduled_at = fields.AwareDateTime()
    kind = fields.String()
    app = fields.String(allow_none=True)
    channel = fields.String(allow_none=True)
    event_name = fields.String(allow_none=True)
    target = fields.Dict(metadata={"description": "The recipient."})
    order_id = fields.String(allow_none=True)
    flow_id = fields.Integer(allow_none=True)
    flow = fields.String(allow_none=True)
    trigger = fields.String()
    reason_code = fields.String(allow_none=True)
    reason_text = fields.String(allow_none=True)


class QueuePage(ma.Schema):
    data = fields.List(fields.Nested(QueueRowOut))
    next_cursor = fields.String(allow_none=True)


class IncompleteQuery(ActionFilterQuery):
    state = CommaList(
        fields.String(),
        validate=validate.ContainsOnly(
            INCOMPLETE_STATES, error="Incomplete holds cancelled, skipped and failed actions."
        ),
    )


class IncompleteRowOut(QueueRowOut):
    caused_by = fields.String(allow_none=True, metadata={"description": "merchant, rule or system"})
    updated_at = fields.AwareDateTime()
    attempts = fields.Integer()


class IncompletePage(ma.Schema):
    data = fields.List(fields.Nested(IncompleteRowOut))
    next_cursor = fields.String(allow_none=True)


# -- operations on one action ----------------------------------------------------------------------


class DelayIn(ma.Schema):
    days = fields.Integer(
        validate=validate.Range(min=1, max=MAX_DELAY_DAYS), metadata={"description": "Move it by N days."}
    )
    until = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "Or move it to this time."})

    @ma.validates_schema
    def one_of_them(self, data: dict[str, Any], **_: Any) -> None:
        if ("days" in data) == ("until" in data):
            raise ma.ValidationError("Give either days or until.", field_name="_schema")


class CancelIn(ma.Schema):
    reason = fields.String(load_default=None, validate=validate.Length(min=1, max=500))


class ReplayIn(ma.Schema):
    new_key = fields.Boolean(
        load_default=False,
        metadata={"description": "Send as a new action with a new idempotency key (the platform will not dedupe it)."},
    )


class EmptyIn(ma.Schema):
    pass


# -- bulk ------------------------------------------------------------------------------------------


class BulkIn(ma.Schema):
    operation = fields.String(required=True, validate=validate.OneOf(OPERATIONS))
    ids = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=MAX_ID)), validate=validate.Length(min=1, max=MAX_IDS)
    )
    filter = fields.Nested(ActionFilter)
    dry_run = fields.Boolean(load_default=False)
    reason = fields.String(load_default=None, validate=validate.Length(min=1, max=500))
    days = fields.Integer(validate=validate.Range(min=1, max=MAX_DELAY_DAYS))
    until = fields.AwareDateTime(default_timezone=UTC)
    new_key = fields.Boolean(load_default=False)

    @ma.validates_schema
    def consistent(self, data: dict[str, Any], **_: Any) -> None:
        if ("ids" in data) == ("filter" in data):
            raise ma.ValidationError("Give either ids or filter.", field_name="_schema")
        if data.get("operation") == "delay" and ("days" in data) == ("until" in data):
            raise ma.ValidationError("A delay needs either days or until.", field_name="days")


class UploadIn(ma.Schema):
    """The form fields that go with an uploaded CSV of emails, phones or order ids (one a line)."""

    operation = fields.String(required=True, validate=validate.OneOf(OPERATIONS))
    match = fields.String(
        validate=validate.OneOf(("email", "phone", "order_id")),
        metadata={"description": "What the values are; by default each is recognised on its own (@, +, else order)."},
    )
    dry_run = fields.Boolean(load_default=False)
    reason = fields.String(load_default=None, validate=validate.Length(min=1, max=500))
    days = fields.Integer(validate=validate.Range(min=1, max=MAX_DELAY_DAYS))
    until = fields.AwareDateTime(default_timezone=UTC)
    new_key = fields.Boolean(load_default=False)

    @ma.validates_schema
    def consistent(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("operation") == "delay" and ("days" in data) == ("until" in data):
            raise ma.ValidationError("A delay needs either days or until.", field_name="days")


class UploadFile(ma.Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class UnmatchedRow(ma.Schema):
    row = fields.Integer()
    value = fields.String()


class BulkOut(ma.Schema):
    id = fields.Integer(allow_none=True)
    operation = fields.String()
    dry_run = fields.Boolean()
    state = fields.String(metadata={"description": "dry_run, queued, running, done, failed or undone"})
    total = fields.Integer(metadata={"description": "Actions selected."})
    done = fields.Integer(metadata={"description": "Actions looked at so far."})
    changed = fields.Integer(metadata={"description": "Actions the operation moved."})
    progress = fields.Float()
    sample = fields.List(fields.Nested(QueueRowOut))
    by_app = fields.Dict(keys=fields.String(), values=fields.Integer())
    not_applicable = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "Ids left alone, by their state."}
    )
    unmatched = fields.List(fields.Nested(UnmatchedRow))
    restored = fields.Integer(metadata={"description": "After an undo: the actions that came back."})
    created_by = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)
    undo_until = fields.AwareDateTime(allow_none=True)
    error = fields.String(allow_none=True)


class BulkPage(ma.Schema):
    data = fields.List(fields.Nested(BulkOut))
    next_cursor = fields.String(allow_none=True)


# -- stats -----------------------------------------------------------------------------------------


class StatsQuery(ActionFilter):
    pass


class Counts(ma.Schema):
    sent = fields.Integer(metadata={"description": "Actions with at least one attempt."})
    delivered = fields.Integer()
    failed = fields.Integer()
    pending = fields.Integer(metadata={"description": "Still in the outbox: pending, held, queued or sending."})
    skipped = fields.Integer()
    cancelled = fields.Integer()
    delivery_rate = fields.Float(allow_none=True, metadata={"description": "delivered / (delivered + failed)"})


class DayCounts(Counts):
    date = fields.String()


class StatsOut(Counts):
    by_app = fields.Dict(keys=fields.String(), values=fields.Nested(Counts))
    series = fields.List(fields.Nested(DayCounts))


class ExportQuery(ActionFilter):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "xlsx")))


# -- explain, timeline, audit ----------------------------------------------------------------------


class GuardOut(ma.Schema):
    code = fields.String()
    passed = fields.Boolean()
    text = fields.String()
    value = fields.Raw(allow_none=True)


class AuditOut(ma.Schema):
    id = fields.Integer()
    at = fields.AwareDateTime(attribute="created_at")
    actor = fields.String()
    operation = fields.String()
    action_id = fields.Integer(allow_none=True)
    bulk_operation_id = fields.Integer(allow_none=True)
    details = fields.Dict()


class AuditPage(ma.Schema):
    data = fields.List(fields.Nested(AuditOut))
    next_cursor = fields.String(allow_none=True)


class AuditQuery(PageQuery):
    operation = fields.String(validate=validate.Length(min=1, max=32))
    action_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    bulk_operation_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))


class QuietHoursTiming(ma.Schema):
    """The store's quiet hours as they bear on one action."""

    start = fields.String()
    end = fields.String()
    applies_to = fields.String(metadata={"description": "sms | all"})
    timezone = fields.String()
    applies = fields.Boolean(metadata={"description": "Whether they hold this action back when it falls due."})
    bypass = fields.String(allow_none=True, metadata={"description": "Why they don't: a test event, or Send now."})
    moved_from = fields.AwareDateTime(
        allow_none=True, metadata={"description": "The flow's time, when quiet hours moved it at scheduling."}
    )
    waiting_until = fields.AwareDateTime(
        allow_none=True, metadata={"description": "When it goes back to pending waiting for them to end."}
    )
    text = fields.String()


class TimingOut(ma.Schema):
    trigger_time = fields.AwareDateTime(allow_none=True)
    delay_seconds = fields.Integer(allow_none=True)
    scheduled_at = fields.AwareDateTime()
    run_at = fields.AwareDateTime()
    quiet_hours = fields.Nested(
        QuietHoursTiming,
        allow_none=True,
        metadata={"description": "null when the store has no quiet hours."},
    )
    failures = fields.Integer()
    retries_left = fields.Integer(allow_none=True)
    next_attempt_at = fields.AwareDateTime(allow_none=True)
    rate_limited = fields.Integer()


class ExplainOut(ma.Schema):
    id = fields.Integer()
    state = fields.String()
    summary = fields.String(metadata={"description": "Why it is where it is, in a sentence."})
    reason_code = fields.String(allow_none=True)
    reason_text = fields.String(allow_none=True)
    caused_by = fields.String(allow_none=True)
    guards = fields.List(fields.Nested(GuardOut))
    timing = fields.Nested(TimingOut)
    attempts = fields.List(fields.Nested(AttemptOut))
    audit = fields.List(fields.Nested(AuditOut))


class TimelineItem(ma.Schema):
    at = fields.AwareDateTime()
    type = fields.String(metadata={"description": "trigger, action, attempt or operation"})
    summary = fields.String()
    trigger_id = fields.Integer(allow_none=True)
    action_id = fields.Integer(allow_none=True)
    details = fields.Dict()


class CustomerOut(ma.Schema):
    id = fields.Integer()
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()


class CustomerPage(ma.Schema):
    data = fields.List(fields.Nested(CustomerOut))
    next_cursor = fields.String(allow_none=True)


class CustomersQuery(PageQuery):
    q = fields.String(validate=validate.Length(min=1, max=320), metadata={"description": "Email, phone or external id"})


class TimelineOut(ma.Schema):
    customer = fields.Nested(CustomerOut)
    items = fields.List(fields.Nested(TimelineItem))


# -- suppressions ----------------------------------------------------------------------------------


class SuppressionIn(ma.Schema):
    value = fields.String(
        required=True,
        validate=validate.Length(min=1, max=320),
        metadata={"description": "An email, an E.164 phone or an external id."},
    )
    channel = fields.String(
        load_default="all",
        validate=validate.Length(min=1, max=64),
        metadata={"description": '"all", "email", "sms" or an app key'},
    )
    reason = fields.String(
        load_default="unsubscribed", validate=validate.OneOf(("unsubscribed", "bounced", "complained", "manual"))
    )


class SuppressionOut(ma.Schema):
    id = fields.Integer()
    value = fields.String()
    channel = fields.String()
    reason = fields.String()
    created_at = fields.AwareDateTime()


class SuppressionPage(ma.Schema):
    data = fields.List(fields.Nested(SuppressionOut))
    next_cursor = fields.String(allow_none=True)
