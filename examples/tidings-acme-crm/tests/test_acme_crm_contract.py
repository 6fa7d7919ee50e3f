"""The whole contract suite, from one class: this is all a connector author's own tests need to start."""

from acme_tidings.connector import AcmeCrmConnector

from connectors.kit import ConnectorContract


class TestAcmeCrmContract(ConnectorContract):
    connector_class = AcmeCrmConnector
    sample_settings = AcmeCrmConnector.example_settings
