"""What every process of the hub shares: config, database, Redis, the secret box and the HTTP client.

Built lazily, never at import. Web (create_app), workers and the dispatcher each hold one.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import redis
from rq import Queue

from connectors.http import HttpClient
from hub import embedded_redis
from hub.backoff import RetryPolicy
from hub.caches import Caches
from hub.config import Config, load
from hub.crypto import SecretBox
from hub.db import Database
from hub.ratelimit import RateLimiter

if TYPE_CHECKING:
    from hub.inbox import Receiver


class Runtime:
    def __init__(self, config: Config) -> None:
        self.config = config

    @cached_property
    def db(self) -> Database:
        return Database(self.config.database_url)

    @cached_property
    def box(self) -> SecretBox:
        return SecretBox(self.config.secret_keys)

    @cached_property
    def redis_url(self) -> str:
        if self.config.redis_url:
            return self.config.redis_url
        return embedded_redis.ensure_running(self.config.instance_path)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    @cached_property
    def queue(self) -> Queue:
        return Queue(self.config.queue, connection=self.redis)

    @cached_property
    def caches(self) -> Caches:
        """This process's ingest caches (tokens, store configuration); see hub.caches."""
        return Caches()

    @cached_property
    def receiver(self) -> Receiver:
        """This process's writer of triggers received for later (hub.inbox)."""
        from hub.inbox import Receiver

        return Receiver(self.db)

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.redis)

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.config.retry_schedule, jitter=self.config.retry_jitter)

    @cached_property
    def public_origin(self) -> str:
        parts = urlsplit(self.config.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @cached_property
    def http(self) -> HttpClient:
        return HttpClient(
            connect_timeout=self.config.http_connect_timeout,
            read_timeout=self.config.http_read_timeout,
            allow_private=self.config.allow_private_destinations,
            # The built-in sandbox is served by the hub itself, usually on a loopback address.
            trusted_origins=(self.public_origin,),
        )

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
        if "http" in self.__dict__:
            self.http.close()
        if "redis" in self.__dict__:
            self.redis.close()


_current: Runtime | None = None
_current_pid: int | None = None
_lock = threading.Lock()


def current() -> Runtime:
    """The process's runtime (workers build it from the environment on first use, after any fork)."""
    global _current, _current_pid
    with _lock:
        if _current is None or _current_pid != os.getpid():
            _current = Runtime(load())
            _current_pid = os.getpid()
        return _current


def set_current(runtime: Runtime | None) -> None:
    global _current, _current_pid
    with _lock:
        _current = runtime
        _current_pid = os.getpid() if runtime else None


def settle() -> None:
    """For a long-running worker or dispatcher, once everything it runs is imported: load the connectors and
    freeze what is in memory now out of the garbage collector's sight. Every full collection would otherwise
    walk all of SQLAlchemy, Flask and rq again; in a delivery batch that was about a third of the CPU."""
    from connectors import registry
    from hub import delivery  # noqa: F401  (loaded by the first job otherwise)

    registry.available()
    gc.collect()
    gc.freeze()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one batch: a batch makes tens of thousands of short-lived
    objects, and the collections they set off (each walking every live object of the process) cost about
    a quarter of the batch's time. Reference counting still frees them; the collector runs again after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
