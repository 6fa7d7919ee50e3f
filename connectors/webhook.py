"""Webhook: a JSON POST to a merchant's URL, signed per the Standard Webhooks spec.

https://www.standardwebhooks.com: headers webhook-id (our idempotency key, so receivers can dedupe),
webhook-timestamp (unix seconds) and webhook-signature ("v1,<base64 HMAC-SHA256>") over
"<id>.<timestamp>.<body>". Receivers verify with any Standard Webhooks library.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate
from standardwebhooks.webhooks import Webhook

from connectors.base import Capabilities, Connector, Event, Request, SkipEvent


def validate_secret(value: str) -> None:
    if not value.startswith("whsec_"):
        raise ma.ValidationError("A signing secret starts with whsec_ followed by base64.")
    try:
        raw = base64.b64decode(value.removeprefix("whsec_") + "==", validate=False)
    except (binascii.Error, ValueError):
        raise ma.ValidationError("The part after whsec_ must be base64.") from None
    if len(raw) < 16:
        raise ma.ValidationError("The signing secret must hold at least 16 bytes (24 base64 characters).")


class WebhookCredentials(ma.Schema):
    signing_secret = fields.String(required=True, validate=validate_secret)


class WebhookSettings(ma.Schema):
    url = fields.Url(required=True, schemes={"http", "https"}, validate=validate.Length(max=2000))


def event_body(event: Event) -> dict[str, Any]:
    """The JSON body shared by the webhook and the sandbox."""
    customer = {k: v for k, v in vars(event.customer).items() if v}
    return {
        "id": event.id,
        "type": event.type,
        "name": event.name,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "test": event.test,
        "customer": customer,
        "properties": dict(event.properties),
    }


def require_identity(event: Event, identities: tuple[str, ...]) -> None:
    if not any(getattr(event.customer, name, None) for name in identities):
        raise SkipEvent("missing_identity", f"the customer has none of: {', '.join(identities)}")


class WebhookConnector(Connector):
    key = "webhook"
    label = "Webhook"
    credentials_schema = WebhookCredentials
    settings_schema = WebhookSettings
    capabilities = Capabilities(identities=("email", "phone", "external_id"), dedupe_field="webhook-id")

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        require_identity(event, self.capabilities.identities)
        body = json.dumps(event_body(event), separators=(",", ":"), ensure_ascii=False)
        now = self.clock()
        secret = settings["signing_secret"]
        return Request(
            method="POST",
            url=settings["url"],
            headers={
                "Content-Type": "application/json",
                "webhook-id": event.id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": Webhook(secret).sign(event.id, now, body),
            },
            data=body.encode(),
            secrets=(secret,),
        )
