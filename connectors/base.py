"""The connector contract: what a connector author writes.

A connector is one class in one module. It declares what it needs (settings and
credentials schemas, identities, capabilities), turns a canonical :class:`Event`
into a :class:`Request` without any I/O (:meth:`Connector.build_request`), and
classifies the platform's answer into an :class:`Outcome`
(:meth:`Connector.classify`). A platform with a bulk endpoint also implements the batch contract
(:meth:`Connector.batch_entry`, :meth:`Connector.build_batch_request`, :meth:`Connector.classify_batch`)
and declares ``Capabilities.batch_size > 1``. Sending happens in one place only:
:mod:`connectors.http`. The hub owns retries, scheduling and state; a connector
never sleeps, retries or touches a database.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import marshmallow as ma
import orjson

if TYPE_CHECKING:
    import requests

    from connectors.http import HttpClient


@dataclass(frozen=True)
class Customer:
    email: str | None = None
    phone: str | None = None  # E.164 when known
    first_name: str | None = None
    last_name: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class Event:
    """A canonical integration event, as the hub hands it to every connector.

    ``id`` is the action's idempotency key: stable across retries and replays,
    so connectors put it in the platform's dedupe field.
    """

    id: str
    name: str  # as the platform should show it, store prefix included
    type: str  # canonical type, e.g. "review_request", "review_submitted", "test"
    occurred_at: datetime  # timezone-aware, UTC; for a flow step, when the step came due (trigger time + delay)
    customer: Customer
    properties: Mapping[str, Any] = field(default_factory=dict)
    test: bool = False


@dataclass(frozen=True)
class Request:
    """What a connector wants sent. ``secrets`` are values to redact when recorded."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    data: bytes | None = None
    secrets: tuple[str, ...] = ()


