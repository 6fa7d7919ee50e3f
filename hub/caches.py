"""Per-process caches on the ingest path: API tokens, and each store's flows and integrations.

Both hang off the process's Runtime, so every gunicorn worker has its own and a test gets a fresh one.
Neither is a source of truth:

- A token is trusted for ``TOKEN_CACHE_SECONDS`` after it was last read from the database, so a
  revoked token (``revoked_at`` set) stops working within that many seconds in every process.
- A store's flows and integrations are kept with the store's ``config_version``, a counter the
  database bumps on every change to them (migration 0004). Ingest reads the counter in the query it
  makes anyway, and reloads when it moved: a change is seen by the very next trigger.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from hub.models import Integration
from hub.quiet import QuietHours

TOKEN_CACHE_SECONDS = 5.0
MAX_ENTRIES = 10_000  # a process serving more tokens or stores than this just reads the database more


@dataclass(frozen=True)
class CachedToken:
    token_id: int
    token_name: str
    store_id: int
    store_name: str
    event_prefix: str
    last_used_at: datetime | None
    read_at: float  # clock() when it was read from the database


class TokenCache:
    """token hash → who it is, trusted for ``ttl`` seconds. ``clock`` is injectable for tests."""

    def __init__(self, ttl: float = TOKEN_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._entries: dict[str, CachedToken] = {}

    def get(self, token_hash: str) -> CachedToken | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if self.clock() - entry.read_at >= self.ttl:
            self._entries.pop(token_hash, None)
            return None
        return entry

    def put(self, token_hash: str, entry: CachedToken) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token_hash] = entry

    def forget(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)


@dataclass(frozen=True)
class StepConfig:
    id: int
    position: int
    delay_seconds: int
    kind: str
    app: str | None
    event_name: str | None
    event_type: str | None
    channel: str | None
    template: str | None


@dataclass(frozen=True)
class FlowConfig:
    id: int
    name: str
    trigger: str
    steps: tuple[StepConfig, ...]


@dataclass
class StoreConfig:
    """A store's enabled flows and its integrations that are not disconnected, as of ``version``.

    The integrations are transient copies (never attached to a session), so a request may read but
    must not change them.
    """

    version: int
    flows: tuple[FlowConfig, ...]
    integrations: dict[str, Integration]  # by app
    quiet_hours: QuietHours | None = None
    by_trigger: dict[str, tuple[FlowConfig, ...]] = field(init=False)

    def __post_init__(self) -> None:
        by_trigger: dict[str, list[FlowConfig]] = {}
        for flow in self.flows:
            by_trigger.setdefault(flow.trigger, []).append(flow)
        self.by_trigger = {k: tuple(v) for k, v in by_trigger.items()}

    def integrations_by_id(self) -> dict[int, Integration]:
        return {i.id: i for i in self.integrations.values()}


class StoreConfigCache:
    def __init__(self) -> None:
        self._entries: dict[int, StoreConfig] = {}
        self._lock = threading.Lock()

    def get(self, store_id: int, version: int) -> StoreConfig | None:
        entry = self._entries.get(store_id)
        return entry if entry is not None and entry.version == version else None

    def latest(self, store_id: int) -> StoreConfig | None:
        """The store's config as last loaded, whatever its version: ingest writes with it on condition that the
        version it was loaded at is still the store's (``hub.flows``), and reloads when it is not."""
        return self._entries.get(store_id)

    def put(self, store_id: int, config: StoreConfig) -> None:
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[store_id] = config


class Caches:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.tokens = TokenCache(clock=clock)
        self.stores = StoreConfigCache()
