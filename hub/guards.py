"""Guards: should this action go out? Evaluated when an action is scheduled and again just before delivery.

Each guard has a stable reason code and a human text, and reports the value it looked at (so Explain can
show it). A failed guard skips the action into Incomplete (caused by a rule); an integration that is paused or
needs attention holds it instead. Guards are evaluated for a whole batch of actions with a fixed number of
queries, since the worker runs them on every batch it delivers.

What a connector declares (connectors.base.Capabilities) drives the app-specific guards: the identities it
needs, its staleness window, and whether its events lead to SMS (the store's quiet hours). The hub names no
platform.

Quiet hours (hub.quiet) neither skip nor hold: they move the action to the end of the quiet period
(``GuardResult.until``), and only decide when no other guard stops the action.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from connectors import registry
from connectors.base import Capabilities
from hub import quiet
from hub.db import any_of, sql_literal
from hub.models import TARGET_KEYS, Action, ActionState, Integration, IntegrationState, Store, Suppression, Trigger
from hub.outbox import now
from schemas.triggers import ORDER_STOPPERS

# Guards that judge the content (the customer, the order) apply to what flows create and to replays; a
# merchant's own test and manual events only need a usable app and an identity it accepts.
CONTENT_GUARDED_TRIGGERS = ("auto", "replay")
# Actions that count as "the same thing sent already" for the duplicate guard.
LIVE_STATES = (
    ActionState.PENDING,
    ActionState.HELD,
    ActionState.QUEUED,
    ActionState.SENDING,
    ActionState.DELIVERED,
)
REVIEW_EVENT_TYPES = ("review_request",)
# What the lookups below ask of triggers and actions, shared with ingest's look-ahead (hub.flows). Constants are
# written into the SQL text (hub.db.sql_literal) so prepared statements' generic plans can use the partial indexes.
IS_ORDER_STOPPER = Trigger.type.in_([sql_literal(t) for t in ORDER_STOPPERS])
IS_REVIEW = Trigger.type == sql_literal("review.submitted")
IS_LIVE_AUTO_ACTION = and_(
    Action.state.in_([sql_literal(state) for state in LIVE_STATES]), Action.trigger == sql_literal("auto")
)
# The lookups evaluate() makes; a caller that knows one would find nothing can say so (known_empty).
LOOKUPS = ("suppressions", "stopped_orders", "reviewed", "duplicates")


@dataclass(frozen=True)
class GuardResult:
    code: str  # the reason code an action gets when this guard stops it
    passed: bool
    text: str
    value: Any = None
    hold: bool = False  # stops it for now (held), not for good (skipped)
    until: datetime | None = None  # moves it to this time instead (quiet hours): back to pending, no attempt


@dataclass
class Subject:
    """What the guards look at of one action (an Action row, or a row of its columns)."""

    key: Any  # the caller's handle for this action
    store_id: int
    integration_id: int | None
    app: str | None
    channel: str | None
    event_type: str | None
    event_name: str | None
    target: dict[str, Any]
    customer_id: int | None
    order_id: str | None
    trigger: str
    scheduled_at: datetime
    action_id: int | None = None
    product_ids: tuple[str, ...] = field(default=())
    run_at: datetime | None = None
    ignore_quiet_hours: bool = False

    @classmethod
    def of(cls, action: Any, key: Any = None) -> Subject:
        payload = getattr(action, "payload", None) or {}
        items = (payload.get("properties") or {}).get("items") or []
        return cls(
            key=action.id if key is None else key,
            store_id=action.store_id,
            integration_id=action.integration_id,
            app=action.app,
            channel=action.channel,
            event_type=action.event_type,
            event_name=action.event_name,
            target=dict(action.target or {}),
            customer_id=action.customer_id,
            order_id=action.order_id,
            trigger=action.trigger,
            scheduled_at=action.scheduled_at,
            action_id=action.id,
            product_ids=tuple(str(i["product_id"]) for i in items if isinstance(i, dict) and i.get("product_id")),
            run_at=getattr(action, "run_at", None),
            ignore_quiet_hours=bool(getattr(action, "ignore_quiet_hours", False)),
        )


def capabilities_of(app: str | None) -> Capabilities | None:
    if not app:
        return None
    try:
        return registry.get(app).capabilities
    except registry.UnknownConnector:
        return None


def identities(target: dict[str, Any]) -> list[str]:
    """The values a suppression may name for this target: email (lower case), phone, external id."""
    values = []
    for name in TARGET_KEYS:
        if target.get(name):
            values.append(str(target[name]).lower() if name == "email" else str(target[name]))
    return values


def evaluate(
    session: Session,
    subjects: Sequence[Subject],
    *,
    at: datetime | None = None,
    integrations: dict[int, Integration] | None = None,
    known_empty: Collection[str] = (),
    quiet_hours: dict[int, quiet.QuietHours | None] | None = None,
) -> dict[Any, list[GuardResult]]:
    """Every guard's result for every subject, keyed by ``Subject.key``.

    ``known_empty`` names lookups (of ``LOOKUPS``) the caller has already found to be empty for these
    subjects, so they are not queried again: ingest checks them all in the one query it makes anyway.
    ``quiet_hours`` gives the stores' quiet hours by store id when the caller has them (ingest's store config).
    """
    if not subjects:
        return {}
    at = at or now()
    store_ids = {s.store_id for s in subjects}
    if integrations is None:
        ids = {s.integration_id for s in subjects if s.integration_id}
        integrations = (
            {i.id: i for i in session.scalars(select(Integration).where(Integration.id.in_(ids)))} if ids else {}
        )
    content = [s for s in subjects if s.trigger in CONTENT_GUARDED_TRIGGERS]
    suppressed = {} if "suppressions" in known_empty else _suppressions(session, store_ids, content)
    stopped = {} if "stopped_orders" in known_empty else _stopped_orders(session, content)
    reviewed = {} if "reviewed" in known_empty else _reviewed_products(session, content)
    duplicates = {} if "duplicates" in known_empty else _duplicates(session, content)
    if quiet_hours is None:  # the caller (ingest) may know them already; else the stores are usually in the session
        quiet_hours = {sid: quiet.QuietHours.of(session.get(Store, sid)) for sid in store_ids}
    return judge(
        subjects,
        at=at,
        integrations=integrations,
        quiet_hours=quiet_hours,
        suppressed=suppressed,
        stopped=stopped,
        reviewed=reviewed,
        duplicates=duplicates,
    )


def judge(
    subjects: Sequence[Subject],
    *,
    at: datetime | None = None,
    integrations: dict[int, Integration],
    quiet_hours: dict[int, quiet.QuietHours | None],
    suppressed: dict[tuple[int, str], list[Suppression]] | None = None,
    stopped: dict[tuple[int, str], str] | None = None,
    reviewed: dict[int, set[str]] | None = None,
    duplicates: dict[tuple[Any, ...], list[int]] | None = None,
) -> dict[Any, list[GuardResult]]:
    """``evaluate`` once its lookups are done: every guard's result for every subject, from what the lookups found
    (None: nothing) and needing no database. Ingest's folded statement judges its actions with nothing found, since
    it writes them only when each lookup finds nothing (``hub.flows``)."""
    at = at or now()
    suppressed, stopped = suppressed or {}, stopped or {}
    reviewed, duplicates = reviewed or {}, duplicates or {}
    results: dict[Any, list[GuardResult]] = {}
    # Every subject of one app and integration gets the same verdict on it (a GuardResult is immutable): judged once.
    connected: dict[tuple[str | None, int | None], GuardResult] = {}
    caps_of: dict[str | None, Capabilities | None] = {}
    # The staleness verdict depends on the app and the action's age alone: actions of a batch mostly share both.
    stale: dict[tuple[str | None, int], GuardResult] = {}
    for s in subjects:
        verdict = connected.get((s.app, s.integration_id))
        if verdict is None:
            integration = integrations.get(s.integration_id) if s.integration_id else None
            verdict = connected[(s.app, s.integration_id)] = _integration(s, integration)
        checks = [verdict]
        if s.app not in caps_of:
            caps_of[s.app] = capabilities_of(s.app)
        caps = caps_of[s.app]
        checks.append(_identity(s, caps))
        if s.trigger in CONTENT_GUARDED_TRIGGERS:
            checks.append(_suppression(s, suppressed))
            checks.append(_order(s, stopped))
            checks.append(_reviewed(s, reviewed))
            age = int((at - s.scheduled_at).total_seconds())
            verdict = stale.get((s.app, age))
            if verdict is None:
                verdict = stale[(s.app, age)] = _stale(s.app, caps, age)
            checks.append(verdict)
            checks.append(_duplicate(s, duplicates))
        checks.append(_quiet_hours(s, quiet_hours.get(s.store_id), caps, at))
        results[s.key] = checks
    return results


def first_failure(results: Iterable[GuardResult]) -> GuardResult | None:
    """The guard that decides: a hold wins over a skip (the app may come back and then the rest is judged), and
    both over quiet hours, which only move the action later."""
    failed = [r for r in results if not r.passed]
    if not failed:  # the usual case: every guard passed
        return None
    holds = [r for r in failed if r.hold]
    skips = [r for r in failed if not r.hold and r.until is None]
    decisive = holds or skips or failed
    return decisive[0] if decisive else None


# -- the guards ------------------------------------------------------------------------------------

# The passing results that say the same for every action, built once (GuardResult is frozen, so they can be shared):
# the worker judges every action of every batch again just before delivery.
NOT_SUPPRESSED = GuardResult("suppressed", True, "not unsubscribed or suppressed", None)
ORDER_GOING_AHEAD = GuardResult("order_cancelled", True, "order not cancelled or refunded", None)
NO_ORDER = GuardResult("order_cancelled", True, "no order", None)
NOT_A_REVIEW_REQUEST = GuardResult("already_reviewed", True, "not a review request", None)
NOTHING_REVIEWED = GuardResult("already_reviewed", True, "products not reviewed yet", [])  # none of them reviewed
NO_DUPLICATE = GuardResult("duplicate", True, "no earlier action for this order", None)
NO_QUIET_HOURS = GuardResult(quiet.CODE, True, quiet.NO_QUIET_HOURS.text, quiet.NO_QUIET_HOURS.value)


def _integration(s: Subject, integration: Integration | None) -> GuardResult:
    if s.app is None:  # a native message goes through no app
        return GuardResult("integration_disconnected", True, "no app involved", None)
    if integration is None or integration.state == IntegrationState.DISCONNECTED:
        return GuardResult("integration_disconnected", False, f"{s.app} was disconnected", "disconnected")
    if integration.state == IntegrationState.PAUSED:
        return GuardResult("integration_paused", False, f"{s.app} is paused", integration.state, hold=True)
    if integration.state == IntegrationState.NEEDS_ATTENTION:
        return GuardResult(
            "integration_needs_attention",
            False,
            f"{s.app} needs attention: {integration.last_error or 'its credentials were rejected'}",
            integration.state,
            hold=True,
        )
    return GuardResult("integration_disconnected", True, f"{s.app} is connected", integration.state)


_HAS_IDENTITY: dict[tuple[str, ...], GuardResult] = {}  # the passing result for each set of identities present


def _identity(s: Subject, caps: Capabilities | None) -> GuardResult:
    needed = caps.identities if caps else TARGET_KEYS
    target = s.target
    present = tuple(sorted(k for k in needed if target.get(k)))
    if present:
        passed = _HAS_IDENTITY.get(present)
        if passed is None:
            passed = _HAS_IDENTITY[present] = GuardResult(
                "missing_identity", True, f"has {', '.join(present)}", list(present)
            )
        return passed
    return GuardResult(
        "missing_identity", False, f"{s.app} needs one of: {', '.join(needed)}; the customer has none", list(needed)
    )


def _suppression(s: Subject, suppressed: dict[tuple[int, str], list[Suppression]]) -> GuardResult:
    if not suppressed:  # the lookup found no suppression for any of the batch's identities
        return NOT_SUPPRESSED
    channels = {"all", s.channel or "", s.app or ""} - {""}
    for value in identities(s.target):
        for row in suppressed.get((s.store_id, value), []):
            if row.channel in channels:
                code = "unsubscribed" if row.reason == "unsubscribed" else "suppressed"
                verb = "unsubscribed from" if code == "unsubscribed" else f"suppressed ({row.reason}) for"
                where = "everything" if row.channel == "all" else row.channel
                return GuardResult(code, False, f"{value} {verb} {where}", {"value": value, "channel": row.channel})
    return NOT_SUPPRESSED


def _order(s: Subject, stopped: dict[tuple[int, str], str]) -> GuardResult:
    kind = stopped.get((s.store_id, s.order_id)) if s.order_id else None
    if kind:
        word = kind.split(".")[1]
        return GuardResult(f"order_{word}", False, f"order {s.order_id} was {word}", kind)
    return ORDER_GOING_AHEAD if s.order_id else NO_ORDER


def _reviewed(s: Subject, reviewed: dict[int, set[str]]) -> GuardResult:
    if s.event_type not in REVIEW_EVENT_TYPES or not s.product_ids or not s.customer_id:
        return NOT_A_REVIEW_REQUEST
    done = reviewed.get(s.customer_id)
    if not done:
        return NOTHING_REVIEWED
    if all(p in done for p in s.product_ids):
        return GuardResult(
            "already_reviewed", False, "the customer already reviewed every product of the order", sorted(done)
        )
    return GuardResult("already_reviewed", True, "products not reviewed yet", sorted(done & set(s.product_ids)))


def _stale(app: str | None, caps: Capabilities | None, age: int) -> GuardResult:
    window = caps.staleness_seconds if caps else None
    if window is None:
        return GuardResult("stale", True, "the app takes events of any age", age)
    if age > window:
        return GuardResult(
            "stale",
            False,
            f"due {timedelta(seconds=age)} ago; {app} ignores events older than {timedelta(seconds=window)}",
            age,
        )
    return GuardResult("stale", True, f"within {app}'s window of {timedelta(seconds=window)}", age)


def _duplicate(s: Subject, duplicates: dict[tuple[Any, ...], list[int]]) -> GuardResult:
    if not duplicates:  # the lookup found no live action for any of the batch's orders
        return NO_DUPLICATE
    others = [i for i in duplicates.get(_dedupe_key(s), []) if s.action_id is None or i < s.action_id]
    if s.order_id and s.trigger == "auto" and others:
        return GuardResult("duplicate", False, f"already sent for order {s.order_id} as action {others[0]}", others[0])
    return NO_DUPLICATE


def _quiet_hours(s: Subject, hours: quiet.QuietHours | None, caps: Capabilities | None, at: datetime) -> GuardResult:
    if hours is None:
        return NO_QUIET_HOURS
    # When it will go: now for a due action (delivery), its run_at for one scheduled later (flows, Explain).
    when = max(at, s.run_at) if s.run_at is not None else at
    verdict = quiet.check(
        hours,
        when,
        channel=s.channel,
        sms_app=bool(caps and caps.sms),
        trigger=s.trigger,
        ignore_quiet_hours=s.ignore_quiet_hours,
    )
    return GuardResult(quiet.CODE, verdict.passed, verdict.text, verdict.value, until=verdict.until)


# -- batch lookups ---------------------------------------------------------------------------------


def _suppressions(
    session: Session, store_ids: set[int], subjects: Sequence[Subject]
) -> dict[tuple[int, str], list[Suppression]]:
    values = {v for s in subjects for v in identities(s.target)}
    found: dict[tuple[int, str], list[Suppression]] = defaultdict(list)
    if values:
        dialect = _dialect(session)
        for row in session.scalars(
            select(Suppression).where(
                any_of(Suppression.store_id, store_ids, dialect), any_of(Suppression.value, values, dialect)
            )
        ):
            found[(row.store_id, row.value)].append(row)
    return found


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _orders_by_store(subjects: Sequence[Subject]) -> dict[int, set[str]]:
    """The orders the subjects name, per store: each store's are looked up with one array (or IN list), which
    uses the (store_id, order_id) indexes, where a list of (store, order) pairs was read as many ORs."""
    orders: dict[int, set[str]] = defaultdict(set)
    for s in subjects:
        if s.order_id:
            orders[s.store_id].add(s.order_id)
    return orders


def _stopped_orders(session: Session, subjects: Sequence[Subject]) -> dict[tuple[int, str], str]:
    found: dict[tuple[int, str], str] = {}
    dialect = _dialect(session)
    for store_id, orders in _orders_by_store(subjects).items():
        rows = session.execute(
            select(Trigger.store_id, Trigger.order_id, Trigger.type).where(
                Trigger.store_id == store_id,
                any_of(Trigger.order_id, orders, dialect),
                IS_ORDER_STOPPER,
            )
        ).all()
        found.update({(r.store_id, r.order_id): r.type for r in rows})
    return found


def _reviewed_products(session: Session, subjects: Sequence[Subject]) -> dict[int, set[str]]:
    customers = {s.customer_id for s in subjects if s.customer_id and s.event_type in REVIEW_EVENT_TYPES}
    found: dict[int, set[str]] = defaultdict(set)
    if customers:
        rows = session.execute(
            select(Trigger.customer_id, Trigger.payload).where(
                any_of(Trigger.customer_id, customers, _dialect(session)),
                IS_REVIEW,
            )
        ).all()
        for customer_id, payload in rows:
            product = ((payload or {}).get("review") or {}).get("product_id")
            if product:
                found[customer_id].add(str(product))
    return found


def _dedupe_key(s: Subject) -> tuple[Any, ...]:
    return (s.store_id, s.order_id, s.customer_id, s.app, s.channel, s.event_name)


def _duplicates(session: Session, subjects: Sequence[Subject]) -> dict[tuple[Any, ...], list[int]]:
    found: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    dialect = _dialect(session)
    for store_id, orders in _orders_by_store(subjects).items():
        rows = session.execute(
            select(
                Action.id,
                Action.store_id,
                Action.order_id,
                Action.customer_id,
                Action.app,
                Action.channel,
                Action.event_name,
            )
            .where(
                Action.store_id == store_id,
                any_of(Action.order_id, orders, dialect),
                IS_LIVE_AUTO_ACTION,
            )
            .order_by(Action.id)
        ).all()
        for r in rows:
            found[(r.store_id, r.order_id, r.customer_id, r.app, r.channel, r.event_name)].append(r.id)
    return found