class OutcomeKind(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # transient: try again later (5xx, 408, timeouts)
    RATE_LIMITED = "rate_limited"  # 429: try again later, costs no retry budget
    PERMANENT = "permanent"  # the platform will never accept this request
    CREDENTIALS = "credentials"  # 401/403: hold the integration, don't burn attempts


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    reason: str = ""  # short human text, from the platform where it said why
    retry_after: float | None = None  # seconds, from Retry-After or the platform's own header


class SkipEvent(Exception):
    """Raised by ``build_request`` when this event must not go to this platform.

    ``code`` is a stable reason code (e.g. ``missing_identity``, ``unsupported_event``).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ConnectorError(Exception):
    """A failed ``verify`` or an unusable configuration. The message is safe to show."""

    def __init__(self, message: str, *, field: str | None = None, credentials: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.credentials = credentials


@dataclass(frozen=True)
class Capabilities:
    identities: tuple[str, ...] = ("email",)  # any one of these must be present
    event_types: tuple[str, ...] | None = None  # None: every event type
    # More than 1: the connector implements the batch contract, and the hub sends up to this many events a
    # request whenever a job holds two or more of them.
    batch_size: int = 1
    batch_max_bytes: int | None = None  # a batch request's JSON body stays under this many bytes
    rate_limit_per_second: float | None = None  # single requests
    batch_rate_limit_per_second: float | None = None  # batch requests: one token per request, not per event
    batch_rate_burst: int | None = None  # batch requests allowed at once (default: one second's worth)
    dedupe_field: str | None = None
    staleness_seconds: int | None = None
    # The credential check's own limit, where the platform documents one for the endpoint verify calls: the hub
    # allows one check at a time at this steady rate (a stricter pace than any burst the platform allows).
    verify_rate_per_second: float | None = None
    sms: bool = False  # its events lead to text messages: the store's quiet hours for SMS apply


class EmptySchema(ma.Schema):
    pass


class Connector:
    """Base class. Subclasses set the class attributes and ``build_request``.

    ``settings`` passed to every method is the merged, validated mapping of the
    integration's credentials and settings (credentials fields are all secret).
    """

    key: ClassVar[str]
    label: ClassVar[str]
    credentials_schema: ClassVar[type[ma.Schema]] = EmptySchema
    settings_schema: ClassVar[type[ma.Schema]] = EmptySchema
    capabilities: ClassVar[Capabilities] = Capabilities()
    # Answers this connector classifies differently from the default table on purpose (status or "timeout" →
    # kind), each with a comment saying why. The contract kit checks ``classify`` against the table with these.
    classification_quirks: ClassVar[Mapping[int | str, OutcomeKind]] = {}
    # Settings that load through both schemas (fake keys, example URLs): `hub connectors check KEY` runs the
    # contract suite with them.
    example_settings: ClassVar[Mapping[str, Any] | None] = None

    def build_request(self, event: Event, settings: Mapping[str, Any]) -> Request:
        """Pure: no I/O. Raise :class:`SkipEvent` for events this platform can't take."""
        raise NotImplementedError

    def check_event(self, event: Event) -> None:
        """Raise :class:`SkipEvent` unless the capabilities accept this event: call it first in build_request."""
        types = self.capabilities.event_types
        if types is not None and event.type not in types:
            raise SkipEvent("unsupported_event", f"{self.label} does not take {event.type} events")
        identities = self.capabilities.identities
        if not any(getattr(event.customer, name, None) for name in identities):
            raise SkipEvent("missing_identity", f"the customer has none of: {', '.join(identities)}")

    def classify(self, response: requests.Response | None, error: Exception | None = None) -> Outcome:
        """Default table: 2xx delivered; 408/425/429/5xx and transport errors retry;
        401/403 credentials; any other 4xx (and 3xx, redirects are never followed)
        permanent. Override for vendor quirks, with a comment saying why."""
        return default_classify(response, error)

    # The batch contract: implement all three and declare Capabilities.batch_size > 1.

    def batch_entry(self, event: Event, settings: Mapping[str, Any]) -> Any:
        """Pure: this event's piece of a batch body, a JSON value. Raise :class:`SkipEvent` as build_request does."""
        raise NotImplementedError

    def build_batch_request(self, entries: Sequence[Any], settings: Mapping[str, Any]) -> Request:
        """Pure: one request carrying these entries in this order (no more than ``batch_size`` of them, and
        within ``batch_max_bytes``: the hub splits them with :func:`plan_batches`). Called with one entry, it
        gives what the hub records as the request sent for that event."""
        raise NotImplementedError

    def classify_batch(self, response: requests.Response | None, error: Exception | None, count: int) -> list[Outcome]:
        """One outcome per entry of the request, in order. The default gives every entry the request's own
        outcome (``classify``); override it when the platform says which entries it refused."""
        return [self.classify(response, error)] * count

    @property
    def batches(self) -> bool:
        """Whether the hub sends this connector's events in batches: a batch size above one, and the contract
        there (the contract suite fails a connector that declares one without the other)."""
        cls = type(self)
        return (
            self.capabilities.batch_size > 1
            and cls.batch_entry is not Connector.batch_entry
            and cls.build_batch_request is not Connector.build_batch_request
        )

    def verify(self, settings: Mapping[str, Any], http: HttpClient) -> None:
        """Check credentials against the platform, raising :class:`ConnectorError`.

        The default does nothing (connectors without a cheap account endpoint)."""
        return None

    def secrets(self, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """Values that must never be recorded: every non-empty credentials field."""
        names = self.credentials_schema().fields.keys()
        return tuple(str(settings[n]) for n in names if settings.get(n))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} key={self.key!r}>"


MASK = "••••"


def mask(value: Any) -> str:
    """A secret fit to show: "••••", plus its last 4 characters when it is long enough to keep them hidden."""
    text = str(value)
    return MASK + text[-4:] if len(text) >= 12 else MASK


def mask_settings(connector: Connector, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings fit to show: every credentials value masked."""
    secret = connector.credentials_schema().fields.keys()
    return {name: mask(value) if name in secret and value else value for name, value in settings.items()}


def event_body(event: Event) -> dict[str, Any]:
    """The canonical event as JSON: what the webhook and the sandbox send, and a start for other platforms."""
    return {
        "id": event.id,
        "type": event.type,
        "name": event.name,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "test": event.test,
        "customer": {k: v for k, v in vars(event.customer).items() if v is not None},
        "properties": dict(event.properties),
    }


# orjson refuses these instead of writing them its own way (json.dumps would refuse them too, or write them as their
# base type), so json_text falls back to json.dumps for them; the hub's orjson writers use the same options.
ORJSON_STRICT = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def json_text(value: Any) -> str:
    """``value`` as JSON text whose strings are escaped exactly as ``json.dumps`` escapes them (what a
    :class:`Splice` and connectors.http's secret check expect), written by orjson when it can (about five times
    faster for a bulk entry): orjson's text differs from json.dumps's only in spaces as long as it is printable
    ASCII; anything else (non-ASCII text, a subclass, an integer past 64 bits) is written by json.dumps."""
    try:
        raw = orjson.dumps(value, option=ORJSON_STRICT)
    except TypeError:
        return json.dumps(value)
    return raw.decode("ascii") if raw.isascii() and b"\x7f" not in raw else json.dumps(value)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON, encoded the way connectors.http sends ``Request.json`` (requests' defaults)."""
    return len(json.dumps(value).encode())


def plan_batches(
    connector: Connector, entries: Sequence[Any], settings: Mapping[str, Any], sizes: Sequence[int] | None = None
) -> list[list[int]]:
    """Split entries into requests: at most ``batch_size`` each and, when the connector declares
    ``batch_max_bytes``, bodies within it. Returns each request's entry indexes, in order. An entry too
    large for any request still goes alone: the platform's answer then says why it was refused.
    ``sizes`` are the entries' JSON sizes when the caller has them already."""
    capabilities = connector.capabilities
    size_limit = capabilities.batch_max_bytes
    count_limit = max(1, capabilities.batch_size)
    envelope = json_size(connector.build_batch_request([], settings).json) if size_limit else 0
    groups: list[list[int]] = []
    current: list[int] = []
    size = envelope
    for index, entry in enumerate(entries):
        extra = ((sizes[index] if sizes is not None else json_size(entry)) + 2) if size_limit else 0  # ", "
        if current and (len(current) >= count_limit or (size_limit and size + extra > size_limit)):
            groups.append(current)
            current, size = [], envelope
        current.append(index)
        size += extra
    if current:
        groups.append(current)
    return groups


_FIRST, _SECOND = "\x00tidings-entry-1\x00", "\x00tidings-entry-2\x00"


@dataclass(frozen=True)
class Splice:
    """A connector's batch body as text around its entries: ``prefix + ", ".join(entry texts) + suffix``.

    Lets the hub encode each entry once (to size the requests, to send them and to record each event's
    part) instead of encoding whole bodies again. Only for connectors whose ``build_batch_request`` puts
    the entries, unchanged and in order, into one JSON list; :func:`splice_of` checks that.
    """

    request: Request  # method, url, headers and secrets of every batch request; no body
    prefix: str
    suffix: str

    def body(self, texts: Sequence[str]) -> str:
        return self.prefix + ", ".join(texts) + self.suffix

    def build(self, texts: Sequence[str]) -> Request:
        return dataclasses.replace(self.request, data=self.body(texts).encode())


def splice_of(connector: Connector, settings: Mapping[str, Any]) -> Splice | None:
    """The connector's batch body as a splice, or None when its body is not entries placed as they are."""
    try:
        one = connector.build_batch_request([_FIRST], settings)
        two = connector.build_batch_request([_FIRST, _SECOND], settings)
    except Exception:  # a connector that reads its entries: no splice, it builds every body itself
        return None
    if (
        one.json is None
        or one.data is not None
        or (one.method, one.url, one.headers, one.secrets)
        != (
            two.method,
            two.url,
            two.headers,
            two.secrets,
        )
    ):
        return None
    first, second = json.dumps(_FIRST), json.dumps(_SECOND)
    text = json.dumps(one.json)
    if text.count(first) != 1:
        return None
    prefix, suffix = text.split(first)
    if json.dumps(two.json) != prefix + first + ", " + second + suffix:
        return None
    headers = dict(one.headers)
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"  # what requests would have set for json=
    return Splice(Request(one.method, one.url, headers, secrets=one.secrets), prefix, suffix)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date. None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" or "nan" would break the hub's arithmetic: treat them as unreadable
        return max(0.0, seconds) if math.isfinite(seconds) else None
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def response_reason(response: requests.Response, limit: int = 300) -> str:
    """A short reason from a platform's answer: its text, trimmed, else the status line."""
    text = (response.text or "").strip().replace("\n", " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    return (
        f"HTTP {response.status_code}: {text}"
        if text
        else f"HTTP {response.status_code} {response.reason or ''}".strip()
    )


def default_classify(response: requests.Response | None, error: Exception | None = None) -> Outcome:
    if response is None:
        kind = getattr(error, "kind", None)
        if kind in ("blocked", "invalid_url"):
            return Outcome(OutcomeKind.PERMANENT, reason=f"destination not allowed: {error}")
        return Outcome(OutcomeKind.RETRY, reason=f"{kind or 'transport'} error: {error or 'no response'}")
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if 200 <= status < 300:
        return Outcome(OutcomeKind.DELIVERED, reason=f"HTTP {status}")
    if status == 429:
        return Outcome(OutcomeKind.RATE_LIMITED, reason=response_reason(response), retry_after=retry_after)
    if status in (408, 425) or status >= 500:
        return Outcome(OutcomeKind.RETRY, reason=response_reason(response), retry_after=retry_after)
    if status in (401, 403):
        return Outcome(OutcomeKind.CREDENTIALS, reason=response_reason(response))
    if 300 <= status < 400:
        return Outcome(OutcomeKind.PERMANENT, reason=f"HTTP {status}: redirects are not followed")
    return Outcome(OutcomeKind.PERMANENT, reason=response_reason(response))
