"""Klaviyo: Create Event for one action, Bulk Create Events for many (JSON:API), the key checked with Get Accounts.

Sources (stored copies, no live web):
- Endpoint, headers and body: klaviyo/openapi `openapi/stable/apis/create_event.json` and the official SDK
  (PyPI klaviyo-api 25.0.0, model EventCreateQueryV2, which the tests validate every body against).
  REVISION is that SDK's `KlaviyoAPI._REVISION`.
- `unique_id` deduplicates: a repeat for the same profile and metric keeps only the first event (OAS text).
- Retries follow the SDK: `klaviyo_api/wrapper.py` retries 429, 503, 504 and 524 and raises every other status,
  so 500 and 502 are final here too (the hub's default table would retry them).
- 403 with a `cf-mitigated` header is Cloudflare's bot challenge in front of a.klaviyo.com, not the key
  (github.com/klaviyo/klaviyo-api-python/issues/84): retried, never held as a credentials problem.
- Rate limit: Create Event is tier XL, 350/s burst and 3,500/min steady, per account
  (developers.klaviyo.com/en/docs/rate_limits_and_error_handling); the hub's bucket runs at the steady rate.
- The key check, Get Accounts, is tier XS: 1/s burst, 15/min steady (the same page and the endpoint's reference).
- Bulk Create Events (`POST /api/event-bulk-create-jobs`, klaviyo/openapi `openapi/stable/apis/bulk_create_events.json`,
  SDK model EventsBulkCreateJob): up to 1,000 events or 5 MB a request, 202 with an empty body, tier M (10/s burst,
  150/min steady). A `unique_id` repeated for the same profile and metric fails the whole request (OAS text): the hub
  sends an idempotency key once per request. One `event-bulk-create` entry per event (not grouped per profile), so a
  JSON:API error whose `source.pointer` starts `/data/attributes/events-bulk-create/data/<n>` names exactly one event.
  Klaviyo documents only that errors carry a pointer; that bulk errors point at the entry is how Segment's production
  connector reads them (segmentio/action-destinations, klaviyo `sendBatchedTrackEvent`).
- Private keys start with pk_; the 6-character public key (site ID) cannot call /api
  (developers.klaviyo.com/en/docs/retrieve_api_credentials).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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
    OutcomeKind,
    Request,
    SkipEvent,
    default_classify,
    parse_retry_after,
)
from connectors.properties import first_product

if TYPE_CHECKING:
    import requests

    from connectors.http import HttpClient

BASE_URL = "https://a.klaviyo.com"
REVISION = "2026-10-15"  # the one place the API revision is pinned: bump it with the SDK used in the tests
SDK_RETRIES = frozenset({503, 504, 524})  # plus 429, which is rate limited rather than retried
E164 = re.compile(r"\+[1-9]\d{6,14}")
METRIC_NAME_LIMIT = 128
BULK_EVENTS = 1000
BULK_BYTES = 5_000_000  # "5MB": read as decimal megabytes, the stricter reading
BULK_POINTER = re.compile(r"^/data/attributes/events-bulk-create/data/(\d+)(?:/|$)")


def validate_private_key(value: str) -> None:
    if not value.startswith("pk_"):
        raise ma.ValidationError(
            "Use a Klaviyo private API key (it starts with pk_); the 6-character public key cannot send events."
        )


class KlaviyoCredentials(ma.Schema):
    api_key = fields.String(required=True, validate=validate_private_key)


class KlaviyoSettings(ma.Schema):
    base_url = fields.Url(load_default=BASE_URL, schemes={"https", "http"})


def _json_api_errors(response: requests.Response) -> list[dict[str, Any]]:
    try:
        errors = response.json()["errors"]
    except (ValueError, KeyError, TypeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def json_api_reason(response: requests.Response) -> str | None:
    """The JSON:API errors' codes and details: {"errors": [{"code", "title", "detail", ...}]}."""
    errors = _json_api_errors(response)[:3]
    parts = [": ".join(str(p) for p in (e.get("code"), e.get("detail") or e.get("title")) if p) for e in errors]
    text = "; ".join(part for part in parts if part)
    return f"HTTP {response.status_code}: {text}"[:300] if text else None


