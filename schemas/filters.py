"""The filter every action list, the stats, the bulk operations and the export share."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from schemas.common import PageQuery
from schemas.triggers import TRIGGER_TYPES

STATES = ("pending", "held", "queued", "sending", "delivered", "cancelled", "skipped", "failed")
KINDS = ("event", "message")
TRIGGERS = ("auto", "manual", "test", "replay")
CAUSES = ("merchant", "rule", "system")
DATE_FIELDS = ("created", "scheduled", "updated")


class CommaList(fields.List):
    """A list given as repeated query parameters, as "a,b" or as a JSON list."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            items = [part.strip() for item in items for part in (item.split(",") if isinstance(item, str) else [item])]
        return super()._deserialize(items, attr, data, **kwargs)  # type: ignore[no-any-return]


class ActionFilter(ma.Schema):
    """The filter every list, the stats and the export share."""

    state = CommaList(
        fields.String(),
        validate=validate.ContainsOnly(STATES, error="Use one or more of: " + ", ".join(STATES) + "."),
        metadata={"description": "One state or several, comma-separated."},
    )
    kind = fields.String(validate=validate.OneOf(KINDS))
    app = fields.String(validate=validate.Length(min=1, max=64))
    trigger = fields.String(
        validate=validate.OneOf(TRIGGERS), metadata={"description": "How the action came: auto, manual, test, replay."}
    )
    trigger_type = fields.String(
        validate=validate.OneOf(TRIGGER_TYPES), metadata={"description": "The trigger it came from: order.fulfilled…"}
    )
    flow = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1), metadata={"description": "A flow id."})
    order_id = fields.String(validate=validate.Length(min=1, max=200))
    customer = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1), metadata={"description": "A customer id."})
    caused_by = fields.String(validate=validate.OneOf(CAUSES))
    date_from = fields.AwareDateTime(data_key="from", default_timezone=UTC)
    date_to = fields.AwareDateTime(data_key="to", default_timezone=UTC)
    date_by = fields.String(
        load_default="created",
        validate=validate.OneOf(DATE_FIELDS),
        metadata={"description": "Which date from/to apply to: created, scheduled (run_at) or updated."},
    )
    q = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Free text: part of the recipient (email, phone, external id), order id or event."},
    )

    @ma.validates_schema
    def dates_in_order(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ma.ValidationError("Must not be before from.", field_name="to")


class ActionFilterQuery(ActionFilter, PageQuery):
    pass
