"""Customer.io (Track API v1): one Track Customer Event call per action, the keys checked with Get Region.

Sources (stored copies, no live web):
- Customer.io's own OpenAPI `journeys-track.json` (OAS 3.1, docs.customer.io/files/journeys-track.json, harvested in
  api-evangelist/customer-io) and docs.customer.io/integrations/api/track/tag/track-events/track:
  `POST https://track.customer.io/api/v1/customers/{identifier}/events` (EU: track-eu.customer.io) answers 200 `{}`.
  `{identifier}` is the person's id or, in workspaces that identify people by email, their email (a phone number
  there is taken as an id), hence the `identify_by` setting. Body: `name` (at most 100 bytes), `data` (at most
  100,000 bytes; `recipient`, `from_address` and `reply_to` are reserved and left to the merchant), `timestamp`
  in unix seconds, `type` "event", and `id`, a ULID that deduplicates: a repeat id is ignored.
- The action id is not a ULID, so one is made from it: the event time's milliseconds, then 80 bits of a SHA-256
  of the action id. The same action always gives the same ULID.
- Auth: HTTP Basic site_id:track_api_key. GET /api/v1/accounts/region answers {url, region, environment_id} for good
  keys, the cheapest documented check; it answers on either regional host and names the account's region
  (docs.customer.io/integrations/api/track/tag/trackregion/getRegion). verify refuses a region setting that
  doesn't match: the US host redirects EU traffic (the hub never follows redirects) and the EU host fails US accounts
  (docs.customer.io/api/track overview).
- Only events whose timestamp is within the past 72 hours trigger campaigns (staleness_seconds).
- Errors: 400 `{"meta": {"errors": [...]}}` (some answers use `{"meta": {"error": "..."}}`), 401 for bad keys.
- Rate limit: the current spec says 1,000 requests/second, not strictly enforced; older docs say 100/s. The hub runs
  at the lower figure.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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

REGIONS = MappingProxyType({"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"})
NAME_LIMIT = 100  # bytes
DATA_LIMIT = 100_000  # bytes
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class CustomerioCredentials(ma.Schema):
    site_id = fields.String(required=True)
    api_key = fields.String(required=True)  # the Track API key (not the App API bearer key)


class CustomerioSettings(ma.Schema):
    region = fields.String(load_default="us", validate=validate.OneOf(list(REGIONS)))
    base_url = fields.Url(load_default=None, schemes={"https", "http"})  # overrides the region's URL
    identify_by = fields.String(load_default="email", validate=validate.OneOf(["email", "id"]))


def base_url(settings: Mapping[str, Any]) -> str:
    return str(settings.get("base_url") or REGIONS[settings.get("region") or "us"]).rstrip("/")


def ulid_for(action_id: str, milliseconds: int) -> str:
    """A ULID (Crockford base32, 26 characters): 48 bits of time, 80 bits from the action id's hash."""
    entropy = int.from_bytes(hashlib.sha256(action_id.encode()).digest()[:10], "big")
    value = (max(0, milliseconds) & (2**48 - 1)) << 80 | entropy
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def cut_to_bytes(text: str, limit: int) -> str:
    return text.encode()[:limit].decode("utf-8", "ignore")


def meta_reason(response: requests.Response) -> str | None:
    """{"meta": {"errors": [...]}} or {"meta": {"error": "..."}}."""
    try:
        meta = response.json()["meta"]
        errors = meta.get("errors") or ([meta["error"]] if meta.get("error") else [])
        text = "; ".join(str(e) for e in errors[:3] if e)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return f"HTTP {response.status_code}: {text}"[:300] if text else None


class CustomerioConnector(Connector):
    key = "customerio"
    label = "Customer.io"
    credentials_schema = CustomerioCredentials
    settings_schema = CustomerioSettings
    example_settings = MappingProxyType(
        {"site_id": "example_site_0123456789", "api_key": "example_track_key_0123456789abcdef", "region": "us"}
    )
    capabilities = Capabilities(
        identities=("email", "external_id"),
        rate_limit_per_second=100,
        dedupe_field="id",
        staleness_seconds=72 * 3600,  # older events trigger no campaigns
    )

    def auth(self, settings: Mapping[str, Any]) -> tuple[dict[str, str], tuple[str, ...]]:
        token = base64.b64encode(f"{settings['site_id']}:{settings['api_key']}".encode()).decode()
        return {"Authorization": f"Basic {token}"}, (*self.secrets(settings), token)

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        by_email = (settings.get("identify_by") or "email") == "email"
        identifier = event.customer.email if by_email else event.customer.external_id
        if not identifier:
            which = "an email" if by_email else "an id (external id)"
            raise SkipEvent("missing_identity", f"this Customer.io workspace identifies people by {which}")
        data = dict(event.properties)
        for name, value in first_product(event.properties).items():
            data.setdefault(name, value)
        if len(json.dumps(data, default=str).encode()) > DATA_LIMIT:
            raise SkipEvent("payload_too_large", "Customer.io takes at most 100,000 bytes of event data")
        when = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
        when = when.astimezone(UTC)
        headers, secrets = self.auth(settings)
        return Request(
            "POST",
            f"{base_url(settings)}/api/v1/customers/{quote(identifier, safe='')}/events",
            {**headers, "Content-Type": "application/json"},
            json={
                "name": cut_to_bytes(event.name, NAME_LIMIT),
                "type": "event",
                "id": ulid_for(event.id, int(when.timestamp() * 1000)),
                "timestamp": int(when.timestamp()),
                "data": data,
            },
            secrets=secrets,
        )

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        outcome = default_classify(response, error)
        if response is None or response.status_code < 400:
            return outcome
        return Outcome(outcome.kind, meta_reason(response) or outcome.reason, outcome.retry_after)

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        """GET /api/v1/accounts/region: checks the Track keys and that the region setting matches the account."""
        headers, secrets = self.auth(settings)
        response = http.send(Request("GET", f"{base_url(settings)}/api/v1/accounts/region", headers, secrets=secrets))
        detail = meta_reason(response) or f"HTTP {response.status_code}"
        if response.status_code in (401, 403):
            raise ConnectorError(
                f"Customer.io rejected the site ID and Track API key ({detail})", field="api_key", credentials=True
            )
        if response.status_code != 200:
            raise ConnectorError(f"Customer.io could not check the keys just now: {detail}")
        try:
            region = str(response.json().get("region") or "").lower()
        except (ValueError, AttributeError):
            region = ""
        configured = settings.get("region") or "us"
        if not settings.get("base_url") and region in REGIONS and region != configured:
            raise ConnectorError(
                f"This Customer.io account is in the {region.upper()} region: set region to {region!r}", field="region"
            )
