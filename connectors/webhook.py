"""Webhook: a JSON POST to a merchant's URL, signed per the Standard Webhooks spec.

https://www.standardwebhooks.com: headers webhook-id (our idempotency key, so receivers can dedupe),
webhook-timestamp (unix seconds) and webhook-signature ("v1,<base64 HMAC-SHA256>") over
"<id>.<timestamp>.<body>". Receivers verify with any Standard Webhooks library.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate
from standardwebhooks.webhooks import Webhook

from connectors.base import Capabilities, Connector, Event, Request, event_body

BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def validate_secret(value: str) -> None:
    encoded = value.removeprefix("whsec_")
    if encoded == value or not BASE64.fullmatch(encoded):
        raise ma.ValidationError("A signing secret is whsec_ followed by base64.")
    try:
        raw = base64.b64decode(encoded + "==")  # padding optional, as standardwebhooks reads it
    except (binascii.Error, ValueError):
        raise ma.ValidationError("The part after whsec_ is not valid base64.") from None
    if len(raw) < 16:
        raise ma.ValidationError("The signing secret must hold at least 16 bytes (24 base64 characters).")


class WebhookCredentials(ma.Schema):
    signing_secret = fields.String(required=True, validate=validate_secret)


class WebhookSettings(ma.Schema):
    url = fields.Url(required=True, schemes={"http", "https"}, validate=validate.Length(max=2000))


def utc_now() -> datetime:
    return datetime.now(UTC)


class WebhookConnector(Connector):
    key = "webhook"
    label = "Webhook"
    credentials_schema = WebhookCredentials
    settings_schema = WebhookSettings
    example_settings = MappingProxyType(
        {"url": "https://hooks.example.com/tidings", "signing_secret": "whsec_" + "A" * 32}
    )
    capabilities = Capabilities(identities=("email", "phone", "external_id"), dedupe_field="webhook-id")

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self.clock = clock

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        # Serialised here, not by requests, so the signature covers the exact bytes sent.
        body = json.dumps(event_body(event), separators=(",", ":"), ensure_ascii=False)
        # standardwebhooks reads the timestamp's wall clock as UTC: hand it a UTC one.
        now = self.clock().astimezone(UTC)
        secret = settings["signing_secret"]
        return Request(
            method="POST",
            url=settings["url"],
            headers={
                "Content-Type": "application/json",
                "webhook-id": event.id,
                "webhook-timestamp": str(math.floor(now.timestamp())),
                "webhook-signature": Webhook(secret).sign(event.id, now, body),
            },
            data=body.encode(),
            secrets=(secret,),
        )
