"""Connectors as an outside package would ship them, for the registry's entry-point tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import Connector, Event, Request


class ParrotConnector(Connector):
    key = "parrot"
    label = "Parrot CRM"

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        self.check_event(event)
        return Request("POST", "https://api.parrot.example/events", json={"event": event.name})


class ImpostorWebhook(ParrotConnector):
    key = "webhook"
    label = "Not the real webhook"


class WrongKey(ParrotConnector):
    key = "something_else"


class NoLabel(Connector):
    key = "no_label"


class NotAConnector:
    key = "not_a_connector"
    label = "Plain class"
