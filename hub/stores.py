"""Stores (tenants), their API tokens and their default flows."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, update
from sqlalchemy.orm import Session, configure_mappers

from hub import quiet
from hub.caches import CachedToken, TokenCache
from hub.models import ApiToken, Base, Flow, FlowStep, Store
from schemas.stores import parse_clock

TOKEN_PREFIX = "tdg_"

# trigger type -> the canonical event type its default flow sends
DEFAULT_FLOWS = (
    # name, trigger, [(delay_seconds, event_name, event_type)]
    ("Post-purchase review request", "order.fulfilled", [(14 * 86400, "Review Request", "review_request")]),
    ("Post-review actions", "review.submitted", [(0, "Review Submitted", "review_submitted")]),
)


def create_store(session: Session, name: str, event_prefix: str | None = None) -> Store:
    store = Store(name=name, event_prefix=name if event_prefix is None else event_prefix)
    session.add(store)
    session.flush()
    for flow_name, trigger, steps in DEFAULT_FLOWS:
        flow = Flow(store_id=store.id, name=flow_name, trigger=trigger, enabled=True)
        flow.steps = [
            FlowStep(position=i, delay_seconds=delay, kind="event", app=None, event_name=event, event_type=etype)
            for i, (delay, event, etype) in enumerate(steps)
        ]
        session.add(flow)
    session.flush()
    return store


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, store_id: int, name: str = "") -> tuple[ApiToken, str]:
    """A new API token. Returns the row and the token itself, which is never stored and shown once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(store_id=store_id, name=name, prefix=token[:10], token_hash=_hash(token))
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str) -> Store | None:
    found = identify(session, token)
    return found[0] if found else None


LAST_USED_EVERY = 60  # seconds: last_used_at is written at most this often per token


def identify(session: Session, token: str, cache: TokenCache | None = None) -> tuple[Store, ApiToken] | None:
    """The store a token belongs to, and the token's row (for naming who did what in the audit log).

    With a ``cache``, a token read from the database in the last few seconds is trusted without a query
    (see hub.caches); the rows returned are then transient copies, never attached to a session.
    """
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    token_hash = _hash(token)
    now = datetime.now(UTC)
    entry = cache.get(token_hash) if cache is not None else None
    return _identified(session, token_hash, entry, now, cache)


def identify_cached(token: str, cache: TokenCache) -> tuple[Store, ApiToken] | None:
    """``identify`` without the database: the answer when the token is in the cache and its last use needs no
    write now, else None (then ``identify`` decides, with a session). A request served from the cache needs no
    session at all."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    token_hash = _hash(token)
    entry = cache.get(token_hash)
    if entry is None or _last_use_due(entry, datetime.now(UTC)):
        return None
    return _rows(entry)


def _last_use_due(entry: CachedToken, now: datetime) -> bool:
    # Written at most once a minute per token, so a busy integration does not write on every call.
    return entry.last_used_at is None or (now - entry.last_used_at).total_seconds() > LAST_USED_EVERY


def _identified(
    session: Session, token_hash: str, entry: CachedToken | None, now: datetime, cache: TokenCache | None
) -> tuple[Store, ApiToken] | None:
    if entry is None:
        found = session.execute(
            select(ApiToken, Store)
            .join(Store, Store.id == ApiToken.store_id)
            .where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
        ).first()
        if found is None:
            return None
        row, store = found
        entry = CachedToken(
            token_id=row.id,
            token_name=row.name,
            store_id=store.id,
            store_name=store.name,
            event_prefix=store.event_prefix,
            last_used_at=row.last_used_at,
            read_at=cache.clock() if cache is not None else 0.0,
        )
    if _last_use_due(entry, now):
        session.execute(update(ApiToken).where(ApiToken.id == entry.token_id).values(last_used_at=now))
        entry = replace(entry, last_used_at=now)
    if cache is not None:
        cache.put(token_hash, entry)
    return _rows(entry)


def _rows(entry: CachedToken) -> tuple[Store, ApiToken]:
    store = _transient(Store, id=entry.store_id, name=entry.store_name, event_prefix=entry.event_prefix)
    return store, _transient(ApiToken, id=entry.token_id, store_id=entry.store_id, name=entry.token_name)


M = TypeVar("M", bound=Base)


def _transient(model: type[M], **values: Any) -> M:
    """A transient instance of ``model`` with these values, for reading only (never added to a session).

    Made as the ORM makes the rows it loads (its class manager's ``new_instance``, the values in its ``__dict__``)
    rather than by the constructor, which records each value as a change for a flush nothing will make: a fifth of the
    cost. Every API request authenticated from the token cache makes two of these."""
    instance = _class_manager(model).new_instance()
    instance.__dict__.update(values)
    return instance  # type: ignore[no-any-return]


@functools.cache
def _class_manager(model: type[Any]) -> Any:
    configure_mappers()  # as the constructor does before a model's first instance
    return sa_inspect(model).class_manager


def event_name(store: Store, name: str) -> str:
    """Event names carry the store's prefix ("Acme - Review Request"): one platform account can serve several stores."""
    return f"{store.event_prefix} - {name}" if store.event_prefix else name


def settings(store: Store) -> dict[str, Any]:
    """The store as its settings endpoint shows it."""
    return {
        "id": store.id,
        "name": store.name,
        "event_prefix": store.event_prefix,
        "timezone": store.timezone,
        "quiet_hours": quiet.describe(quiet.QuietHours.of(store)),
        "created_at": store.created_at,
    }


def change_settings(session: Session, store: Store, data: dict[str, Any]) -> Store:
    """Apply validated settings (schemas.stores.StorePatch). New quiet hours apply from now on: to actions being
    scheduled, and to waiting ones when they fall due (they are not moved in advance)."""
    if "timezone" in data:
        store.timezone = data["timezone"]
    if "quiet_hours" in data:
        hours = data["quiet_hours"]
        if hours is None:
            store.quiet_hours_start = store.quiet_hours_end = None
        else:
            store.quiet_hours_start, store.quiet_hours_end = parse_clock(hours["start"]), parse_clock(hours["end"])
            store.quiet_hours_applies_to = hours["applies_to"]
    # Ingest caches the store's config per process (hub.caches) and reloads it when this changes.
    store.config_version = Store.config_version + 1  # type: ignore[assignment]
    session.flush()
    session.refresh(store)
    return store
