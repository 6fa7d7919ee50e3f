"""Triggers in: what a review app or a shop tells the hub happened."""

from __future__ import annotations

import re
from datetime import UTC
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from marshmallow import fields, validate

from schemas.fastload import compile_loader

if TYPE_CHECKING:
    from marshmallow.types import UnknownOption

TRIGGER_TYPES = ("order.fulfilled", "order.delivered", "order.cancelled", "order.refunded", "review.submitted")
# These start no flow of their own: they cancel what is still waiting for their order.
ORDER_STOPPERS = ("order.cancelled", "order.refunded")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def validate_phone(value: str) -> None:
    if not E164.match(value):
        raise ma.ValidationError("Phone numbers must be in E.164 form, e.g. +14155550123.")


def non_negative(value: Decimal) -> None:
    # A function rather than validate.Range: Range(min=0) on a string-dumped Decimal documents "minimum": "0.00".
    if value < 0:
        raise ma.ValidationError("Must not be negative.")


class CustomerIn(ma.Schema):
    email = fields.Email(validate=validate.Length(max=320))
    phone = fields.String(validate=validate_phone)
    first_name = fields.String(validate=validate.Length(max=200))
    last_name = fields.String(validate=validate.Length(max=200))
    external_id = fields.String(validate=validate.Length(min=1, max=200))

    @ma.validates_schema
    def needs_an_identity(self, data: dict[str, Any], **_: Any) -> None:
        if not any(data.get(k) for k in ("email", "phone", "external_id")):
            raise ma.ValidationError("Give at least one of email, phone or external_id.", field_name="_schema")


class ItemIn(ma.Schema):
    product_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    name = fields.String(required=True, validate=validate.Length(min=1, max=500))
    url = fields.Url(validate=validate.Length(max=2000))
    image_url = fields.Url(validate=validate.Length(max=2000))
    price = fields.Decimal(
        as_string=True, places=2, validate=non_negative, metadata={"description": 'A decimal string, e.g. "49.00".'}
    )
    currency = fields.String(validate=validate.Regexp(r"^[A-Z]{3}$", error="Use an ISO 4217 code, e.g. USD."))


class OrderIn(ma.Schema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    items = fields.List(fields.Nested(ItemIn), load_default=list, validate=validate.Length(max=500))


class ReviewIn(ma.Schema):
    id = fields.String(validate=validate.Length(min=1, max=200))
    product_id = fields.String(validate=validate.Length(max=200))
    rating = fields.Integer(required=True, validate=validate.Range(min=1, max=5))
    title = fields.String(validate=validate.Length(max=500))
    body = fields.String(validate=validate.Length(max=20000))


class TriggerIn(ma.Schema):
    type = fields.String(required=True, validate=validate.OneOf(TRIGGER_TYPES))
    occurred_at = fields.AwareDateTime(default_timezone=UTC, load_default=None)
    customer = fields.Nested(CustomerIn, required=True)
    order = fields.Nested(OrderIn)
    review = fields.Nested(ReviewIn)

    @ma.validates_schema
    def matches_its_type(self, data: dict[str, Any], **_: Any) -> None:
        kind = data.get("type", "")
        if kind.startswith("order.") and not data.get("order"):
            raise ma.ValidationError(f"An {kind} trigger needs its order.", field_name="order")
        if kind == "review.submitted" and not data.get("review"):
            raise ma.ValidationError("A review.submitted trigger needs its review.", field_name="review")

    def fast_load(self, data: Any) -> Any:
        """``data`` loaded by the compiled fast loader (schemas.fastload: these fields, these validators, without the
        schema machinery, several times faster), or None when it is not plainly valid: then ``load`` must judge it,
        and gives the field errors. Whenever it is not None it is what ``load`` returns (tests/test_fastload.py)."""
        loader = self.__dict__.get("_fast_loader")
        if loader is None:
            loader = self.__dict__["_fast_loader"] = compile_loader(self)
        return loader(data)

    def load(  # type: ignore[override]
        self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: UnknownOption | None = None
    ) -> Any:
        """A valid trigger is loaded by ``fast_load``; anything it is not sure of, by marshmallow."""
        if many is None and partial is None and unknown is None and not self.many and not self.partial:
            loaded = self.fast_load(data)
            if loaded is not None:
                return loaded
        return super().load(data, many=many, partial=partial, unknown=unknown)


MAX_BULK_TRIGGERS = 1000
BULK_STATUSES = ("accepted", "duplicate", "rejected")


class BulkTriggerIn(TriggerIn):
    """One trigger of a bulk request: a trigger as POST /triggers takes it, with its own idempotency key."""

    idempotency_key = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "What the Idempotency-Key header is to a single trigger."},
    )


class BulkTriggersIn(ma.Schema):
    """The JSON form of a bulk request (the NDJSON form is one trigger per line)."""

    triggers = fields.List(
        fields.Nested(BulkTriggerIn), required=True, validate=validate.Length(min=1, max=MAX_BULK_TRIGGERS)
    )


class BulkItemOut(ma.Schema):
    index = fields.Integer(metadata={"description": "The trigger's position in the request, from 0."})
    status = fields.String(validate=validate.OneOf(BULK_STATUSES))
    trigger_id = fields.Integer(allow_none=True)
    actions = fields.List(fields.Integer(), metadata={"description": "Ids of the trigger's actions."})
    cancelled = fields.Integer(metadata={"description": "Waiting actions an order stopper cancelled."})
    errors = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), metadata={"description": "Field errors."}
    )


class BulkTriggersOut(ma.Schema):
    accepted = fields.Integer()
    duplicates = fields.Integer()
    rejected = fields.Integer()
    results = fields.List(fields.Nested(BulkItemOut))


class FailedReceivedOut(ma.Schema):
    trigger_id = fields.Integer(metadata={"description": "The id the trigger was given when it was received."})
    received_at = fields.AwareDateTime()
    failed_at = fields.AwareDateTime()
    error = fields.String(metadata={"description": "Why it could not be processed."})


class ReceivedOut(ma.Schema):
    """Triggers received with `Prefer: respond-async` and not processed yet."""

    waiting = fields.Integer(metadata={"description": "Received, waiting for the dispatcher."})
    failed = fields.Integer(metadata={"description": "Received, but could not be processed: not taken again."})
    failed_triggers = fields.List(
        fields.Nested(FailedReceivedOut), metadata={"description": "Oldest first, 100 at most."}
    )


class RetriedOut(ma.Schema):
    retried = fields.Integer(metadata={"description": "Failed received triggers the dispatcher will take again."})
