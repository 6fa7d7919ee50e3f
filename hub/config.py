"""Configuration: every ``HUB_*`` environment variable is parsed here, strictly, once.

A bad value stops start-up with a :class:`ConfigError` naming the variable. Nothing
else in the code base reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

T = TypeVar("T")

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Seconds to wait after each failed attempt: with the first try, eight attempts over about 27 hours,
as Svix does (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h)."""


class ConfigError(ValueError):
    """A configuration value is missing or malformed. The message names the variable."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _number(kind: Callable[[str], T], minimum: float | None = None) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
        if minimum is not None and value < minimum:  # type: ignore[operator]
            raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
        return value

    return parse


def _url(*schemes: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip()
        parts = urlsplit(value)
        if parts.scheme.split("+")[0] not in schemes:
            raise ConfigError(f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}")
        if parts.scheme.split("+")[0] != "sqlite" and parts.scheme != "unix" and not parts.hostname:
            raise ConfigError(f"{name} has no host: {value!r}")
        return value.rstrip("/") if parts.scheme.startswith("http") else value

    return parse


def _schedule(name: str, raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated seconds, e.g. 5,300,1800; got {raw!r}") from None
    if not values or any(v < 0 for v in values):
        raise ConfigError(f"{name} must list at least one non-negative number of seconds, got {raw!r}")
    return values


def _secret_keys(name: str, raw: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not keys:
        raise ConfigError(f"{name} must hold at least one key")
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{name}: key {position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with: python -c "
                "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None
    return keys


def _log_level(name: str, raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR; got {raw!r}")
    return value


@dataclass(frozen=True)
class Config:
    instance_path: Path = field(default_factory=lambda: Path("instance").resolve())
    database_url: str = ""  # empty: a SQLite file in the instance folder
    redis_url: str = ""  # empty: an embedded redis-server under the instance folder
    secret_keys: tuple[str, ...] = ()  # newest first; empty: one generated and kept in the instance folder
    public_url: str = "http://127.0.0.1:8000"
    allow_private_destinations: bool = False
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = 0.1
    max_rate_limited: int = 50  # 429 answers tolerated per action before it fails
    # Multiplies every connector's published rate limit; 0 turns rate limiting off. Only for a test platform
    # (a stub, a staging server) that takes more than the real one: the real platform answers 429 otherwise.
    rate_limit_scale: float = 1.0
    lease_seconds: float = 300.0
    dispatch_interval: float = 1.0
    dispatch_batch: int = 1000
    job_batch: int = 100
    workers: int = 2
    queue: str = "tidings"
    http_connect_timeout: float = 5.0
    http_read_timeout: float = 15.0
    log_level: str = "INFO"
    testing: bool = False

    @property
    def embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    def with_overrides(self, **overrides: Any) -> Config:
        return replace(self, **overrides)


# variable name -> (field name, parser)
_VARIABLES: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "HUB_INSTANCE_PATH": ("instance_path", lambda n, v: Path(v).expanduser().resolve()),
    "HUB_DATABASE_URL": ("database_url", _url("sqlite", "postgresql", "postgres")),
    "HUB_REDIS_URL": ("redis_url", _url("redis", "rediss", "unix")),
    "HUB_SECRET_KEYS": ("secret_keys", _secret_keys),
    "HUB_PUBLIC_URL": ("public_url", _url("http", "https")),
    "HUB_ALLOW_PRIVATE_DESTINATIONS": ("allow_private_destinations", _bool),
    "HUB_RETRY_SCHEDULE": ("retry_schedule", _schedule),
    "HUB_RETRY_JITTER": ("retry_jitter", _number(float, 0)),
    "HUB_MAX_RATE_LIMITED": ("max_rate_limited", _number(int, 1)),
    "HUB_RATE_LIMIT_SCALE": ("rate_limit_scale", _number(float, 0)),
    "HUB_LEASE_SECONDS": ("lease_seconds", _number(float, 0.1)),
    "HUB_DISPATCH_INTERVAL": ("dispatch_interval", _number(float, 0.01)),
    "HUB_DISPATCH_BATCH": ("dispatch_batch", _number(int, 1)),
    "HUB_JOB_BATCH": ("job_batch", _number(int, 1)),
    "HUB_WORKERS": ("workers", _number(int, 1)),
    "HUB_QUEUE": ("queue", lambda n, v: v.strip() or "tidings"),
    "HUB_HTTP_CONNECT_TIMEOUT": ("http_connect_timeout", _number(float, 0.1)),
    "HUB_HTTP_READ_TIMEOUT": ("http_read_timeout", _number(float, 0.1)),
    "HUB_LOG_LEVEL": ("log_level", _log_level),
}
FIELDS = {f.name for f in fields(Config)}


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Build the configuration from ``HUB_*`` variables, then ``overrides`` (field names)."""
    environ = os.environ if environ is None else environ
    unknown = sorted(k for k in environ if k.startswith("HUB_") and k not in _VARIABLES)
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]}; known settings: {', '.join(sorted(_VARIABLES))}")
    values: dict[str, Any] = {}
    for name, (attr, parse) in _VARIABLES.items():
        raw = environ.get(name)
        if raw is not None and raw.strip() != "":
            values[attr] = parse(name, raw)
    bad = sorted(set(overrides) - FIELDS)
    if bad:
        raise ConfigError(f"unknown configuration field {bad[0]}")
    values.update(overrides)
    config = Config(**values)
    return _complete(config)


def _complete(config: Config) -> Config:
    """Fill the embedded defaults: the database file and the secret key file."""
    changes: dict[str, Any] = {}
    if not config.database_url:
        changes["database_url"] = f"sqlite:///{config.instance_path / 'tidings.db'}"
    if not config.secret_keys:
        if config.database_url and not config.database_url.startswith("sqlite"):
            raise ConfigError(
                "HUB_SECRET_KEYS must be set when HUB_DATABASE_URL points at a shared database, "
                "so every process encrypts credentials with the same keys"
            )
        changes["secret_keys"] = (_instance_secret_key(config.instance_path),)
    return replace(config, **changes) if changes else config


def _instance_secret_key(instance_path: Path) -> str:
    path = instance_path / "secret.key"
    instance_path.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = Fernet.generate_key()
        # O_EXCL: when several processes start at once, one writes and the others read its key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
    for _ in range(50):
        key_text = path.read_text().strip()
        if key_text:
            return _secret_keys(str(path), key_text)[0]
        import time

        time.sleep(0.01)
    raise ConfigError(f"{path} is empty: remove it or set HUB_SECRET_KEYS")
