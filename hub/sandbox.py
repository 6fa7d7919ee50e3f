"""The built-in sandbox app: a fake platform the hub serves itself.

It accepts events the way a platform does (bearer key, JSON body, idempotency key), records every
request with what it answered, dedupes on the idempotency key, and misbehaves on request: a tester
sets its answer status, Retry-After, latency, a failure rate, or a script of statuses to answer next,
through the sandbox integration's settings.
"""

from __future__ import annotations

import hmac
import random
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.models import Integration, IntegrationState, SandboxRequest

if TYPE_CHECKING:
    from hub.runtime import Runtime

KEY = "sandbox"
MAX_LATENCY_MS = 30_000
RECORDED_HEADERS = ("content-type", "user-agent", "idempotency-key", "authorization")


def is_sandbox(app: str) -> bool:
    return app == KEY


def provision(rt: Runtime, integration: Integration, credentials: dict[str, Any], settings: dict[str, Any]) -> None:
    """Fill what the sandbox needs: its address on this hub and a key (unless the tester chose one)."""
    credentials.setdefault("api_key", "sbx_" + secrets.token_urlsafe(24))
    settings["base_url"] = f"{rt.config.public_url}/sandbox/{integration.id}"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, {"error": {"status": status, "message": message}}, headers or {})


def _authorized(rt: Runtime, integration: Integration, authorization: str | None) -> bool:
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        return False
    expected = str(rt.box.decrypt(integration.credentials).get("api_key", ""))
    return bool(expected) and hmac.compare_digest(key.encode(), expected.encode())


def _integration(session: Session, integration_id: int, *, lock: bool = False) -> Integration | None:
    if not 0 < integration_id < 2**31:  # integrations.id is a 32-bit integer
        return None
    query = select(Integration).where(Integration.id == integration_id, Integration.app == KEY)
    if lock:
        query = query.with_for_update()
    integration = session.scalars(query).first()
    return integration if integration and integration.state != IntegrationState.DISCONNECTED else None


def account(rt: Runtime, session: Session, integration_id: int, authorization: str | None) -> Answer:
    integration = _integration(session, integration_id)
    if integration is None:
        return _error(404, "no such sandbox")
    if not _authorized(rt, integration, authorization):
        return _error(401, "invalid API key")
    return Answer(200, {"id": integration.id, "name": "Tidings sandbox"}, {})


def _scripted_or_configured(integration: Integration) -> tuple[int | None, dict[str, Any]]:
    """The status the tester asked for, if any: the next scripted status first (consumed), then the failure rate."""
    settings = dict(integration.settings)
    script = list(settings.get("script") or [])
    if script:
        status = int(script.pop(0))
        settings["script"] = script
        integration.settings = settings  # a new dict, so the JSON column is written
        return status, settings
    rate = float(settings.get("failure_rate") or 0)
    if rate and random.random() < rate:
        return int(settings.get("failure_status") or 503), settings
    configured = settings.get("status")
    return (int(configured) if configured else None), settings


def receive(
    rt: Runtime, session: Session, integration_id: int, authorization: str | None, headers: dict[str, str], body: Any
) -> Answer:
    unlocked = _integration(session, integration_id)
    if unlocked is None:
        return _error(404, "no such sandbox")
    latency = min(int(unlocked.settings.get("latency_ms") or 0), MAX_LATENCY_MS)
    session.rollback()  # end the read before waiting: the latency must not hold a lock or a transaction
    if latency:
        time.sleep(latency / 1000)
    integration = _integration(session, integration_id, lock=True)  # scripted answers are consumed one at a time
    if integration is None:
        return _error(404, "no such sandbox")
    key = headers.get("idempotency-key")
    if not _authorized(rt, integration, authorization):
        answer = _error(401, "invalid API key")
    else:
        forced, settings = _scripted_or_configured(integration)
        answer = _answer(session, integration, forced, settings, key, body)
    session.add(
        SandboxRequest(
            store_id=integration.store_id,
            integration_id=integration.id,
            method="POST",
            path=f"/sandbox/{integration.id}/events",
            idempotency_key=key,
            duplicate=bool(answer.body.get("duplicate")),
            headers={
                h: ("[redacted]" if h == "authorization" else headers[h]) for h in RECORDED_HEADERS if h in headers
            },
            body=body if isinstance(body, dict) else {"_raw": str(body)[:2000]},
            status=answer.status,
            response=answer.body,
        )
    )
    return answer


def _answer(
    session: Session, integration: Integration, forced: int | None, settings: dict[str, Any], key: str | None, body: Any
) -> Answer:
    if forced is not None and not 200 <= forced < 300:
        extra = {"Retry-After": str(settings["retry_after"])} if settings.get("retry_after") is not None else {}
        return _error(forced, f"sandbox answered {forced} as configured", extra)
    if not isinstance(body, dict) or not body.get("name") or not body.get("customer"):
        return _error(400, "body must be a JSON object with at least name and customer")
    duplicate = (
        bool(key)
        and session.scalars(
            select(SandboxRequest.id)
            .where(
                SandboxRequest.integration_id == integration.id,
                SandboxRequest.idempotency_key == key,
                SandboxRequest.status < 300,
            )
            .limit(1)
        ).first()
        is not None
    )
    return Answer(forced or 202, {"status": "accepted", "id": body.get("id"), "duplicate": duplicate}, {})
