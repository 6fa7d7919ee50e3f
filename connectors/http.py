"""The one place that sends HTTP: timeouts, User-Agent, connection reuse, no redirects, no private destinations.

Private, loopback, link-local, reserved and multicast addresses are refused unless the client allows
them (``HUB_ALLOW_PRIVATE_DESTINATIONS``) or the URL's origin is trusted (the hub's own address, for
its built-in sandbox). Each new connection checks every address the host resolves to before
connecting, then the address the socket actually connected to (the name is resolved again when
connecting, so a rebinding DNS answer gains nothing), before a byte is sent.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.hooks import default_hooks
from requests.models import complexjson  # type: ignore[attr-defined]  # json, or simplejson when installed
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError

from connectors.base import Request, json_text

REDACTED = "[redacted]"
ALWAYS_REDACTED = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
SECRET_HINTS = ("token", "secret", "key")
NOT_SECRET = {"idempotency-key"}  # the dedupe value: kept visible so a replay can be matched to its attempt
BODY_LIMIT = 10_000
POOL_SIZE = 20
RESPONSE_LIMIT = 1_000_000
URL_CACHE_SIZE = 4096  # prepared URLs kept per client: one per platform endpoint and webhook address


class TransportError(Exception):
    """No usable answer. ``kind``: timeout, connection, blocked or invalid_url. The message holds no secret."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class BlockedDestination(TransportError):
    """The destination is private or reserved: permanent unless the hub is configured to allow it."""

    def __init__(self, message: str) -> None:
        super().__init__("blocked", message)


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 scope id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _refuse_unless_public(address: str, host: str) -> None:
    # The message names the host, not the address: a user must not learn how internal names resolve.
    if not is_public(address):
        raise BlockedDestination(f"destination {host} is a private or reserved address")


class _Guard:
    """Mixed into urllib3's connections. _new_conn rather than connect(): it serves HTTP and HTTPS alike and
    runs before the TLS handshake, so nothing at all is sent to a refused address."""

    host: str
    port: int

    def _new_conn(self) -> socket.socket:
        try:
            resolved = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError:
            resolved = []  # the connect below raises urllib3's usual NameResolutionError
        for *_, sockaddr in resolved:
            _refuse_unless_public(str(sockaddr[0]), self.host)
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        try:
            _refuse_unless_public(sock.getpeername()[0], self.host)
        except BaseException:
            sock.close()
            raise
        return sock


