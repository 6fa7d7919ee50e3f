"""Postscript: one Create Custom Event call per action, the key checked with GET /api/v2/me.

Sources (stored copies, no live web; Postscript publishes no SDK and only per-operation OpenAPI blocks):
- Body: developers.postscript.io/reference/create-custom-event, harvested in api-evangelist/postscript
  `openapi/postscript-events-api-openapi.yml`: `type` accepts only A-Z, a-z, 0-9 and _ (Postscript shows it as
  "<shop or partner name> - <type>"); `occurred_at` is UTC as %Y-%m-%d %H:%M:%S.%f (the block's `format: date`
  is wrong, the prose is followed); `properties` are flat key/values (strings, booleans, integers, floats,
  datetime strings), hence flat product and review fields and no lists; `external_id` is "the unique id of the
  event on your system" (dedupe behaviour not documented).
- Auth (developers.postscript.io/docs/api-authentication): `Authorization: Bearer sk_...` with the shop's private
  key; a partner sends its sk_partner_ key there and the shop's key in X-Postscript-Shop-Token.
  GET /api/v2/me answers with the key's shop (also what Segment's Postscript destination checks).
- Rate limit: 15 requests/second per token or partner/shop pair; a 429 carries
  {"error_code": 3002, "error_message": "Rate limit exceeded", "success": false} and no rate-limit header or
  Retry-After (developers.postscript.io/docs/rate-limits via api-evangelist): the hub's backoff decides.
  Postscript is an SMS platform: its events lead to text messages, so the store's quiet hours for SMS apply.
"""

from __future__ import annotations

import re
import unicodedata
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

if TYPE_CHECKING:
    import requests

    from connectors.http import HttpClient

BASE_URL = "https://api.postscript.io"
NOT_ACCEPTED = re.compile(r"[^A-Za-z0-9_]+")
SCALARS = (str, bool, int, float)
PRODUCT_FIELDS = (
    ("product_id", "product_id"),
    ("product_name", "name"),
    ("product_url", "url"),
    ("product_image_url", "image_url"),
)


def validate_private_key(value: str) -> None:
    if not value.startswith("sk_"):
        raise ma.ValidationError(
            "Use the shop's private API key (it starts with sk_); the public key cannot call the API."
        )


class PostscriptCredentials(ma.Schema):
    api_key = fields.String(required=True, validate=validate_private_key)
    shop_token = fields.String(validate=validate_private_key)  # partners only: the shop's private key

    @ma.validates_schema
    def partners_name_a_shop(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("api_key", "").startswith("sk_partner_") and not data.get("shop_token"):
            raise ma.ValidationError("A partner key needs the shop's private key as shop_token.", "shop_token")


class PostscriptSettings(ma.Schema):
    base_url = fields.Url(load_default=BASE_URL, schemes={"https", "http"})


def event_type(name: str) -> str:
    """The name in Postscript's charset: accents dropped, every other run of characters one underscore."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return NOT_ACCEPTED.sub("_", ascii_name).strip("_")


def flat_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Scalars as they are, objects flattened into prefix_key, lists left out (the first item stays, flattened)."""
    flat: dict[str, Any] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                add(f"{prefix}_{key}" if prefix else str(key), item)
        elif isinstance(value, SCALARS):
            flat.setdefault(prefix, value)

    add("", properties)
    items = properties.get("items")
    if isinstance(items, list):
        flat.setdefault("item_count", len(items))
        first = items[0] if items and isinstance(items[0], Mapping) else {}
        for name, field in PRODUCT_FIELDS:
            add(name, first.get(field))
    if "product_id" not in flat and isinstance(properties.get("review"), Mapping):
        add("product_id", properties["review"].get("product_id"))
    return flat


def error_reason(response: requests.Response) -> str | None:
    """{"error_code", "error_message", "success": false}, or {"errors": [{"msg", "type", ...}]} on some 400s."""
    try:
        body = response.json()
        if body.get("error_message"):
            message = f"{body['error_message']} (error_code {body.get('error_code')})"
        else:
            message = "; ".join(str(e.get("msg")) for e in body["errors"][:3] if isinstance(e, dict) and e.get("msg"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return f"HTTP {response.status_code}: {message}"[:300] if message else None


class PostscriptConnector(Connector):
    key = "postscript"
    label = "Postscript"
    credentials_schema = PostscriptCredentials
    settings_schema = PostscriptSettings
    example_settings = MappingProxyType({"api_key": "sk_example_0123456789abcdef"})
    capabilities = Capabilities(
        identities=("phone", "email"),
        rate_limit_per_second=15,
        dedupe_field="external_id",
        verify_rate_per_second=15,  # the limit is per token, GET /api/v2/me included
        sms=True,  # custom events start SMS automations
    )

    def headers(self, settings: Mapping[str, Any]) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {settings['api_key']}", "Accept": "application/json"}
        if settings.get("shop_token"):
            headers["X-Postscript-Shop-Token"] = settings["shop_token"]
        return headers

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        name = event_type(event.name) or event_type(event.type)
        if not name:
            raise SkipEvent("invalid_event_name", f"{event.name!r} has no character Postscript accepts in a type")
        when = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
        body: dict[str, Any] = {"type": name}
        if event.customer.phone:
            body["phone"] = event.customer.phone
        if event.customer.email:
            body["email"] = event.customer.email
        body["occurred_at"] = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        body["external_id"] = event.id
        body["properties"] = flat_properties(event.properties)
        return Request(
            "POST",
            f"{settings['base_url'].rstrip('/')}/api/v2/events",
            {**self.headers(settings), "Content-Type": "application/json"},
            json=body,
            secrets=self.secrets(settings),
        )

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        outcome = default_classify(response, error)
        if response is None or response.status_code < 400:
            return outcome
        return Outcome(outcome.kind, error_reason(response) or outcome.reason, outcome.retry_after)

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        url = f"{settings['base_url'].rstrip('/')}/api/v2/me"
        response = http.send(Request("GET", url, self.headers(settings), secrets=self.secrets(settings)))
        if response.status_code == 200:
            return
        detail = error_reason(response) or f"HTTP {response.status_code}"
        if response.status_code in (401, 403):
            which = "the partner key or the shop token" if settings.get("shop_token") else "the private API key"
            raise ConnectorError(f"Postscript rejected {which} ({detail})", field="api_key", credentials=True)
        raise ConnectorError(f"Postscript could not check the key just now: {detail}")
