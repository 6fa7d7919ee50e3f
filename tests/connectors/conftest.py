"""Fixtures for the connector tests: a real local HTTP server and a registry emptied around a test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors import registry
from tests.connectors.local_server import LocalServer


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer()
    yield local
    local.stop()


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()
