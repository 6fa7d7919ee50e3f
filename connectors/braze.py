"""Braze: one /users/track call with one custom event per action.

Sources (stored copies, no live web; Braze publishes no server-side Python SDK):
- Endpoint and auth: braze.com/docs/api/endpoints/user_data/post_user_track: `POST <REST endpoint>/users/track`
  with `Authorization: Bearer <REST API key>` (permission users.track) and a JSON body {"events": [...]}.
  The REST endpoint depends on the instance: braze.com/docs/api/basics (instance table: US-0N is
  https://rest.iad-0N.braze.com, EU-0N is https://rest.fra-0N.braze.eu); instances not in the table take base_url.
- Event object: braze.com/docs/api/objects_filters/event_object: one of external_id, user_alias, braze_id, email
  or phone identifies the user; `name` and `time` (ISO 8601) are required; `properties` is an object whose keys
  may not start with "$". One identifier is sent, the strongest the customer has: external_id, then email, then
  phone (E.164).
- Dedupe: Braze has no idempotency or dedupe field for custom events, so a replayed action is recorded twice.
- Answers: braze.com/docs/api/errors: success is {"message": "success"}; a request with non-fatal errors still
  answers 2xx with {"message": "success", "errors": [...]} and skips the objects named there, which for a single
  event means it was not recorded (classified permanent, see classify); a fatal error answers 4xx with
  {"message": "<fatal error>", "errors": [...]}; 202 {"message": "queued"} during maintenance is accepted.
- Rate limit: 3,000 requests per 3 seconds per workspace for /users/track (braze.com/docs/api/api_limits;
  older pages say 50,000/minute); 429 on excess.
- verify: Braze has no account or key-check endpoint, so none is called (the base no-op).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from marshmallow import fields, validate

from connectors.base import (
    Capabilities,
    Connector,
    Event,
    Outcome,
    OutcomeKind,
    Request,
    SkipEvent,
    default_classify,
)
from connectors.properties import first_product

if TYPE_CHECKING:
    import requests

INSTANCES = MappingProxyType(
    {
        **{f"US-0{n}": f"https://rest.iad-0{n}.braze.com" for n in (1, 2, 3, 4, 5, 6, 8)},
        **{f"EU-0{n}": f"https://rest.fra-0{n}.braze.eu" for n in (1, 2)},
    }
)
E164 = re.compile(r"\+[1-9]\d{6,14}")


class BrazeCredentials(ma.Schema):
    api_key = fields.String(required=True)  # a REST API key with the users.track permission


class BrazeSettings(ma.Schema):
    instance = fields.String(validate=validate.OneOf(list(INSTANCES)))  # as the dashboard shows it, e.g. US-03
    base_url = fields.Url(load_default=None, schemes={"https", "http"})  # the REST endpoint, for other instances

    @ma.pre_load
    def normalise_instance(self, data: Any, **_: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("instance"), str):
            return {**data, "instance": data["instance"].strip().upper()}
        return data

    @ma.validates_schema
    def needs_an_endpoint(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("instance") and not data.get("base_url"):
            raise ma.ValidationError("Give the Braze instance (e.g. US-03) or its REST endpoint URL.", "instance")


def rest_endpoint(settings: Mapping[str, Any]) -> str:
    return str(settings.get("base_url") or INSTANCES[settings["instance"]]).rstrip("/")


def braze_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def errors_text(errors: Any) -> str:
    if not isinstance(errors, list):
        return ""
    return "; ".join(str(e.get("type") or e) if isinstance(e, dict) else str(e) for e in errors[:3])


class BrazeConnector(Connector):
    key = "braze"
    label = "Braze"
    credentials_schema = BrazeCredentials
    settings_schema = BrazeSettings
    example_settings = MappingProxyType({"api_key": "00000000-0000-4000-8000-0123456789ab", "instance": "US-01"})
    capabilities = Capabilities(identities=("external_id", "email", "phone"), rate_limit_per_second=3000 / 3)

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        customer = event.customer
        if customer.external_id:
            identity = {"external_id": customer.external_id}
        elif customer.email:
            identity = {"email": customer.email}
        elif customer.phone and E164.fullmatch(customer.phone):
            identity = {"phone": customer.phone}
        else:
            raise SkipEvent("missing_identity", "Braze needs an external id, an email or an E.164 phone number")
        properties = {str(k).lstrip("$"): v for k, v in event.properties.items()}  # keys may not start with $
        for name, value in first_product(event.properties).items():
            properties.setdefault(name, value)
        when = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
        key = settings["api_key"]
        return Request(
            "POST",
            f"{rest_endpoint(settings)}/users/track",
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            json={
                "events": [
                    {
                        **identity,
                        "name": event.name,
                        "time": when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                        "properties": properties,
                    }
                ]
            },
            secrets=(key,),
        )

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        outcome = default_classify(response, error)
        if response is None:
            return outcome
        body = braze_body(response)
        errors = errors_text(body.get("errors"))
        if outcome.kind == OutcomeKind.DELIVERED:
            # Braze answers 2xx for a request with non-fatal errors and skips the objects named in `errors`
            # (braze.com/docs/api/errors): with one event per request, any error means it was not recorded.
            if errors:
                return Outcome(
                    OutcomeKind.PERMANENT, f"HTTP {response.status_code}: event not recorded: {errors}"[:300]
                )
            return outcome
        message = body.get("message")
        text = "; ".join(str(p) for p in (message, errors) if p)
        reason = f"HTTP {response.status_code}: {text}"[:300] if text else outcome.reason
        return Outcome(outcome.kind, reason, outcome.retry_after)
