"""Iterable: one Track Event call per action, the key checked with GET /api/webhooks.

Sources (stored copies, no live web; Iterable publishes no Python SDK, its Swagger lives at api.iterable.com/api/docs):
- Endpoint, header and body: Segment's production connector segmentio/action-destinations
  `destinations/iterable` (index.ts, utils.ts, trackEvent) and mParticle's Iterable Java client (`TrackRequest`):
  `POST https://api.iterable.com/api/events/track` (EU projects: api.eu.iterable.com), header
  `Api-Key: <server-side key>`; body `email` and/or `userId` (one is required), `eventName` (required),
  `createdAt` as a unix timestamp in seconds, `dataFields` (free object) and `id`: "if an event already exists
  with this id, the event will be updated", so the action id makes a replay an update, not a second event.
- Key check: GET /api/webhooks is what Segment's testAuthentication calls; 401 with code BadApiKey for a bad key.
- Errors: `{"msg": ..., "code": ..., "params": ...}` (e.g. code InvalidEmailAddressError, BadApiKey,
  RateLimitExceeded).
- Rate limit: trackBulk is 10 requests/second per project (Hookdeck citing Iterable); no primary source for the
  single Track Event endpoint was found, so no rate is declared and the hub relies on 429s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from marshmallow import fields, validate

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

REGIONS = MappingProxyType({"us": "https://api.iterable.com", "eu": "https://api.eu.iterable.com"})


class IterableCredentials(ma.Schema):
    api_key = fields.String(required=True)  # a server-side key


class IterableSettings(ma.Schema):
    region = fields.String(load_default="us", validate=validate.OneOf(list(REGIONS)))
    base_url = fields.Url(load_default=None, schemes={"https", "http"})  # overrides the region's URL


def base_url(settings: Mapping[str, Any]) -> str:
    return str(settings.get("base_url") or REGIONS[settings.get("region") or "us"]).rstrip("/")


def error_reason(response: requests.Response) -> str | None:
    """Iterable's {"msg", "code", "params"}."""
    try:
        body = response.json()
        text = ": ".join(str(body[k]) for k in ("code", "msg") if body.get(k))
    except (ValueError, TypeError, AttributeError):
        return None
    return f"HTTP {response.status_code}: {text}"[:300] if text else None


class IterableConnector(Connector):
    key = "iterable"
    label = "Iterable"
    credentials_schema = IterableCredentials
    settings_schema = IterableSettings
    example_settings = MappingProxyType({"api_key": "0123456789abcdef0123456789abcdef", "region": "us"})
    capabilities = Capabilities(identities=("email", "external_id"), dedupe_field="id")

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        customer = event.customer
        if not (customer.email or customer.external_id):
            raise SkipEvent("missing_identity", "Iterable needs an email or a userId (external id)")
        data = dict(event.properties)
        for name, value in first_product(event.properties).items():
            data.setdefault(name, value)
        when = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
        body: dict[str, Any] = {}
        if customer.email:
            body["email"] = customer.email
        if customer.external_id:
            body["userId"] = customer.external_id
        body.update(eventName=event.name, id=event.id, createdAt=int(when.timestamp()), dataFields=data)
        key = settings["api_key"]
        return Request(
            "POST",
            f"{base_url(settings)}/api/events/track",
            {"Api-Key": key, "Content-Type": "application/json"},
            json=body,
            secrets=(key,),
        )

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        outcome = default_classify(response, error)
        if response is None or response.status_code < 400:
            return outcome
        return Outcome(outcome.kind, error_reason(response) or outcome.reason, outcome.retry_after)

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        key = settings["api_key"]
        response = http.send(Request("GET", f"{base_url(settings)}/api/webhooks", {"Api-Key": key}, secrets=(key,)))
        if response.status_code == 200:
            return
        detail = error_reason(response) or f"HTTP {response.status_code}"
        if response.status_code in (401, 403):
            raise ConnectorError(
                f"Iterable rejected the API key: use a server-side key of this project and region ({detail})",
                field="api_key",
                credentials=True,
            )
        raise ConnectorError(f"Iterable could not check the key just now: {detail}")