class KlaviyoConnector(Connector):
    key = "klaviyo"
    label = "Klaviyo"
    credentials_schema = KlaviyoCredentials
    settings_schema = KlaviyoSettings
    example_settings = MappingProxyType({"api_key": "pk_example_0123456789abcdef0123456789"})
    # The official SDK retries only 429, 503, 504 and 524: a 500 or a 502 is final, as it is for the SDK.
    classification_quirks = MappingProxyType({500: OutcomeKind.PERMANENT, 502: OutcomeKind.PERMANENT})
    capabilities = Capabilities(
        identities=("email", "phone", "external_id"),
        batch_size=BULK_EVENTS,
        batch_max_bytes=BULK_BYTES,
        rate_limit_per_second=3500 / 60,
        batch_rate_limit_per_second=150 / 60,
        batch_rate_burst=10,
        dedupe_field="unique_id",
        # Get Accounts (verify) is tier XS: 1/s burst and 15/min steady, per account. One check every 4 s keeps
        # within both windows; a merchant retrying a key faster gets the hub's own 429 instead of Klaviyo's.
        verify_rate_per_second=15 / 60,
    )

    def headers(self, key: str) -> dict[str, str]:
        return {
            "Authorization": f"Klaviyo-API-Key {key}",
            "revision": REVISION,
            "Accept": "application/vnd.api+json",
            "Content-Type": "application/vnd.api+json",
        }

    def event_attributes(self, event: Event) -> tuple[dict[str, Any], dict[str, Any]]:
        """The event's attributes and its profile's, as Create Event and Bulk Create Events both take them."""
        self.check_event(event)
        customer = event.customer
        phone = customer.phone if customer.phone and E164.fullmatch(customer.phone) else None
        profile = {
            "email": customer.email,
            "phone_number": phone,  # Klaviyo refuses the whole event for a phone that isn't E.164
            "external_id": customer.external_id,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
        }
        if not (customer.email or phone or customer.external_id):
            raise SkipEvent("missing_identity", "Klaviyo needs an email, an E.164 phone number or an external id")
        properties = dict(event.properties)
        for name, value in first_product(event.properties).items():
            properties.setdefault(name, value)
        when = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
        attributes = {
            "properties": properties,
            # Klaviyo keeps whole seconds. isoformat, not strftime: a bulk request formats a thousand of these, and
            # strftime takes twice as long.
            "time": when.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z",
            "unique_id": event.id,
            "metric": {"data": {"type": "metric", "attributes": {"name": event.name[:METRIC_NAME_LIMIT]}}},
        }
        return attributes, {"type": "profile", "attributes": {k: v for k, v in profile.items() if v}}

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        attributes, profile = self.event_attributes(event)
        key = settings["api_key"]
        return Request(
            "POST",
            f"{settings['base_url'].rstrip('/')}/api/events",
            self.headers(key),
            json={"data": {"type": "event", "attributes": {**attributes, "profile": {"data": profile}}}},
            secrets=(key,),
        )

    def batch_entry(self, event: Event, settings: Mapping[str, Any]) -> dict[str, Any]:
        attributes, profile = self.event_attributes(event)
        return {
            "type": "event-bulk-create",
            "attributes": {
                "profile": {"data": profile},
                "events": {"data": [{"type": "event", "attributes": attributes}]},
            },
        }

    def build_batch_request(self, entries: Sequence[Any], settings: Mapping[str, Any]) -> Request:
        key = settings["api_key"]
        return Request(
            "POST",
            f"{settings['base_url'].rstrip('/')}/api/event-bulk-create-jobs",
            self.headers(key),
            json={
                "data": {
                    "type": "event-bulk-create-job",
                    "attributes": {"events-bulk-create": {"data": list(entries)}},
                }
            },
            secrets=(key,),
        )

    def classify_batch(self, response: requests.Response | None, error: Exception | None, count: int) -> list[Outcome]:
        """A 4xx whose JSON:API errors point into entries fails those entries only; the others were refused with
        them (Klaviyo processes all or none) and go again. Any other answer is the whole request's."""
        outcome = self.classify(response, error)
        if response is None or outcome.kind != OutcomeKind.PERMANENT or not 400 <= response.status_code < 500:
            return [outcome] * count
        refused: dict[int, str] = {}
        for item in _json_api_errors(response):
            source = item.get("source")
            pointer = source.get("pointer") if isinstance(source, dict) else None
            match = BULK_POINTER.match(pointer) if isinstance(pointer, str) else None
            if match and int(match.group(1)) < count:
                detail = ": ".join(str(p) for p in (item.get("code"), item.get("detail") or item.get("title")) if p)
                refused.setdefault(int(match.group(1)), f"HTTP {response.status_code}: {detail}"[:300])
        if not refused:
            return [outcome] * count
        retry = Outcome(
            OutcomeKind.RETRY,
            f"not processed: Klaviyo refused {len(refused)} other event(s) of the same bulk request ({outcome.reason})"[
                :300
            ],
        )
        return [Outcome(OutcomeKind.PERMANENT, refused[i]) if i in refused else retry for i in range(count)]

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        if response is None or 200 <= response.status_code < 300:
            return default_classify(response, error)
        status = response.status_code
        reason = json_api_reason(response) or default_classify(response).reason
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status == 429:
            return Outcome(OutcomeKind.RATE_LIMITED, reason, retry_after)
        if status in SDK_RETRIES:
            return Outcome(OutcomeKind.RETRY, reason, retry_after)
        if status == 403 and "cf-mitigated" in response.headers:
            return Outcome(OutcomeKind.RETRY, "HTTP 403: Klaviyo's firewall challenged the request (not the key)")
        if status in (401, 403):
            return Outcome(OutcomeKind.CREDENTIALS, reason)
        return Outcome(OutcomeKind.PERMANENT, reason)

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        """GET /api/accounts: the cheapest call a key can make (tier XS, 1/s), it needs the accounts:read scope."""
        key = settings["api_key"]
        url = f"{settings['base_url'].rstrip('/')}/api/accounts"
        response = http.send(Request("GET", url, self.headers(key), secrets=(key,)))
        if response.status_code == 200:
            return
        detail = json_api_reason(response) or f"HTTP {response.status_code}"
        if response.status_code == 401:
            raise ConnectorError(f"Klaviyo rejected the private API key ({detail})", field="api_key", credentials=True)
        if response.status_code == 403 and "cf-mitigated" not in response.headers:
            raise ConnectorError(
                f"Klaviyo refused this key: give it the accounts:read and events:write scopes ({detail})",
                field="api_key",
                credentials=True,
            )
        raise ConnectorError(f"Klaviyo could not check the key just now: {detail}")
