"""Omnisend: one Send Customer Event call per action (the 2026-03-15 API version).

Sources (stored copies, no live web):
- Endpoint and body: api-docs.omnisend.com/reference/post_events (OpenAPI "Events API", version 2026) and the
  guide docs/how-to-send-events-rest-api: `POST https://api.omnisend.com/api/events` answers 202 Accepted;
  `eventName` and `origin` ("api" unless Omnisend gave the app its own origin) are required, `eventVersion` is for
  recommended events only and left out for custom ones, `eventTime` is RFC 3339, `contact` takes email, phone,
  firstName, lastName (its `id` is Omnisend's own contact id, so our external id has no place there) and
  `properties` is a free object.
- Auth and versioning: `Authorization: Omnisend-API-Key <key>` and the required `Omnisend-Version` header
  (a retired version answers 410); scope events.write.
- Dedupe: `eventID` must be a UUID (v4-v7). The action id is not one, so a UUID v5 of it is sent: stable across
  retries and replays. Omnisend dedupes on eventID + eventTime for historical events only; real-time events that
  drive automations are not deduplicated, so a replay may trigger an automation twice.
- Rate limit: 400 requests/minute for this endpoint (the reference page); 429 on excess, with
  X-Rate-Limit-* headers whose reset unit is not documented, and no documented Retry-After.
- Errors: RFC 9457 problem+json, {type, title, status, detail, instance, errors: [{field, code, message}]}.
- verify: Omnisend documents no account or key-check endpoint, so none is called (the base no-op).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from marshmallow import fields

from connectors.base import (
    Capabilities,
    Connector,
    Event,
    Outcome,
    Request,
    SkipEvent,
    default_classify,
)
from connectors.properties import first_product

if TYPE_CHECKING:
    import requests

BASE_URL = "https://api.omnisend.com"
API_VERSION = "2026-03-15"  # the one place the API version is pinned
E164 = re.compile(r"\+[1-9]\d{6,14}")
PHONE_LIMIT = 15  # contact.phone is at most 15 characters
# Namespace for the UUID v5 made from the action id: never change it, or replays stop matching their eventID.
EVENT_ID_NAMESPACE = uuid.UUID("6f1f4c0e-3d0b-5a52-9a55-7b5e0c2f6e31")


class OmnisendCredentials(ma.Schema):
    api_key = fields.String(required=True)


class OmnisendSettings(ma.Schema):
    base_url = fields.Url(load_default=BASE_URL, schemes={"https", "http"})
    origin = fields.String(load_default="api")  # an app with a dedicated origin from Omnisend puts it here


def event_uuid(action_id: str) -> str:
    """The action id as the UUID Omnisend's eventID takes: the same id always gives the same UUID (v5)."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, action_id))


def problem_reason(response: requests.Response) -> str | None:
    """RFC 9457 problem+json: title and detail, then up to three field errors."""
    try:
        body = response.json()
        head = ": ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
        errors = body.get("errors") or []
        parts = [
            " ".join(str(p) for p in (e.get("field"), e.get("message") or e.get("code")) if p)
            for e in errors[:3]
            if isinstance(e, dict)
        ]
    except (ValueError, TypeError, AttributeError):
        return None
    text = "; ".join(part for part in [head, *parts] if part)
    return f"HTTP {response.status_code}: {text}"[:300] if text else None


class OmnisendConnector(Connector):
    key = "omnisend"
    label = "Omnisend"
    credentials_schema = OmnisendCredentials
    settings_schema = OmnisendSettings
    example_settings = MappingProxyType({"api_key": "omnisend_example_key_0123456789abcdef"})
    capabilities = Capabilities(identities=("email", "phone"), rate_limit_per_second=400 / 60, dedupe_field="eventID")

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        customer = event.customer
        phone = customer.phone if customer.phone and E164.fullmatch(customer.phone) else None
        if phone and len(phone) > PHONE_LIMIT:
            phone = None
        contact = {
            "email": customer.email,
            "phone": phone,
            "firstName": customer.first_name,
            "lastName": customer.last_name,
        }
        if not (customer.email or phone):
            raise SkipEvent("missing_identity", "Omnisend needs an email or an E.164 phone number (15 characters)")
        properties = dict(event.properties)
        for name, value in first_product(event.properties).items():
            properties.setdefault(name, value)
        when = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
        key = settings["api_key"]
        return Request(
            "POST",
            f"{settings['base_url'].rstrip('/')}/api/events",
            {
                "Authorization": f"Omnisend-API-Key {key}",
                "Omnisend-Version": API_VERSION,
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            json={
                "eventName": event.name,
                "origin": settings.get("origin") or "api",
                "eventID": event_uuid(event.id),
                "eventTime": when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "contact": {k: v for k, v in contact.items() if v},
                "properties": properties,
            },
            secrets=(key,),
        )

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        outcome = default_classify(response, error)
        if response is None or response.status_code < 400:
            return outcome
        reason = problem_reason(response) or outcome.reason
        if response.status_code == 410:  # Omnisend retires API versions with 410 Gone: say so, it stays final
            reason = f"{reason} (Omnisend-Version {API_VERSION} may be retired)"[:300]
        return Outcome(outcome.kind, reason, outcome.retry_after)
