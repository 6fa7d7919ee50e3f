"""Which connectors exist: the built-ins, plus any package's ``tidings.connectors`` entry points.

The key is what the database stores, so it is explicit and stable; a clash with a built-in keeps
the built-in.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points

from connectors.base import Connector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tidings.connectors"
BUILTINS = {
    "attentive": "connectors.attentive:AttentiveConnector",
    "braze": "connectors.braze:BrazeConnector",
    "customerio": "connectors.customerio:CustomerioConnector",
    "iterable": "connectors.iterable:IterableConnector",
    "klaviyo": "connectors.klaviyo:KlaviyoConnector",
    "omnisend": "connectors.omnisend:OmnisendConnector",
    "postscript": "connectors.postscript:PostscriptConnector",
    "sandbox": "connectors.sandbox:SandboxConnector",
    "webhook": "connectors.webhook:WebhookConnector",
}


class UnknownConnector(KeyError):
    pass


def _import(path: str) -> type[Connector]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _checked(key: str, cls: object) -> type[Connector]:
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise TypeError(f"connector {key!r} is not a connectors.base.Connector subclass")
    if getattr(cls, "key", None) != key or not getattr(cls, "label", None):
        raise TypeError(f"connector {key!r} must declare key = {key!r} and a label")
    return cls


@cache
def _load() -> dict[str, type[Connector]]:
    # A broken built-in is our bug: it raises. A broken plug-in is logged and left out.
    found = {key: _checked(key, _import(path)) for key, path in BUILTINS.items()}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            kept = "a built-in" if entry.name in BUILTINS else "another package"
            log.warning("connector %r from %s ignored: %s has that key", entry.name, entry.value, kept)
            continue
        try:
            found[entry.name] = _checked(entry.name, entry.load())
        except Exception:  # one broken plug-in must not take the hub down
            log.exception("connector %r from %s could not be loaded", entry.name, entry.value)
    return dict(sorted(found.items()))


def available() -> dict[str, type[Connector]]:
    """Every connector class by key, sorted by key."""
    return dict(_load())


@cache
def get(key: str) -> Connector:
    """The shared instance for a key. Raises UnknownConnector."""
    try:
        cls = _load()[key]
    except KeyError:
        raise UnknownConnector(key) from None
    return cls()


def reset() -> None:
    """Forget what was loaded (tests that change the entry points)."""
    _load.cache_clear()
    get.cache_clear()
