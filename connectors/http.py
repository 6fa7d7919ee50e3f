"""The one place that sends HTTP: timeouts, connection reuse, no redirects, no private destinations.

Private, loopback, link-local and other non-global addresses are refused unless the client allows
them (``HUB_ALLOW_PRIVATE_DESTINATIONS``) or the destination is a trusted origin (the hub's own
address, for its built-in sandbox). The check runs on the address the socket actually connected to,
so a hostname that resolves to a public address at first and a private one later gains nothing.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from connectors.base import Request

REDACTED = "[redacted]"
ALWAYS_REDACTED = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
SECRET_HINTS = ("token", "secret", "key")
BODY_LIMIT = 10_000


class TransportError(Exception):
    """No usable answer: ``kind`` is timeout, connection, blocked or invalid_url. The message holds no secret."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class BlockedDestination(TransportError):
    def __init__(self, message: str) -> None:
        super().__init__("blocked", message)


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _check_socket(sock: socket.socket) -> None:
    address = sock.getpeername()[0]
    if not _is_public(address):
        sock.close()
        raise BlockedDestination(f"destination address {address} is private or reserved")


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_socket(sock)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_socket(sock)  # before the TLS handshake: nothing is sent to a private address
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class HttpClient:
    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        allow_private: bool = False,
        trusted_origins: Iterable[str] = (),
        user_agent: str = "Tidings/0.1",
    ) -> None:
        self.timeout = (connect_timeout, read_timeout)
        self.allow_private = allow_private
        self.trusted_origins = {_origin(o) for o in trusted_origins}
        self.session = requests.Session()
        self.headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate", "Accept": "*/*"}
        # Proxy variables from the environment are not used: looking them up costs a scan of os.environ
        # on every request, and a platform call should not be routed somewhere nobody configured.
        self.session.trust_env = False
        if not allow_private:
            guarded = _GuardedAdapter(pool_connections=20, pool_maxsize=20)
            self.session.mount("http://", guarded)
            self.session.mount("https://", guarded)
            for origin in self.trusted_origins:
                self.session.mount(origin + "/", HTTPAdapter())

    def send(self, request: Request) -> requests.Response:
        parts = urlsplit(request.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("invalid_url", f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        if not self.allow_private and _origin(request.url) not in self.trusted_origins:
            host = parts.hostname.rstrip(".")
            if host == "localhost" or host.endswith(".localhost"):
                raise BlockedDestination(f"destination {host} is a loopback name")
            try:
                literal = _is_public(host)
            except ValueError:
                pass  # a name: checked on the connected socket
            else:
                if not literal:
                    raise BlockedDestination(f"destination address {host} is private or reserved")
        try:
            # Prepared directly and sent on the session: none of Session.request's per-call merging of
            # cookies, environment and settings, which a platform call never needs.
            prepared = requests.Request(
                request.method,
                request.url,
                headers={**self.headers, **request.headers},
                json=request.json if request.data is None else None,
                data=request.data,
            ).prepare()
            return self.session.send(prepared, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise TransportError("timeout", f"timed out talking to {parts.hostname}") from None
        except requests.ConnectionError as error:
            cause = error.__context__ if isinstance(error.__context__, BlockedDestination) else None
            if cause is not None:
                raise cause from None
            raise TransportError("connection", f"could not connect to {parts.hostname}") from None
        except requests.RequestException as error:
            raise TransportError("connection", f"request to {parts.hostname} failed: {type(error).__name__}") from None

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"<HttpClient allow_private={self.allow_private}>"


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def redact(request: Request) -> dict[str, Any]:
    """The request as sent, fit to keep: secrets and credential headers replaced by "[redacted]"."""
    secrets = tuple(s for s in request.secrets if s)
    headers = {}
    for name, value in request.headers.items():
        lowered = name.lower()
        secret_name = any(hint in lowered for hint in SECRET_HINTS) and lowered != "idempotency-key"
        if lowered in ALWAYS_REDACTED or secret_name:
            headers[name] = REDACTED
        else:
            headers[name] = _scrub(value, secrets)
    body: Any
    if request.json is not None:
        body = _scrub(request.json, secrets)
    elif request.data is not None:
        text = request.data.decode("utf-8", "replace")
        try:
            body = _scrub(json.loads(text), secrets)
        except ValueError:
            body = _scrub(text[:BODY_LIMIT], secrets)
    else:
        body = None
    return {"method": request.method, "url": _scrub(request.url, secrets), "headers": headers, "body": body}
