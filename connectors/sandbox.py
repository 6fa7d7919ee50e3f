"""Sandbox: the built-in test app that the hub itself serves (hub/sandbox.py is the platform side).

Wire protocol, as a small platform would have it: POST {base_url}/events with a bearer key, an
Idempotency-Key header and a JSON body; GET {base_url}/account to check the key. The remaining
settings are the sandbox's behaviour, which only its platform side reads.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    default_classify,
    event_body,
)

if TYPE_CHECKING:
    import requests

    from connectors.http import HttpClient


class SandboxCredentials(ma.Schema):
    api_key = fields.String(required=True, validate=validate.Length(min=8, max=200))


class SandboxSettings(ma.Schema):
    base_url = fields.Url(required=True, require_tld=False, schemes={"http", "https"})
    # Behaviour a tester sets: answer this status, with this Retry-After, after this long; fail this
    # share of requests with failure_status; or answer the statuses in script first, one per request.
    status = fields.Integer(allow_none=True, validate=validate.Range(min=200, max=599))
    retry_after = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=86400))
    latency_ms = fields.Integer(validate=validate.Range(min=0, max=30000))
    failure_rate = fields.Float(validate=validate.Range(min=0, max=1))
    failure_status = fields.Integer(validate=validate.Range(min=400, max=599))
    script = fields.List(fields.Integer(validate=validate.Range(min=200, max=599)), validate=validate.Length(max=100))


class SandboxConnector(Connector):
    key = "sandbox"
    label = "Sandbox (built-in test app)"
    credentials_schema = SandboxCredentials
    settings_schema = SandboxSettings
    example_settings = MappingProxyType(
        {"base_url": "http://127.0.0.1:8000/sandbox/1", "api_key": "sbx_example_key_0123456789"}
    )
    capabilities = Capabilities(identities=("email", "phone", "external_id"), dedupe_field="Idempotency-Key")

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        key = settings["api_key"]
        return Request(
            method="POST",
            url=f"{settings['base_url'].rstrip('/')}/events",
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": event.id, "Content-Type": "application/json"},
            json=event_body(event),
            secrets=(key,),
        )

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        """The default table; the reason is the sandbox's own {"error": {"message": ...}} where it gave one."""
        outcome = default_classify(response, error)
        if response is None or response.status_code < 400:
            return outcome
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return outcome
        if not isinstance(message, str) or not message.strip():
            return outcome
        return Outcome(outcome.kind, f"HTTP {response.status_code}: {message.strip()[:300]}", outcome.retry_after)

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        key = settings["api_key"]
        url = f"{settings['base_url'].rstrip('/')}/account"
        response = http.send(Request("GET", url, {"Authorization": f"Bearer {key}"}, secrets=(key,)))
        if response.status_code in (401, 403):
            raise ConnectorError("the sandbox rejected the API key", field="api_key", credentials=True)
        if response.status_code != 200:
            raise ConnectorError(f"the sandbox answered HTTP {response.status_code}")
