"""The registry: built-ins by dotted path, plus the tidings.connectors entry points."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from importlib.metadata import EntryPoint

import pytest

import connectors
from connectors import registry
from connectors.attentive import AttentiveConnector
from connectors.base import Connector
from connectors.braze import BrazeConnector
from connectors.customerio import CustomerioConnector
from connectors.iterable import IterableConnector
from connectors.klaviyo import KlaviyoConnector
from connectors.omnisend import OmnisendConnector
from connectors.postscript import PostscriptConnector
from connectors.sandbox import SandboxConnector
from connectors.webhook import WebhookConnector

pytestmark = pytest.mark.usefixtures("fresh_registry")
PLUGINS = "tests.connectors.plugin_samples"


def install(monkeypatch: pytest.MonkeyPatch, **entries: str) -> None:
    """Pretend packages declared these entry points (name -> "module:Class")."""
    found = [EntryPoint(name, value, registry.ENTRY_POINT_GROUP) for name, value in entries.items()]
    monkeypatch.setattr(registry, "entry_points", lambda group: found if group == registry.ENTRY_POINT_GROUP else [])
    registry.reset()


def test_the_built_ins_are_registered_under_their_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    assert registry.available() == {
        "attentive": AttentiveConnector,
        "braze": BrazeConnector,
        "customerio": CustomerioConnector,
        "iterable": IterableConnector,
        "klaviyo": KlaviyoConnector,
        "omnisend": OmnisendConnector,
        "postscript": PostscriptConnector,
        "sandbox": SandboxConnector,
        "webhook": WebhookConnector,
    }


def test_every_connector_module_in_the_package_is_registered() -> None:
    defined = {}
    for module in pkgutil.iter_modules(connectors.__path__):
        if module.name in ("base", "kit", "http", "registry"):
            continue
        loaded = importlib.import_module(f"connectors.{module.name}")
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(cls, Connector) and cls is not Connector and cls.__module__ == loaded.__name__:
                defined[cls.key] = f"{cls.__module__}:{cls.__name__}"
    assert defined == registry.BUILTINS


def test_get_returns_one_shared_instance() -> None:
    first = registry.get("webhook")
    assert isinstance(first, WebhookConnector)
    assert registry.get("webhook") is first


def test_an_unknown_key_raises_unknown_connector() -> None:
    with pytest.raises(registry.UnknownConnector) as caught:
        registry.get("myspace")
    assert isinstance(caught.value, KeyError)
    assert caught.value.args == ("myspace",)


def test_a_connector_from_an_entry_point_loads_and_sorts_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, parrot=f"{PLUGINS}:ParrotConnector")
    assert list(registry.available()) == sorted({*registry.BUILTINS, "parrot"})
    assert registry.get("parrot").label == "Parrot CRM"


def test_a_built_in_wins_a_key_clash_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install(monkeypatch, webhook=f"{PLUGINS}:ImpostorWebhook")
    with caplog.at_level(logging.WARNING, logger="connectors.registry"):
        assert registry.available()["webhook"] is WebhookConnector
    assert "ignored" in caplog.text and "ImpostorWebhook" in caplog.text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("something", f"{PLUGINS}:WrongKey"),  # key differs from the entry point's name
        ("no_label", f"{PLUGINS}:NoLabel"),
        ("not_a_connector", f"{PLUGINS}:NotAConnector"),
        ("missing", "tidings_no_such_package.connector:Missing"),
    ],
)
def test_a_broken_plug_in_is_logged_and_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, name: str, value: str
) -> None:
    install(monkeypatch, parrot=f"{PLUGINS}:ParrotConnector", **{name: value})
    with caplog.at_level(logging.ERROR, logger="connectors.registry"):
        assert list(registry.available()) == sorted({*registry.BUILTINS, "parrot"})
    assert repr(name) in caplog.text
    with pytest.raises(registry.UnknownConnector):
        registry.get(name)


def test_available_hands_out_a_copy() -> None:
    registry.available().clear()
    assert "webhook" in registry.available()


def test_reset_forgets_loaded_connectors(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)
    assert "parrot" not in registry.available()
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [EntryPoint("parrot", f"{PLUGINS}:ParrotConnector", group)]
    )
    assert "parrot" not in registry.available()  # cached
    registry.reset()
    assert "parrot" in registry.available()
