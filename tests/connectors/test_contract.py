"""The contract suite, run over every built-in connector."""

from __future__ import annotations

from connectors.kit import ConnectorContract
from connectors.sandbox import SandboxConnector
from connectors.webhook import WebhookConnector
from tests.connectors.samples import SANDBOX_SETTINGS, WEBHOOK_SETTINGS


class TestWebhookContract(ConnectorContract):
    connector_class = WebhookConnector
    sample_settings = WEBHOOK_SETTINGS
    golden_name = "webhook"


class TestSandboxContract(ConnectorContract):
    connector_class = SandboxConnector
    sample_settings = SANDBOX_SETTINGS
    golden_name = "sandbox"


def test_the_contract_base_itself_is_not_collected() -> None:
    assert ConnectorContract.__test__ is False
    assert TestWebhookContract.__test__ is True
