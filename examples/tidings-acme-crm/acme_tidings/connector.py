"""Acme CRM: a worked example of a connector in its own package (see docs/connectors.md)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import marshmallow as ma
from marshmallow import fields

from connectors.base import Capabilities, Connector, ConnectorError, Event, Request
from connectors.http import HttpClient

BASE = "https://api.acme-crm.example"


class Credentials(ma.Schema):
    api_key = fields.String(required=True)


class Settings(ma.Schema):
    base_url = fields.Url(load_default=BASE)


class AcmeCrmConnector(Connector):
    key = "acme_crm"
    label = "Acme CRM"
    credentials_schema = Credentials
    settings_schema = Settings
    capabilities = Capabilities(identities=("email",), rate_limit_per_second=2, dedupe_field="dedupe")
    example_settings = MappingProxyType({"api_key": "acme_example_key_0123"})

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)  # skips events without an email (capabilities.identities)
        key = settings["api_key"]
        return Request(
            "POST",
            f"{settings['base_url']}/events",
            {"Authorization": f"Bearer {key}"},
            json={"event": event.name, "email": event.customer.email, "dedupe": event.id},
            secrets=(key,),
        )

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        key = settings["api_key"]
        answer = http.send(
            Request("GET", f"{settings['base_url']}/me", {"Authorization": f"Bearer {key}"}, secrets=(key,))
        )
        if answer.status_code in (401, 403):
            raise ConnectorError("Acme CRM rejected the API key", field="api_key", credentials=True)
        if answer.status_code != 200:
            raise ConnectorError(f"Acme CRM answered HTTP {answer.status_code} when checking the key")
