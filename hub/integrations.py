"""Connecting, changing and disconnecting apps. Credentials are validated by the connector's own schemas,
verified against the platform where the connector can, encrypted at rest and masked on the way out.

The credential check respects the platform's own limit for it (``Capabilities.verify_rate_per_second``): a token
from a Redis bucket per credential (named by a keyed hash, never the key) and per store and app, or a 429 with
Retry-After before the platform is called. A merchant may override an integration's delivery rate
(``rate_limit_per_second``); None goes back to the connector's published rate.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import marshmallow as ma
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from connectors import registry
from connectors.base import MASK, Connector, ConnectorError, mask
from connectors.http import TransportError
from hub import outbox, sandbox
from hub.models import Action, ActionState, Integration, IntegrationState, Store

if TYPE_CHECKING:
    from hub.runtime import Runtime


class IntegrationError(Exception):
    """A request about an integration that cannot be carried out; becomes a 4xx answer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, Any] | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}
        self.retry_after = retry_after  # seconds, sent as Retry-After on a 429


def effective_rate(integration: Integration, connector: Connector) -> float | None:
    """Requests per second for this integration: the merchant's override, else the connector's published rate."""
    return integration.rate_limit_per_second or connector.capabilities.rate_limit_per_second


def is_masked(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MASK)


def masked_credentials(rt: Runtime, integration: Integration) -> dict[str, str]:
    try:
        return {k: mask(v) for k, v in rt.box.decrypt(integration.credentials).items() if v not in (None, "")}
    except ValueError:
        return {"_error": "credentials cannot be decrypted with the current HUB_SECRET_KEYS"}


def connector_for(app: str) -> Connector:
    try:
        return registry.get(app)
    except registry.UnknownConnector:
        known = ", ".join(sorted(registry.available()))
        raise IntegrationError(
            422, "validation_error", "Unknown app.", {"app": [f"Unknown app {app!r}; installed: {known}."]}
        ) from None


def get(session: Session, store: Store, app: str, *, include_disconnected: bool = False) -> Integration:
    integration = session.scalars(
        select(Integration).where(Integration.store_id == store.id, Integration.app == app)
    ).first()
    if integration is None or (integration.state == IntegrationState.DISCONNECTED and not include_disconnected):
        raise IntegrationError(404, "not_found", f"No {app!r} integration is connected.")
    return integration


def _load(schema: type[ma.Schema], data: dict[str, Any], prefix: str) -> dict[str, Any]:
    try:
        return dict(schema().load(data))
    except ma.ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        raise IntegrationError(422, "validation_error", f"Invalid {prefix}.", {prefix: messages}) from None


WAITING = (ActionState.PENDING, ActionState.HELD)  # what a disconnect skips
VERIFY_MAX_WAIT = 1.0  # seconds a request waits for a verify token before answering 429


def _verify_token(rt: Runtime, connector: Connector, settings: dict[str, Any], store_id: int) -> None:
    """Take a token for one credential check, or raise a 429: the platform is not called to be refused."""
    rate = connector.capabilities.verify_rate_per_second
    if not rate:
        return
    fingerprint = rt.box.fingerprint(connector.key, *sorted(connector.secrets(settings)))
    # Per credential (one account may serve several stores), and per store and app (a merchant trying several
    # keys of one account). A token taken from the first bucket and refused by the second is simply spent.
    for bucket in (f"verify:{connector.key}:{fingerprint}", f"verify:store:{store_id}:{connector.key}"):
        wait = rt.limiter.acquire(bucket, rate, burst=1)
        if 0 < wait <= VERIFY_MAX_WAIT:
            time.sleep(wait)
            wait = rt.limiter.acquire(bucket, rate, burst=1)
        if wait:
            seconds = max(1, math.ceil(wait))
            raise IntegrationError(
                429,
                "rate_limited",
                f"{connector.label} allows its credentials to be checked {_pace(rate)}; try again in {seconds} s.",
                retry_after=seconds,
            )


def _pace(rate: float) -> str:
    return f"{rate:g} times a second" if rate >= 1 else f"once every {1 / rate:g} seconds"


