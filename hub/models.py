"""Typed SQLAlchemy models. Every row but a Store belongs to one store."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python everywhere; SQLite stores it naive, PostgreSQL as timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = BigInteger().with_variant(Integer, "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: Json}


def table_of(model: type[Base]) -> Table:
    """A model's Table, typed as one (``__table__`` is typed as a FromClause), for Core statements."""
    return cast(Table, model.__table__)


class ActionState(enum.StrEnum):
    PENDING = "pending"  # waiting for run_at
    HELD = "held"  # waiting for the integration to be usable again
    QUEUED = "queued"  # claimed, job without a lease token in Redis: written by earlier versions only
    SENDING = "sending"  # claimed by a worker, under lease
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    FAILED = "failed"


OPEN_STATES = (ActionState.PENDING, ActionState.HELD, ActionState.QUEUED, ActionState.SENDING)
FINAL_STATES = (ActionState.DELIVERED, ActionState.CANCELLED, ActionState.SKIPPED, ActionState.FAILED)


class IntegrationState(enum.StrEnum):
    CONNECTED = "connected"
    NEEDS_ATTENTION = "needs_attention"
    PAUSED = "paused"
    DISCONNECTED = "disconnected"


class Store(Base):
    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    event_prefix: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Store settings (hub.quiet): an IANA time zone, and optional quiet hours in it, as minutes after midnight.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    quiet_hours_start: Mapped[int | None] = mapped_column(Integer)
    quiet_hours_end: Mapped[int | None] = mapped_column(Integer)
    quiet_hours_applies_to: Mapped[str] = mapped_column(String(8), default="sms", server_default="sms")  # sms | all
    # Bumped by database triggers (migration 0004) whenever the store's integrations, flows or flow steps
    # change; ingest caches those per process and checks this counter on every trigger.
    config_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists so a merchant can tell tokens apart
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex; the token is shown once
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


