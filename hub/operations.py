"""Steering the outbox: send now, delay, cancel, restore and replay, on one action or a batch of them.

Every change is a conditional UPDATE from the states the operation may leave (``ALLOWED``), so an action
already claimed for delivery (sending; queued from earlier versions) is never changed under it, and a cancelled
action is never sent: claims take only pending actions (and queued ones of an earlier version's jobs).
Single operations answer 404 for an id of another store and 409, naming the current state, for an action in
the wrong state.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from sqlalchemy import BigInteger, select, update
from sqlalchemy.orm import Session

from hub import audit, outbox
from hub.dispatch import enqueue
from hub.flows import hold_reason, idempotency_key
from hub.models import Action, ActionState, Actor, Base, Integration, IntegrationState, table_of
from schemas.common import MAX_ID

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Base)


P, H = ActionState.PENDING, ActionState.HELD
ALLOWED: dict[str, tuple[ActionState, ...]] = {
    "send_now": (P, H),
    "delay": (P, H),
    "cancel": (P, H),
    "restore": (ActionState.CANCELLED,),
    "replay": (ActionState.FAILED, ActionState.DELIVERED, ActionState.SKIPPED),
}
# The parameters each operation takes (and records in the audit log).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "send_now": (),
    "delay": ("days", "until"),
    "cancel": ("reason",),
    "restore": (),
    "replay": ("new_key",),
}
# Over many actions, replay means "try the failed ones again": delivered ones are replayed one at a time.
BULK_ALLOWED = {**ALLOWED, "replay": (ActionState.FAILED,)}
PAST_TENSE = {
    "send_now": "sent now",
    "delay": "delayed",
    "cancel": "cancelled",
    "restore": "restored",
    "replay": "replayed",
}


class OperationError(Exception):
    """An operation that cannot be carried out; becomes a 4xx answer (or a CLI message)."""

    def __init__(
        self, status: int, message: str, *, current_state: str | None = None, fields: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.current_state, self.fields = status, message, current_state, fields or {}


@dataclass
class Applied:
    """What one batch of an operation did."""

    moved: list[int] = field(default_factory=list)
    claimed: list[outbox.Claimed] = field(default_factory=list)  # to enqueue once committed
    created: dict[int, Action] = field(default_factory=dict)  # replayed with a new key: original id → new action


def find_in_store(session: Session, model: type[M], store_id: int, row_id: int, what: str) -> M:
    """One row of this store by id, or a 404 naming it (another store's id is as unknown as a missing one)."""
    id_column = table_of(model).c.id
    limit = MAX_ID if isinstance(id_column.type, BigInteger) else 2**31 - 1
    row = None
    if 0 < row_id <= limit:  # larger ids cannot exist; asking would overflow the integer type
        row = session.scalars(select(model).where(id_column == row_id, table_of(model).c.store_id == store_id)).first()
    if row is None:
        raise OperationError(404, f"No {what} {row_id} in this store.")
    return row


def find(session: Session, store_id: int, action_id: int) -> Action:
    return find_in_store(session, Action, store_id, action_id, "action")


def check_arguments(operation: str, params: dict[str, Any]) -> None:
    if operation == "delay" and params.get("until") is not None and params["until"] <= outbox.now():
        raise OperationError(422, "The new time must be in the future.", fields={"until": ["Must be in the future."]})


def apply(
    rt: Runtime,
    session: Session,
    store_id: int,
    operation: str,
    ids: list[int],
    params: dict[str, Any],
    actor: str,
    *,
    bulk_operation_id: int | None = None,
    single: bool = False,
) -> Applied:
    """Apply an operation to the actions among ``ids`` of this store that are in a state it may change."""
    states = (ALLOWED if single else BULK_ALLOWED)[operation]
    scope = (Action.store_id == store_id, Action.id.in_(ids), Action.state.in_(states))
    at = outbox.now()
    done = Applied()
    details = {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in params.items()
        if k in PARAMETERS[operation] and v not in (None, False)
    }
    if operation == "cancel":
        done.moved = list(
            session.scalars(
                _update(scope, at)
                .values(
                    state=ActionState.CANCELLED,
                    reason_code="cancelled",
                    reason_text=params.get("reason") or "cancelled by the merchant",
                    caused_by=Actor.MERCHANT,
                    bulk_operation_id=bulk_operation_id,
                    lease_token=None,
                    lease_expires_at=None,
                )
                .returning(Action.id)
            )
        )
    elif operation == "send_now":
        lease = outbox.new_lease()
        rows = session.execute(
            _update(scope, at)
            .values(
                state=ActionState.SENDING,
                run_at=at,
                lease_token=lease,
                lease_expires_at=at + timedelta(seconds=rt.config.lease_seconds),
                bulk_operation_id=bulk_operation_id,
                ignore_quiet_hours=True,  # the merchant's explicit choice (hub.quiet)
            )
            .returning(Action.id, Action.integration_id)
        ).all()
        done.moved = [r.id for r in rows]
        done.claimed = [outbox.Claimed(r.id, r.integration_id, lease=lease) for r in rows]
    elif operation == "delay":
        done.moved = _delay(session, scope, params, at, bulk_operation_id)
    elif operation == "restore":
        done.moved = _restore(session, (*scope, Action.run_at > at), at, bulk_operation_id)
    elif operation == "replay" and params.get("new_key"):
        done.created = _replay_new_key(session, scope, at)
        done.moved = list(done.created)
        details["new_action_ids"] = [copy.id for copy in done.created.values()]
        if single:
            leases = {
                copy.id: outbox.claim_one(session, copy.id, rt.config.lease_seconds) for copy in done.created.values()
            }
            done.claimed = [
                outbox.Claimed(copy.id, copy.integration_id, lease=leases[copy.id])
                for copy in done.created.values()
                if leases[copy.id]
            ]
    elif operation == "replay":
        fresh: dict[str, Any] = {
            "failure_count": 0,
            "rate_limited_count": 0,
            "reason_code": None,
            "reason_text": None,
            "caused_by": None,
            "delivered_at": None,
            "bulk_operation_id": bulk_operation_id,
            "run_at": at,
        }
        lease = outbox.new_lease()
        if single:  # the fast path, like Send now
            fresh.update(
                state=ActionState.SENDING,
                lease_token=lease,
                lease_expires_at=at + timedelta(seconds=rt.config.lease_seconds),
            )
        else:  # the dispatcher takes them in its stride
            fresh.update(state=ActionState.PENDING, lease_token=None, lease_expires_at=None)
        rows = session.execute(_update(scope, at).values(**fresh).returning(Action.id, Action.integration_id)).all()
        done.moved = [r.id for r in rows]
        if single:
            done.claimed = [outbox.Claimed(r.id, r.integration_id, lease=lease) for r in rows]
    else:
        raise ValueError(f"unknown operation {operation!r}")
    audit.record(session, store_id, actor, operation, done.moved, details=details, bulk_operation_id=bulk_operation_id)
    return done


def _update(scope: tuple[Any, ...], at: datetime) -> Any:
    return update(Action).where(*scope).values(updated_at=at).execution_options(synchronize_session=False)


def _delay(
    session: Session, scope: tuple[Any, ...], params: dict[str, Any], at: datetime, bulk_operation_id: int | None
) -> list[int]:
    moved = []
    for row in session.execute(select(Action.id, Action.state, Action.run_at).where(*scope)).all():
        if params.get("until") is not None:
            when = params["until"]
        else:
            when = max(row.run_at, at) + timedelta(days=params["days"])
        values: dict[str, Any] = {"run_at": when, "scheduled_at": when, "bulk_operation_id": bulk_operation_id}
        if row.state == ActionState.PENDING:
            values.update(reason_code="delayed", reason_text=f"delayed by the merchant to {when:%Y-%m-%d %H:%M} UTC")
        if outbox.transition(session, row.id, expected=ActionState(row.state), **values):
            moved.append(row.id)
    return moved


def _restore(session: Session, scope: tuple[Any, ...], at: datetime, bulk_operation_id: int | None) -> list[int]:
    moved = list(
        session.scalars(
            _update(scope, at)
            .values(
                state=ActionState.PENDING,
                reason_code=None,
                reason_text=None,
                caused_by=None,
                bulk_operation_id=bulk_operation_id,
            )
            .returning(Action.id)
        )
    )
    if moved:
        # Restored into an app that is paused or needs attention: they wait, held, like new actions would.
        waiting = session.execute(
            select(Action.id, Integration)
            .join(Integration, Integration.id == Action.integration_id)
            .where(
                Action.id.in_(moved),
                Integration.state.in_((IntegrationState.PAUSED, IntegrationState.NEEDS_ATTENTION)),
            )
        ).all()
        for action_id, integration in waiting:
            _, code, text = hold_reason(integration)
            outbox.transition(
                session,
                action_id,
                expected=ActionState.PENDING,
                state=ActionState.HELD,
                reason_code=code,
                reason_text=text,
            )
    return moved


def _replay_new_key(session: Session, scope: tuple[Any, ...], at: datetime) -> dict[int, Action]:
    created: dict[int, Action] = {}
    for original in session.scalars(select(Action).where(*scope)).all():
        key = idempotency_key(original.store_id, "replay", original.id, uuid.uuid4().hex)
        copy = Action(
            store_id=original.store_id,
            flow_id=original.flow_id,
            step_id=original.step_id,
            trigger_id=original.trigger_id,
            customer_id=original.customer_id,
            integration_id=original.integration_id,
            kind=original.kind,
            app=original.app,
            channel=original.channel,
            event_name=original.event_name,
            event_type=original.event_type,
            target=dict(original.target),
            trigger="replay",
            state=ActionState.PENDING,
            scheduled_at=at,
            run_at=at,
            idempotency_key=key,
            payload={**original.payload, "id": key},
            order_id=original.order_id,
        )
        session.add(copy)
        created[original.id] = copy
    session.flush()
    return created


def hand_over(rt: Runtime, claimed: list[outbox.Claimed]) -> None:
    """Give committed, claimed actions to a worker at once (the fast path)."""
    if not claimed:
        return
    try:
        enqueue(rt, claimed, at_front=True)
    except redis.RedisError:
        # They are claimed in the database: their leases run out and the dispatcher delivers them.
        log.warning("could not enqueue %d actions; the dispatcher will pick them up", len(claimed))


def operate(
    rt: Runtime, session: Session, store_id: int, action_id: int, operation: str, params: dict[str, Any], actor: str
) -> Action:
    """One operation on one action, committed. Returns the action as it is now (the new one, for a replay
    with a new key)."""
    action = find(session, store_id, action_id)
    check_arguments(operation, params)
    _check_state(action, operation)
    done = apply(rt, session, store_id, operation, [action.id], params, actor, single=True)
    if action.id not in done.moved:
        # It moved between our read and our update (a worker claimed it, a rule cancelled it).
        session.rollback()
        session.refresh(action)
        _check_state(action, operation)
        raise OperationError(409, f"Action {action.id} changed meanwhile; try again.", current_state=action.state)
    session.commit()
    hand_over(rt, done.claimed)
    if done.created:
        return done.created[action.id]
    session.refresh(action)
    return action


def _check_state(action: Action, operation: str) -> None:
    allowed = ALLOWED[operation]
    if action.state not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise OperationError(
            409,
            f"Action {action.id} is {action.state}: only {names} actions can be {PAST_TENSE[operation]}.",
            current_state=action.state,
        )
    if operation == "restore" and action.run_at <= outbox.now():
        raise OperationError(
            409,
            f"Action {action.id} was due at {action.run_at:%Y-%m-%d %H:%M} UTC: its time has passed, so it stays "
            "cancelled. Replay it or send a new one instead.",
            current_state=action.state,
        )
