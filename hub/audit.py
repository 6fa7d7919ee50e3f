"""The audit log: every manual operation on the outbox, with who did it and when."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from hub.models import ApiToken, AuditEntry
from hub.outbox import now

CLI = "cli"


def token_actor(token: ApiToken | None) -> str:
    """How an API caller is named in the log: its token's id and name (never the token)."""
    if token is None:
        return "api"
    return f"token {token.id}" + (f" ({token.name})" if token.name else "")


def record(
    session: Session,
    store_id: int,
    actor: str,
    operation: str,
    action_ids: Iterable[int] = (),
    *,
    details: dict[str, Any] | None = None,
    bulk_operation_id: int | None = None,
    summary: bool = False,
) -> None:
    """One row per action touched (so each action's history reads on its own); ``summary`` adds one for the
    operation as a whole (bulk operations)."""
    at = now()
    base = {
        "store_id": store_id,
        "actor": actor,
        "operation": operation,
        "bulk_operation_id": bulk_operation_id,
        "details": details or {},
        "created_at": at,
    }
    rows = [{**base, "action_id": action_id} for action_id in action_ids]
    if summary:
        rows.append({**base, "action_id": None})
    if rows:
        session.execute(insert(AuditEntry), rows)


def for_action(session: Session, store_id: int, action_id: int) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.store_id == store_id, AuditEntry.action_id == action_id)
            .order_by(AuditEntry.id)
        )
    )