def partial(predicate: str) -> dict[str, Any]:
    """An index over the rows matching ``predicate`` only, on both databases."""
    return {"postgresql_where": text(predicate), "sqlite_where": text(predicate)}


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        # Each lookup names a value (= or = ANY), which a NULL never matches: a customer known by e-mail alone takes
        # no entry in the phone and external-id indexes (migration 0014).
        Index("ix_customers_store_email", "store_id", "email", **partial("email IS NOT NULL")),
        Index("ix_customers_store_external_id", "store_id", "external_id", **partial("external_id IS NOT NULL")),
        Index("ix_customers_store_phone", "store_id", "phone", **partial("phone IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Integration(Base):
    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("store_id", "app"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    app: Mapped[str] = mapped_column(String(64))  # the connector key
    state: Mapped[str] = mapped_column(String(20), default=IntegrationState.CONNECTED)
    credentials: Mapped[str] = mapped_column(Text, default="")  # MultiFernet token of a JSON object
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Requests per second for this integration's bucket, set by the merchant; None: the connector's published rate.
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Flow(Base):
    __tablename__ = "flows"

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    steps: Mapped[list[FlowStep]] = relationship(
        order_by="FlowStep.position", cascade="all, delete-orphan", lazy="selectin"
    )


class FlowStep(Base):
    __tablename__ = "flow_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flows.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    delay_seconds: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16))  # event | message
    app: Mapped[str | None] = mapped_column(String(64))  # event steps: one app, or None for every connected app
    event_name: Mapped[str | None] = mapped_column(String(200))
    event_type: Mapped[str | None] = mapped_column(String(64))  # canonical type, e.g. review_request
    channel: Mapped[str | None] = mapped_column(String(16))  # message steps: email | sms
    template: Mapped[str | None] = mapped_column(String(200))


class Trigger(Base):
    """One accepted trigger. Its dedupe key makes a repeated trigger create nothing new."""

    __tablename__ = "triggers"
    __table_args__ = (
        UniqueConstraint("store_id", "dedupe_key"),
        # The guards ask on every trigger whether its order was stopped and whether its customer reviewed
        # something: without these, each ingest scanned the whole table. Partial, so the common triggers
        # (order.fulfilled, order.delivered) add no index entry.
        Index(
            "ix_triggers_store_order_stoppers",
            "store_id",
            "order_id",
            postgresql_where=text("type IN ('order.cancelled', 'order.refunded')"),
            sqlite_where=text("type IN ('order.cancelled', 'order.refunded')"),
        ),
        Index(
            "ix_triggers_customer_reviews",
            "customer_id",
            postgresql_where=text("type = 'review.submitted'"),
            sqlite_where=text("type = 'review.submitted'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(300))
    order_id: Mapped[str | None] = mapped_column(String(200))
    # No foreign key: deleting a customer clears it by a trigger, as ON DELETE SET NULL did (hub.cascades, 0014).
    customer_id: Mapped[int | None] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReceivedTrigger(Base):
    """A trigger taken in but not yet processed (POST /triggers with ``Prefer: respond-async``, PostgreSQL).

    The request stores the trigger's body as it came and answers at once; the dispatcher folds what waits here into
    triggers and actions in batches (hub.inbox), in the order it came. ``trigger_id`` is the id the trigger will
    have, taken from the triggers' sequence when it is received, so the answer can name it. A row the fold could not
    process stays, with ``failed_at`` and ``error``, and is not tried again on its own."""

    __tablename__ = "received_triggers"
    __table_args__ = (UniqueConstraint("store_id", "dedupe_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key (a check on every trigger received): the fold drops what a deleted store left.
    store_id: Mapped[int] = mapped_column(Integer)
    trigger_id: Mapped[int] = mapped_column(BigId)
    dedupe_key: Mapped[str] = mapped_column(String(300))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    failed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


TARGET_KEYS = ("email", "phone", "external_id")  # what an action's target holds, in the order it is written


class Action(Base):
    """The outbox row: one step for one recipient through one app or channel."""

    __tablename__ = "actions"
    __table_args__ = (
        UniqueConstraint("store_id", "idempotency_key"),
        # No index names state, run_at or lease_expires_at: the scans of open actions (due, lost leases, the Queue,
        # an integration's waiting actions) read OpenAction, so a transition (a claim, an outcome) changes no indexed
        # column here and PostgreSQL can make it a HOT update (migration 0011; the table has fillfactor 50 there).
        Index("ix_actions_store_id", "store_id", "id"),
        Index("ix_actions_trigger_id", "trigger_id"),
        Index("ix_actions_store_order", "store_id", "order_id"),
        Index("ix_actions_store_customer", "store_id", "customer_id"),
        Index("ix_actions_bulk_operation", "bulk_operation_id", **partial("bulk_operation_id IS NOT NULL")),
        Index("ix_actions_store_created", "store_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    # References without foreign keys: PostgreSQL checked each on every action written; triggers on the tables they
    # point to clear them when a row is deleted, as ON DELETE SET NULL did (hub.cascades, migration 0013).
    flow_id: Mapped[int | None] = mapped_column(Integer)
    step_id: Mapped[int | None] = mapped_column(Integer)
    trigger_id: Mapped[int | None] = mapped_column(BigId)
    customer_id: Mapped[int | None] = mapped_column(Integer)
    integration_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # event | message
    app: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(16))
    event_name: Mapped[str | None] = mapped_column(String(200))
    event_type: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[dict[str, Any]] = mapped_column(default=dict)  # email / phone / external_id
    trigger: Mapped[str] = mapped_column(String(16))  # auto | manual | test | replay
    state: Mapped[str] = mapped_column(String(16), default=ActionState.PENDING)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    reason_text: Mapped[str | None] = mapped_column(Text)
    scheduled_at: Mapped[datetime]  # when the flow meant it to go
    run_at: Mapped[datetime]  # when it is due next (retries move it)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)  # counts toward the retry schedule
    rate_limited_count: Mapped[int] = mapped_column(Integer, default=0)  # 429s cost no retry budget
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None]
    idempotency_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the event snapshot
    batch_id: Mapped[str | None] = mapped_column(String(32))
    last_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    order_id: Mapped[str | None] = mapped_column(String(200))  # the trigger's order, for search and order rules
    caused_by: Mapped[str | None] = mapped_column(String(16))  # cancelled/skipped/failed by: merchant | rule | system
    bulk_operation_id: Mapped[int | None] = mapped_column(BigId)  # the bulk operation that last moved it (undo)
    # Set by Send now: the merchant chose to send it at once, so the store's quiet hours do not hold it back.
    ignore_quiet_hours: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    attempts: Mapped[list[Attempt]] = relationship(
        primaryjoin="Action.id == foreign(Attempt.action_id)", order_by="Attempt.id", lazy="raise", viewonly=True
    )


class OpenAction(Base):
    """One row per action in an open state (pending, held, queued, sending): the columns the outbox's scans
    look for (due, lost leases, the Queue, an integration's waiting actions), in a narrow table of its own.

    Kept exact by database triggers on ``actions`` (hub.open_actions) in the writer's transaction: an action
    enters with its insert or when it is reopened (a retry, a release, a restore, a replay), follows every change
    of its run_at, state, lease or integration while open, and leaves when it closes or is deleted. Code only
    reads it. Indexing these columns here rather than on ``actions`` lets a claim and an outcome rewrite the
    action row without touching any of its indexes (a HOT update on PostgreSQL): only this table's narrow row
    and its entries are rewritten.
    """

    __tablename__ = "open_actions"
    __table_args__ = (
        Index("ix_open_actions_due", "run_at", **partial("state = 'pending'")),  # the dispatcher's due scan
        # Lost leases: a lease is set in sending (and queued, from earlier versions) and cleared on leaving it.
        Index("ix_open_actions_leased", "lease_expires_at", **partial("lease_expires_at IS NOT NULL")),
        Index("ix_open_actions_queue", "store_id", "run_at", "action_id", **partial("state IN ('pending', 'held')")),
        # Holding, releasing and disconnecting an integration touch only its pending and held actions; a claim's
        # row (sending) leaves this index rather than adding an entry.
        Index("ix_open_actions_integration", "integration_id", "state", **partial("state IN ('pending', 'held')")),
    )

    # No foreign key: the delete trigger takes the row away with its action, and a key would look up and lock
    # the action row on every insert here (each new action, each retry).
    action_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    store_id: Mapped[int] = mapped_column(Integer)
    integration_id: Mapped[int | None] = mapped_column(Integer)
    run_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    lease_expires_at: Mapped[datetime | None]


class ActionCount(Base):
    """Counts of actions per store, hour of creation (UTC, hours since the epoch), app, kind, trigger, flow,
    state bucket (the open states are one bucket), who caused it and whether it was sent (attempted).

    Kept by database triggers on ``actions`` (hub.counters), in the same transaction as every insert, state
    change and delete, so they are exact whatever wrote the row. Triggers append signed rows (no row is
    updated in place, so concurrent writers never wait on a counter); ``hub.counters.compact`` folds them
    into one settled row per key. A key's count is the sum of its rows.
    """

    __tablename__ = "action_counts"
    __table_args__ = (
        Index("ix_action_counts_store_hour", "store_id", "hour"),
        Index("ix_action_counts_unsettled", "settled", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    hour: Mapped[int] = mapped_column(Integer)  # floor(epoch seconds of created_at / 3600)
    app: Mapped[str] = mapped_column(String(64))  # "" when none
    kind: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    flow_id: Mapped[int] = mapped_column(Integer)  # 0 when none
    bucket: Mapped[str] = mapped_column(String(16))  # open | delivered | failed | skipped | cancelled
    caused_by: Mapped[str] = mapped_column(String(16))  # "" when none
    sent: Mapped[bool] = mapped_column(Boolean)  # attempt_count > 0
    count: Mapped[int] = mapped_column(BigInteger)
    settled: Mapped[bool] = mapped_column(Boolean, default=False)  # written by compact(), not by a trigger


class Attempt(Base):
    """One call out to a platform for one action."""

    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_action_id", "action_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key: PostgreSQL checked it row by row on every attempt written; a trigger on actions deletes an
    # action's attempts with it (hub.cascades, migration 0012).
    action_id: Mapped[int] = mapped_column(BigId)
    # The action's store, for store-scoped reads. No foreign key of its own: the action's already ties the attempt
    # to a live store (a deleted store takes its actions, and they their attempts), and PostgreSQL checked a second
    # one on every attempt written, one lookup and lock of the store row per event (migration 0010).
    store_id: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    # As sent, secrets redacted. json, not jsonb, on PostgreSQL: written once per event, read back whole, never
    # searched inside, and jsonb would parse every record on insert (migration 0008).
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    response: Mapped[str | None] = mapped_column(Text)  # truncated
    next_attempt_at: Mapped[datetime | None]


class SandboxRequest(Base):
    """What the built-in sandbox app received, and what it answered."""

    __tablename__ = "sandbox_requests"
    __table_args__ = (
        Index("ix_sandbox_requests_integration", "integration_id", "id"),
        Index("ix_sandbox_requests_key", "integration_id", "idempotency_key"),
        Index("ix_sandbox_requests_store", "store_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    integration_id: Mapped[int] = mapped_column(ForeignKey("integrations.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[dict[str, Any] | None] = mapped_column(Json)
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(Json)


class Actor(enum.StrEnum):
    """Who caused an action to leave the Queue without being delivered."""

    MERCHANT = "merchant"  # a manual operation (API or CLI)
    RULE = "rule"  # a guard or an order rule (cancelled, refunded)
    SYSTEM = "system"  # delivery: the platform refused it, retries ran out


class Suppression(Base):
    """A customer identity that must not be contacted on a channel ("all", "email", "sms" or an app key)."""

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("store_id", "channel", "value"),
        Index("ix_suppressions_store_value", "store_id", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(320))  # an email (lower case), an E.164 phone or an external id
    reason: Mapped[str] = mapped_column(String(32))  # unsubscribed | bounced | complained | manual
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BulkOperation(Base):
    """One operation over many actions: ids or a filter; run inline, or as a background job when large."""

    __tablename__ = "bulk_operations"
    __table_args__ = (
        Index("ix_bulk_operations_store", "store_id", "id"),
        Index("ix_bulk_operations_state", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(16))  # send_now | delay | cancel | restore | replay
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)  # ids or filter, and the operation's arguments
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued | running | done | failed | undone
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)  # actions looked at so far
    changed: Mapped[int] = mapped_column(Integer, default=0)  # actions the operation moved
    created_by: Mapped[str] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    undo_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # The run's lease: renewed with every batch; a lost job (worker killed, Redis emptied) lets it run out, and
    # the dispatcher's sweep starts the operation again from the last id it finished (hub.bulk.sweep).
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None]
    resume_after: Mapped[int] = mapped_column(BigInteger, default=0)  # the last action id done
    resumes: Mapped[int] = mapped_column(Integer, default=0)  # times the sweep started it again


class AuditEntry(Base):
    """A manual operation: who did what, when, to which action (or bulk operation)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_store", "store_id", "id"),
        Index("ix_audit_log_action", "action_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(200))  # "token 3 (name)" or "cli"
    operation: Mapped[str] = mapped_column(String(32))
    action_id: Mapped[int | None] = mapped_column(BigId)  # no foreign key: the record outlives the row
    bulk_operation_id: Mapped[int | None] = mapped_column(BigId)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