def _verify(rt: Runtime, connector: Connector, settings: dict[str, Any], store_id: int) -> None:
    _verify_token(rt, connector, settings, store_id)
    try:
        connector.verify(settings, rt.http)
    except ConnectorError as error:
        field = f"credentials.{error.field}" if error.field else "credentials"
        raise IntegrationError(422, "verification_failed", error.message, {field: [error.message]}) from None
    except TransportError as error:
        raise IntegrationError(
            422, "verification_failed", f"Could not reach {connector.label} to check the credentials: {error}"
        ) from None


def connect(rt: Runtime, session: Session, store: Store, data: dict[str, Any]) -> Integration:
    connector = connector_for(data["app"])
    existing = session.scalars(
        select(Integration).where(Integration.store_id == store.id, Integration.app == connector.key)
    ).first()
    if existing is not None and existing.state != IntegrationState.DISCONNECTED:
        raise IntegrationError(409, "conflict", f"{connector.label} is already connected; change it with PATCH.")
    integration = existing or Integration(store_id=store.id, app=connector.key, settings={})
    if existing is None:
        session.add(integration)
        session.flush()  # the sandbox needs the id for its address
    credentials, settings = dict(data["credentials"]), dict(data["settings"])
    if sandbox.is_sandbox(connector.key):
        sandbox.provision(rt, integration, credentials, settings)
    credentials = _load(connector.credentials_schema, credentials, "credentials")
    settings = _load(connector.settings_schema, settings, "settings")
    if not sandbox.is_sandbox(connector.key):  # the sandbox is served by this hub: nothing to verify
        _verify(rt, connector, {**settings, **credentials}, store.id)
    integration.credentials = rt.box.encrypt(credentials)
    integration.settings = settings
    integration.rate_limit_per_second = data.get("rate_limit_per_second")
    integration.state = IntegrationState.CONNECTED
    integration.last_error = None
    session.flush()
    return integration


def change(rt: Runtime, session: Session, store: Store, app: str, data: dict[str, Any]) -> Integration:
    integration = get(session, store, app)
    connector = connector_for(integration.app)
    old_credentials = rt.box.decrypt(integration.credentials)
    credentials = dict(old_credentials)
    # A masked value sent back (as read from GET) keeps the stored secret.
    credentials.update({k: v for k, v in data.get("credentials", {}).items() if not is_masked(v)})
    settings = {**integration.settings, **data.get("settings", {})}
    credentials = _load(connector.credentials_schema, credentials, "credentials")
    settings = _load(connector.settings_schema, settings, "settings")
    credentials_changed = credentials != old_credentials
    if credentials_changed and not sandbox.is_sandbox(connector.key):
        _verify(rt, connector, {**settings, **credentials}, store.id)
    integration.credentials = rt.box.encrypt(credentials)
    integration.settings = settings
    if "rate_limit_per_second" in data:  # null goes back to the connector's published rate
        integration.rate_limit_per_second = data["rate_limit_per_second"]
    wanted = data.get("state")
    if wanted == IntegrationState.PAUSED:
        integration.state = IntegrationState.PAUSED
        outbox.hold_integration(session, integration.id, "integration_paused", f"{integration.app} is paused")
    elif wanted == IntegrationState.CONNECTED or (
        credentials_changed and integration.state == IntegrationState.NEEDS_ATTENTION
    ):
        integration.state = IntegrationState.CONNECTED
        integration.last_error = None
        catch_up = data.get("catch_up") or {"policy": "all"}
        outbox.release_integration(session, integration.id, catch_up["policy"], catch_up.get("hours"))
    elif data.get("catch_up"):
        raise IntegrationError(
            422,
            "validation_error",
            "A catch-up policy applies when the integration resumes.",
            {
                "catch_up": [
                    "Send it with state connected (or with the new credentials of an app that needs attention)."
                ]
            },
        )
    session.flush()
    return integration


def disconnect(session: Session, store: Store, app: str) -> None:
    integration = get(session, store, app)
    integration.state = IntegrationState.DISCONNECTED
    integration.credentials = ""  # a disconnected app keeps no secret
    session.execute(
        update(Action)
        .where(*outbox.of_integration(integration.id, *WAITING))
        .values(
            state=ActionState.SKIPPED,
            reason_code="integration_disconnected",
            reason_text=f"{integration.app} was disconnected",
            updated_at=outbox.now(),
        )
        .execution_options(synchronize_session=False)
    )
    session.flush()
