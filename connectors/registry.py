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
def available() -> dict[str, type[Connector]]:
    found = {key: _checked(key, _import(path)) for key, path in BUILTINS.items()}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            log.warning("connector %r from %s ignored: a built-in has that key", entry.name, entry.value)
            continue
        try:
            found[entry.name] = _checked(entry.name, entry.load())
        except Exception:  # one broken plug-in must not take the hub down
            log.exception("connector %r from %s could not be loaded", entry.name, entry.value)
    return dict(sorted(found.items()))


@cache
def get(key: str) -> Connector:
    try:
        return available()[key]()
    except KeyError:
        raise UnknownConnector(key) from None


def reset() -> None:
    available.cache_clear()
    get.cache_clear()
