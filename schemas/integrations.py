"""Integrations: a store's connection to one app.

Connector-specific fields are checked by the connector's own schemas."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from schemas.triggers import validate_phone

# An override of the delivery rate: from one request every 100 s (a strict plan) to an enterprise plan's 10,000/s.
MIN_RATE, MAX_RATE = 0.01, 10_000.0


def rate_override(**kwargs: Any) -> fields.Float:
    return fields.Float(
        allow_none=True,
        allow_nan=False,
        validate=validate.Range(
            min=MIN_RATE,
            max=MAX_RATE,
            error=f"Give requests per second from {MIN_RATE:g} to {MAX_RATE:g}, or null for the app's published rate.",
        ),
        metadata={
            "description": "Requests per second this integration may send, overriding the app's published rate "
            "(a stricter or a larger plan with the platform). null: the published rate."
        },
        **kwargs,
    )


class IntegrationIn(ma.Schema):
    app = fields.String(required=True, validate=validate.Length(min=1, max=64))
    credentials = fields.Dict(keys=fields.String(), load_default=dict)
    settings = fields.Dict(keys=fields.String(), load_default=dict)
    rate_limit_per_second = rate_override(load_default=None)


class CatchUp(ma.Schema):
    """What happens to the actions that waited while an integration was paused or needed attention."""

    policy = fields.String(
        required=True,
        validate=validate.OneOf(("all", "skip_older_than", "spread")),
        metadata={
            "description": "all: deliver everything now; skip_older_than: skip what was due more than `hours` ago; "
            "spread: deliver what is overdue evenly over the next `hours`."
        },
    )
    hours = fields.Float(validate=validate.Range(min=0.01, max=24 * 60))

    @ma.validates_schema
    def hours_when_needed(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("policy") in ("skip_older_than", "spread") and not data.get("hours"):
            raise ma.ValidationError(f"The {data['policy']} policy needs hours.", field_name="hours")


class IntegrationPatch(ma.Schema):
    credentials = fields.Dict(keys=fields.String())
    settings = fields.Dict(keys=fields.String())
    state = fields.String(validate=validate.OneOf(("connected", "paused")))
    rate_limit_per_second = rate_override()
    catch_up = fields.Nested(
        CatchUp, metadata={"description": "When this change resumes the integration: how to catch up. Default: all."}
    )


class IntegrationOut(ma.Schema):
    id = fields.Integer()
    app = fields.String()
    label = fields.String()
    state = fields.String()
    credentials = fields.Dict(metadata={"description": "Masked: secrets are never returned."})
    settings = fields.Dict()
    rate_limit_per_second = fields.Float(
        allow_none=True, metadata={"description": "The merchant's override of the delivery rate, or null."}
    )
    published_rate_limit_per_second = fields.Float(
        allow_none=True, metadata={"description": "The rate the app publishes (its connector declares), or null."}
    )
    effective_rate_limit_per_second = fields.Float(
        allow_none=True,
        metadata={"description": "What deliveries are paced at: the override, else the published rate; null: unpaced."},
    )
    last_error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class IntegrationList(ma.Schema):
    data = fields.List(fields.Nested(IntegrationOut))


class TestTarget(ma.Schema):
    email = fields.Email()
    phone = fields.String(validate=validate_phone)
    external_id = fields.String(validate=validate.Length(min=1, max=200))

    @ma.validates_schema
    def needs_one(self, data: dict[str, Any], **_: Any) -> None:
        if not any(data.values()):
            raise ma.ValidationError("Give an email, a phone or an external_id.", field_name="_schema")


class TestEventIn(ma.Schema):
    target = fields.Nested(TestTarget, required=True)
    event = fields.String(load_default="Test Event", validate=validate.Length(min=1, max=120))
    properties = fields.Dict(keys=fields.String(), load_default=dict)


class SamplesIn(ma.Schema):
    target = fields.Nested(TestTarget, required=True)


class SandboxRequestOut(ma.Schema):
    id = fields.Integer()
    received_at = fields.AwareDateTime()
    method = fields.String()
    path = fields.String()
    idempotency_key = fields.String(allow_none=True)
    duplicate = fields.Boolean()
    headers = fields.Dict()
    body = fields.Raw(allow_none=True)
    status = fields.Integer()
    response = fields.Raw(allow_none=True)


class SandboxRequestPage(ma.Schema):
    data = fields.List(fields.Nested(SandboxRequestOut))
    next_cursor = fields.String(allow_none=True)
