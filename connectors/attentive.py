"""Attentive: one Custom Events call per action, the key checked with the Test Authentication endpoint.

Sources (stored copies, no live web):
- Body: the official OpenAPI `CustomEventsRequest` (speakeasy-sdks/attentive-node-sdk attentive.json, copied to
  shared/specs; the tests validate every body against it) and
  docs.attentivemobile.com/openapi/reference/tag/Custom-Events:
  `type` may not contain " ' ( ) { } [ ] \\ | , and property keys may not contain " { } [ ] \\ | (checked in code,
  the schema only says so in prose); lists and nested objects work in email only, not SMS, hence the flat
  product fields; events older than 12 hours trigger no Journeys; the user needs a phone, an email or an
  external identifier, and an external identifier only matches once linked through the Identity API.
- `externalEventId` is "a unique identifier representing this specific event": not documented as a dedupe key,
  but the stable action id is what Attentive asks for there.
- Rate limit: 150 requests/second per endpoint and token; every answer, 429 included, carries
  x-ratelimit-limit and x-ratelimit-remaining for the current second, and no Retry-After
  (docs.attentivemobile.com/pages/api-rate-limits). There is no official SDK, so the default status table holds.
  Attentive is an SMS platform: its events lead to text messages, so the store's quiet hours for SMS apply.
- Auth: `Authorization: Bearer <key of a custom app>`; GET /v1/me tests it (docs.attentive.com Test Authentication).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from marshmallow import fields

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorError,
    Event,
    Outcome,
    Request,
    SkipEvent,
    default_classify,
)
from connectors.properties import first_product

if TYPE_CHECKING:
    import requests

    from connectors.http import HttpClient

BASE_URL = "https://api.attentivemobile.com"
E164 = re.compile(r"\+[1-9]\d{6,14}")
TYPE_FORBIDDEN = re.compile(r"[\"'(){}\[\]\\|,]")
KEY_FORBIDDEN = re.compile(r"[\"{}\[\]\\|]")
IDENTIFIER_LIMIT = 100  # the Identity API's limit for clientUserId: a longer id is left out, never cut


class AttentiveCredentials(ma.Schema):
    api_key = fields.String(required=True)


class AttentiveSettings(ma.Schema):
    base_url = fields.Url(load_default=BASE_URL, schemes={"https", "http"})


def clean_keys(value: Any) -> Any:
    """Property keys without the characters Attentive refuses, at every level (first key wins a clash)."""
    if isinstance(value, Mapping):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            cleaned.setdefault(KEY_FORBIDDEN.sub("", str(key)), clean_keys(item))
        return cleaned
    if isinstance(value, list):
        return [clean_keys(item) for item in value]
    return value


def error_reason(response: requests.Response) -> str | None:
    """Attentive's v1 error body, {"error": {"id": ..., "message": ...}}, or a bare {"message": ...}."""
    try:
        body = response.json()
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("message")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return f"HTTP {response.status_code}: {message.strip()}"[:300] if isinstance(message, str) and message else None


class AttentiveConnector(Connector):
    key = "attentive"
    label = "Attentive"
    credentials_schema = AttentiveCredentials
    settings_schema = AttentiveSettings
    example_settings = MappingProxyType({"api_key": "attentive_example_key_0123456789"})
    capabilities = Capabilities(
        identities=("phone", "email", "external_id"),
        rate_limit_per_second=150,
        dedupe_field="externalEventId",
        staleness_seconds=12 * 3600,  # older custom events trigger no Journeys
        verify_rate_per_second=150,  # the same 150/s per endpoint and token covers GET /v1/me
        sms=True,  # custom events start SMS Journeys
    )

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        customer = event.customer
        user: dict[str, Any] = {}
        if customer.phone and E164.fullmatch(customer.phone):
            user["phone"] = customer.phone
        if customer.email:
            user["email"] = customer.email
        if customer.external_id and len(customer.external_id) <= IDENTIFIER_LIMIT:
            user["externalIdentifiers"] = {"clientUserId": customer.external_id}
        if not user:
            raise SkipEvent("missing_identity", "Attentive needs an E.164 phone number, an email or an external id")
        properties = dict(event.properties)
        for name, value in first_product(event.properties, image_as=("mediaUrl",)).items():
            properties.setdefault(name, value)
        event_type = " ".join(TYPE_FORBIDDEN.sub("", event.name).split()) or event.type
        when = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
        key = settings["api_key"]
        return Request(
            "POST",
            f"{settings['base_url'].rstrip('/')}/v1/events/custom",
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            json={
                "type": event_type,
                "user": user,
                "properties": clean_keys(properties),
                "externalEventId": event.id,
                "occurredAt": when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            },
            secrets=(key,),
        )

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        outcome = default_classify(response, error)
        if response is None or response.status_code < 400:
            return outcome
        reason = error_reason(response) or outcome.reason
        retry_after = outcome.retry_after
        if response.status_code == 429 and retry_after is None:
            # No Retry-After: the limit is per second, so an exhausted budget is back within one second.
            remaining = response.headers.get("x-ratelimit-remaining")
            if remaining is not None and remaining.strip() in ("0", "0.0"):
                retry_after = 1.0
        return Outcome(outcome.kind, reason, retry_after)

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        key = settings["api_key"]
        url = f"{settings['base_url'].rstrip('/')}/v1/me"
        response = http.send(Request("GET", url, {"Authorization": f"Bearer {key}"}, secrets=(key,)))
        if response.status_code == 200:
            return
        detail = error_reason(response) or f"HTTP {response.status_code}"
        if response.status_code == 401:
            raise ConnectorError(f"Attentive rejected the API key ({detail})", field="api_key", credentials=True)
        if response.status_code == 403:
            raise ConnectorError(
                f"Attentive denied this key access: check the custom app's permissions ({detail})",
                field="api_key",
                credentials=True,
            )
        raise ConnectorError(f"Attentive could not check the key just now: {detail}")