class _GuardedHTTPConnection(_Guard, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guard, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def origin(url: str) -> str:
    """scheme://host:port, lower-cased, with the default port spelled out."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}".lower()


class HttpClient:
    """One pooled session for a process. ``send`` returns any answer (3xx included) or raises TransportError."""

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
        self.trusted_origins = frozenset(origin(o) for o in trusted_origins)
        self.session = requests.Session()
        # No proxies or .netrc from the environment: a proxy would hide the real destination from the guard.
        self.session.trust_env = False
        self.session.headers["User-Agent"] = user_agent
        self._open = HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
        self._guarded = self._open if allow_private else _GuardedAdapter(POOL_SIZE, POOL_SIZE)
        self.session.mount("http://", self._guarded)
        self.session.mount("https://", self._guarded)
        self._urls: dict[str, str] = {}

    def send(self, request: Request) -> requests.Response:
        try:
            parts = urlsplit(request.url)
            trusted = origin(request.url) in self.trusted_origins
        except ValueError:  # a bad port or IPv6 literal
            raise TransportError("invalid_url", "the URL cannot be parsed") from None
        host = parts.hostname or ""
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise TransportError("invalid_url", f"not an http(s) URL: {parts.scheme}://{host}")
        # The adapter is called directly: no redirects (only Session.send follows them), no shared cookie jar
        # (it would carry one store's platform cookies into another's requests), and the origin picks the guard.
        adapter = self._open if trusted else self._guarded
        try:
            prepared = self.prepare(request)
            response = adapter.send(prepared, stream=True, timeout=self.timeout)
            _read_capped(response)
            # An answer that names no charset (no Content-Type, or one like Klaviyo's application/vnd.api+json) is
            # read as UTF-8: requests would otherwise guess the encoding from the bytes each time .text is read.
            response.encoding = response.encoding or "utf-8"
        except requests.Timeout:
            raise TransportError("timeout", f"timed out talking to {host}") from None
        except requests.exceptions.InvalidURL:
            raise TransportError("invalid_url", f"the URL for {host} is not valid") from None
        except requests.RequestException as error:
            if isinstance(error.__context__, ReadTimeoutError):  # a body that stalled half-way
                raise TransportError("timeout", f"timed out reading from {host}") from None
            raise TransportError("connection", f"could not talk to {host}: {type(error).__name__}") from None
        return response

    def prepare(self, request: Request) -> requests.PreparedRequest:
        """The request as ``PreparedRequest.prepare`` makes it, without the session's merging (cookies, auth, hooks,
        proxies: none of which apply here): the session's headers (User-Agent and requests' defaults) under the
        request's own, checked as requests checks them; the body as bytes with its length.

        Built directly for the only bodies a connector sends (bytes, a JSON value or none), and with each URL
        prepared once (``prepare_url``: parsing, IDNA, requoting), because preparing the same URL and headers
        again was a tenth of a delivery's CPU. ``tests/test_http.py`` checks it against ``prepare``."""
        headers = CaseInsensitiveDict(self.session.headers)
        for header in request.headers.items():
            check_header_validity(header)
        headers.update(request.headers)
        body = request.data or None  # an empty body is no body, as requests has it
        if body is None and request.json is not None:
            body = complexjson.dumps(request.json, allow_nan=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        method = request.method.upper()
        if body is not None:
            headers["Content-Length"] = str(len(body))
        elif method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = self._prepared_url(request.url)
        prepared.headers = headers  # type: ignore[assignment]  # str values, as prepare_headers leaves them
        prepared.body = body
        prepared.hooks = default_hooks()
        return prepared

    def _prepared_url(self, url: str) -> str:
        prepared = self._urls.get(url)
        if prepared is None:
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            probe = requests.PreparedRequest()
            probe.prepare_url(url, None)
            prepared = self._urls[url] = str(probe.url)
        return prepared

    def close(self) -> None:
        self.session.close()
        self._open.close()

    def __repr__(self) -> str:
        return f"<HttpClient allow_private={self.allow_private} trusted={sorted(self.trusted_origins)}>"


def _read_capped(response: requests.Response) -> None:
    """Read the body, keeping at most RESPONSE_LIMIT bytes: a platform's answer is only classified and excerpted."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > RESPONSE_LIMIT:
            response.close()  # the rest is never read, so this connection cannot be reused
            break
    response._content = b"".join(chunks)[:RESPONSE_LIMIT]


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_scrub(str(k), secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


def _secret_variants(request: Request) -> tuple[str, ...]:
    variants = {v for s in request.secrets if s for v in (s, quote(s, safe=""), quote(s))}
    return tuple(sorted(variants, key=len, reverse=True))  # longest first: no secret survives half-replaced


def _redacted_head(request: Request, secrets: tuple[str, ...]) -> dict[str, Any]:
    headers = {}
    for name, value in request.headers.items():
        lowered = name.lower()
        hinted = any(hint in lowered for hint in SECRET_HINTS) and lowered not in NOT_SECRET
        headers[name] = REDACTED if lowered in ALWAYS_REDACTED or hinted else _scrub(value, secrets)
    return {"method": request.method, "url": _scrub(request.url, secrets), "headers": headers}


def redact(request: Request) -> dict[str, Any]:
    """The request as sent, fit to keep: secrets and credential headers replaced by "[redacted]".

    ``body`` is the JSON value (``json``, or ``data`` that parses as JSON) or else the text, cut to 10 kB.
    """
    secrets = _secret_variants(request)
    body: Any = None
    # Walking a body value by value is the slow part of recording an attempt: first look for the secrets in its
    # JSON text, and walk only a body that holds one.
    if request.json is not None:
        body = _scrub(request.json, secrets) if _holds_secret(json.dumps(request.json), secrets) else request.json
    elif request.data is not None:
        text = request.data.decode("utf-8", "replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            body = _scrub(text, secrets)[:BODY_LIMIT]  # scrubbed before cutting: no half secret at the end
        else:
            body = _scrub(parsed, secrets) if _holds_secret(_canonical(text, parsed), secrets) else parsed
    return {**_redacted_head(request, secrets), "body": body}


def redact_text(request: Request, extra: dict[str, Any] | None = None, body_text: str | None = None) -> str:
    """``redact(request)``, with ``extra`` keys, as JSON text: what an attempt row stores.

    A body holding no secret is copied as the JSON text it already is (``body_text``, when the caller has it,
    must be the body as ``json.dumps`` writes it), instead of being parsed, walked and encoded again.
    """
    secrets = _secret_variants(request)
    head = json.dumps({**_redacted_head(request, secrets), **(extra or {})})
    canonical = body_text
    if body_text is None and request.json is not None:
        body_text = canonical = json.dumps(request.json)
    elif body_text is None and request.data is not None:
        text = request.data.decode("utf-8", "replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            body_text, canonical = text, _canonical(text, parsed)
    if canonical is None or _holds_secret(canonical, secrets):
        body_text = json.dumps(redact(request)["body"])
    return head[:-1] + ', "body": ' + (body_text or "null") + "}"


class Recorder:
    """``redact_text`` for many bodies sent with one method, URL, headers and secrets (the events of a batch):
    what they share is redacted and encoded once."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.secrets = _secret_variants(request)
        self.needles = _needles(self.secrets)  # what _holds_secret looks for, worked out once for every event
        self.head = json.dumps(_redacted_head(request, self.secrets))[:-1]

    def text(self, body_text: str, extra: dict[str, Any]) -> str:
        """The record of a request with this body (JSON text as ``json.dumps`` writes it) and ``extra`` keys."""
        # The keys and values as one object's members: one encoding, not two a key (orjson's where it writes the same
        # values; its text has no spaces, which the json column keeps as it is and every reader parses alike).
        return self.text_of(body_text, json_text(extra)[1:-1])

    def text_of(self, body_text: str, members: str) -> str:
        """``text`` with the extra keys given as JSON text already: an object's members without its braces, as
        ``json_text`` writes them (the bulk path writes its ``batch`` key for a thousand events a request)."""
        if any(needle in body_text for needle in self.needles):
            body_text = json.dumps(_scrub(json.loads(body_text), self.secrets))
        return self.head + (", " + members if members else "") + ', "body": ' + body_text + "}"


def _canonical(text: str, parsed: Any) -> str:
    """JSON text from elsewhere, escaped as json.dumps escapes it: escapes ("\\u0041", "\\/") could spell a secret
    that the text does not show as is."""
    return json.dumps(parsed) if "\\" in text else text


def _needles(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """The secrets as they may appear in JSON text: as they are, and as json.dumps escapes them inside a string."""
    return tuple(dict.fromkeys(v for secret in secrets for v in (secret, json.dumps(secret)[1:-1])))


def _holds_secret(json_text: str, secrets: tuple[str, ...]) -> bool:
    """Whether a secret appears in JSON text, as is or as json.dumps escapes it inside a string."""
    return any(needle in json_text for needle in _needles(secrets))
