"""Deliver claimed actions: guards, connector, HTTP, classification, attempt + state together.

A job carries a batch of action ids and the lease token under which the dispatcher claimed them (straight
into ``sending``). The worker reads those still under that token (a job without one, from an earlier
version, claims its queued actions first), decides and sends each in turn over one pooled HTTP session,
then writes every attempt and every new state of the batch in one transaction. Transitions stay
conditional on the state and the lease token; those that find the action moved on (its lease ran out
and another claim took it) are not applied, and the attempts are recorded all the same.

A connector that declares ``batch_size > 1`` gets the job's actions of one integration in as few
requests as its limits allow (``connectors.base.plan_batches``) whenever there are two or more of
them; one alone goes through ``build_request``. Each action still gets its own attempt (the request
as it would be sent for that event alone, the shared answer and duration) and its own outcome
(``classify_batch``). An idempotency key is sent once per request: an action repeating the key of
one already in the request is not sent again and shares that action's outcome (both are the same
event to the platform, which would keep only one of them anyway).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from connectors import registry
from connectors.base import (
    Connector,
    Customer,
    Event,
    Outcome,
    OutcomeKind,
    Request,
    SkipEvent,
    json_text,
    plan_batches,
    splice_of,
)
from connectors.http import Recorder, TransportError, redact_text
from hub import guards, outbox, pgcopy
from hub.flows import hold_reason
from hub.integrations import effective_rate
from hub.models import ActionState, Actor, Attempt, Integration, IntegrationState
from hub.runtime import collector_paused

if TYPE_CHECKING:
    import requests

    from hub.runtime import Runtime

log = logging.getLogger(__name__)

RESPONSE_EXCERPT = 2000
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE = re.compile(r"\+\d{7,15}")


def scrub(text: str, limit: int = RESPONSE_EXCERPT) -> str:
    """A platform's answer as we keep it: e-mail addresses and phone numbers removed, truncated."""
    text = _PHONE.sub("[phone]", _EMAIL.sub("[email]", text[: limit * 2]))
    return text if len(text) <= limit else text[:limit] + "…"


def event_from_payload(payload: Mapping[str, Any]) -> Event:
    """The action's snapshot (schemas.events.EventPayload, written by the hub) as a connector Event."""
    get = (payload.get("customer") or {}).get  # no comprehension: every event of a bulk request comes through here
    return Event(
        id=payload["id"],
        name=payload["name"],
        type=payload["type"],
        occurred_at=datetime.fromisoformat(payload["occurred_at"]),
        customer=Customer(
            email=get("email"),
            phone=get("phone"),
            first_name=get("first_name"),
            last_name=get("last_name"),
            external_id=get("external_id"),
        ),
        properties=payload.get("properties") or {},
        test=bool(payload.get("test")),
    )


def connector_settings(rt: Runtime, integration: Integration) -> dict[str, Any]:
    return {**integration.settings, **rt.box.decrypt(integration.credentials)}


@dataclass
class Decision:
    """What became of one action in this batch; written with the others in one transaction."""

    action: outbox.Delivering
    state: ActionState
    values: dict[str, Any] = field(default_factory=dict)
    attempt: dict[str, Any] | None = None
    credentials_rejected: str | None = None  # the platform's reason, when it refused the credentials


@dataclass
class Target:
    """One integration as the batch uses it: its connector and decrypted settings, looked up once."""

    integration: Integration | None
    connector: Connector | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    problem: tuple[ActionState, str, str] | None = None
    rate: float | None = None  # single requests per second the platform allows this integration
    deferred: int = 0  # actions of this batch already sent back to wait for tokens
    wait_for_token: float = 0.0
    batch_rate: float | None = None  # batch requests per second
    batch_burst: float | None = None
    unanswered: int = 0  # requests in a row this job that got no answer (timeouts, refused connections)
    retry_at: datetime | None = None  # when the last of them will be tried again

    @property
    def bucket(self) -> str:
        return f"integration:{self.integration.id if self.integration else 0}"

    @property
    def batch_bucket(self) -> str:
        return self.bucket + ":batch"  # platforms limit their bulk endpoints apart from the single one


def deliver_batch(rt: Runtime, action_ids: list[int], lease: str | None = None) -> dict[str, int]:
    """Deliver the actions among ``action_ids`` still sending under ``lease`` (without one: the queued ones, which
    this worker claims); those that moved on or that another claim holds are left alone."""
    with collector_paused():  # a bulk job makes tens of objects an event; their collections cost ~15 µs an event
        return _deliver_batch(rt, action_ids, lease)


def _deliver_batch(rt: Runtime, action_ids: list[int], lease: str | None) -> dict[str, int]:
    with rt.db.transaction() as session:
        if lease is not None:
            actions = outbox.read_for_delivery(session, action_ids, lease, rt.config.lease_seconds)
        else:
            lease, actions = outbox.claim_for_delivery(session, action_ids, rt.config.lease_seconds)
        if not actions:
            return {}
        actions.sort(key=lambda a: a.id)
        integration_ids = {a.integration_id for a in actions if a.integration_id is not None}
        integrations = {
            i.id: i for i in session.scalars(select(Integration).where(Integration.id.in_(integration_ids))).all()
        }
        # Guards again, just before delivery: the customer may have unsubscribed, the order been cancelled, or
        # the action grown stale since it was scheduled.
        verdicts = guards.evaluate(session, [guards.Subject.of(a) for a in actions], integrations=integrations)
    targets: dict[int | None, Target] = {iid: _target(rt, integrations.get(iid)) for iid in integration_ids}
    decisions: list[Decision] = []
    batched: dict[int | None, list[outbox.Delivering]] = defaultdict(list)
    # The job holds its lease for at least half of HUB_LEASE_SECONDS (read_for_delivery saw to it): what it has not
    # sent well before then goes back to the Queue, so no lease runs out while its actions are still being sent.
    deadline = _clock() + rt.config.lease_seconds * BUDGET_SHARE
    for action in actions:
        target = targets.get(action.integration_id) or Target(None)
        early = _before_sending(action, target, guards.first_failure(verdicts[action.id]))
        if early is not None:
            decisions.append(early)
        elif target.connector is not None and target.connector.batches:
            batched[action.integration_id].append(action)
        elif _clock() > deadline:
            decisions.append(_out_of_time(action))
        else:
            decisions.append(_decide(rt, action, target))
    for integration_id, group in batched.items():
        target = targets[integration_id]
        if len(group) == 1:  # one event: the single endpoint (often a higher rate tier, and no batch overhead)
            decisions.append(_decide(rt, group[0], target))
        else:
            decisions.extend(_deliver_in_batches(rt, group, target))
    return _record(rt, decisions, lease)


def _target(rt: Runtime, integration: Integration | None) -> Target:
    if integration is None or integration.state == IntegrationState.DISCONNECTED:
        return Target(
            integration, problem=(ActionState.SKIPPED, "integration_disconnected", "the app was disconnected")
        )
    if integration.state != IntegrationState.CONNECTED:
        return Target(integration, problem=hold_reason(integration))
    try:
        connector = registry.get(integration.app)
    except registry.UnknownConnector:
        return Target(integration, problem=(ActionState.FAILED, "unknown_app", f"no connector {integration.app!r}"))
    try:
        settings = connector_settings(rt, integration)
    except ValueError as error:
        return Target(integration, problem=(ActionState.FAILED, "bad_configuration", str(error)))
    capabilities = connector.capabilities
    scale = rt.config.rate_limit_scale

    def scaled(rate: float | None) -> float | None:
        return rate * scale if rate and scale > 0 else None

    return Target(
        integration,
        connector,
        settings,
        rate=scaled(effective_rate(integration, connector)),
        batch_rate=scaled(capabilities.batch_rate_limit_per_second),
        batch_burst=capabilities.batch_rate_burst * scale if capabilities.batch_rate_burst and scale > 0 else None,
    )


def _before_sending(action: outbox.Delivering, target: Target, stopped: guards.GuardResult | None) -> Decision | None:
    """What is decided without the connector: an unusable integration, or a guard that skips the action."""
    if target.problem is not None:
        state, code, text = target.problem
        return Decision(action, state, {"reason_code": code, "reason_text": text})
    if stopped is not None and stopped.until is not None:  # quiet hours
        return _back_to_queue(action, stopped.until, stopped.code, stopped.text)
    if stopped is not None and not stopped.hold:
        return Decision(
            action,
            ActionState.SKIPPED,
            {"reason_code": stopped.code, "reason_text": stopped.text, "caused_by": Actor.RULE},
        )
    return None


def _decide(
    rt: Runtime, action: outbox.Delivering, target: Target, stopped: guards.GuardResult | None = None
) -> Decision:
    early = _before_sending(action, target, stopped)
    if early is not None:
        return early
    assert target.connector is not None and target.integration is not None
    try:
        request = target.connector.build_request(event_from_payload(action.payload), target.settings)
    except SkipEvent as skip:
        return Decision(action, ActionState.SKIPPED, {"reason_code": skip.code, "reason_text": skip.message})
    except (KeyError, ValueError) as problem:
        return Decision(action, ActionState.FAILED, {"reason_code": "bad_configuration", "reason_text": str(problem)})

    if target.unanswered >= UNANSWERED_LIMIT:
        return _platform_unanswering(action, target)
    if target.rate:
        wait = target.wait_for_token if target.deferred else _take_token(rt, target.bucket, target.rate)
        if wait:
            # No token: the action waits for its turn in the database without spending an attempt. The rest
            # of the batch queues up behind it, one emission interval apart, instead of all returning at once.
            target.wait_for_token = wait
            target.deferred += 1
            return _wait_for_token(action, target, wait + (target.deferred - 1) / target.rate, target.rate)
    started, duration_ms, response, error = _send(rt, request)
    outcome = target.connector.classify(response, error)
    status = response.status_code if response is not None else None
    excerpt = scrub(response.text) if response is not None else None
    answered = outbox.now()
    decision = _sent(rt, action, outcome, started, duration_ms, status, error, redact_text(request), excerpt, answered)
    if error is not None and error.kind in ("timeout", "connection"):
        target.unanswered += 1
        target.retry_at = decision.values.get("run_at")
    else:
        target.unanswered = 0
    log.info(
        "attempt action=%s app=%s status=%s outcome=%s duration_ms=%s",
        action.id,
        target.integration.app,
        status,
        outcome.kind.value,
        duration_ms,
    )
    if outcome.kind == OutcomeKind.RATE_LIMITED and target.rate:
        rt.limiter.slow_down(target.bucket)
    return decision


BUDGET_SHARE = 0.4  # of HUB_LEASE_SECONDS: how long a job sends before it hands the rest back to the Queue
UNANSWERED_LIMIT = 3  # requests in a row without an answer, after which a job stops calling that platform
_clock = time.monotonic


def _back_to_queue(action: outbox.Delivering, run_at: datetime, code: str, text: str) -> Decision:
    """Not sent this time: pending again from ``run_at``, with why, and no attempt spent."""
    return Decision(action, ActionState.PENDING, {"run_at": run_at, "reason_code": code, "reason_text": text})


def _out_of_time(action: outbox.Delivering) -> Decision:
    return _back_to_queue(
        action,
        outbox.now(),
        "job_out_of_time",
        "its delivery job ran out of time before sending it; it goes with the next round",
    )


def _platform_unanswering(action: outbox.Delivering, target: Target) -> Decision:
    """A platform that timed out (or refused the connection) UNANSWERED_LIMIT times in a row in this job: the rest
    of its actions wait, without spending an attempt, until the last one tried is tried again, rather than each
    waiting out a timeout in turn while the job's lease runs down."""
    assert target.integration is not None
    return _back_to_queue(
        action,
        target.retry_at or outbox.now(),
        "platform_unanswering",
        f"{target.integration.app} did not answer {target.unanswered} requests in a row; waiting for its next try",
    )


def _wait_for_token(action: outbox.Delivering, target: Target, seconds: float, rate: float) -> Decision:
    assert target.integration is not None
    return _back_to_queue(
        action,
        outbox.now() + timedelta(seconds=seconds),
        "rate_limit_wait",
        f"waiting for {target.integration.app}'s rate limit ({rate:g} requests/s)",
    )


def _send(rt: Runtime, request: Request) -> tuple[datetime, int, requests.Response | None, TransportError | None]:
    """One call out: when it started, how long it took (ms), and the answer or the transport error."""
    started = outbox.now()
    clock = time.perf_counter()
    try:
        response = rt.http.send(request)
    except TransportError as exc:
        return started, int((time.perf_counter() - clock) * 1000), None, exc
    return started, int((time.perf_counter() - clock) * 1000), response, None


def _deliver_in_batches(rt: Runtime, actions: list[outbox.Delivering], target: Target) -> list[Decision]:
    """Actions of one batch-capable integration: as few requests as the connector's limits allow."""
    connector, settings, integration = target.connector, target.settings, target.integration
    assert connector is not None and integration is not None
    decisions: list[Decision] = []
    sent: list[tuple[outbox.Delivering, Any]] = []  # (action, its entry): one per idempotency key
    first: dict[str, int] = {}  # idempotency key → index in sent
    repeats: dict[int, list[outbox.Delivering]] = defaultdict(list)  # index in sent → actions repeating its key
    for action in actions:
        try:
            event = event_from_payload(action.payload)
            entry = connector.batch_entry(event, settings)
        except SkipEvent as skip:
            decisions.append(
                Decision(action, ActionState.SKIPPED, {"reason_code": skip.code, "reason_text": skip.message})
            )
            continue
        except (KeyError, ValueError) as problem:
            decisions.append(
                Decision(action, ActionState.FAILED, {"reason_code": "bad_configuration", "reason_text": str(problem)})
            )
            continue
        if event.id in first:
            repeats[first[event.id]].append(action)
            continue
        first[event.id] = len(sent)
        sent.append((action, entry))

    # Each entry is encoded once: its size plans the requests, and its text goes into the body and the record.
    splice = splice_of(connector, settings)
    recorder = Recorder(splice.request) if splice is not None else None
    texts = [json_text(entry) for _, entry in sent]
    waited = 0.0  # once a request finds no token, the rest of the job waits behind it in the database
    deferred = 0
    for group in plan_batches(connector, [e for _, e in sent], settings, sizes=[len(t) for t in texts]):
        members = [(sent[i][0], sent[i][1], texts[i], repeats.get(i, [])) for i in group]
        rate = target.batch_rate
        if rate:
            wait = waited or _take_token(rt, target.batch_bucket, rate, target.batch_burst)
            if wait:
                waited = wait
                at = wait + deferred / rate
                deferred += 1
                decisions.extend(
                    _wait_for_token(action, target, at, rate) for a, _, _, more in members for action in (a, *more)
                )
                continue
        if splice is not None:
            request = splice.build([text for _, _, text, _ in members])
        else:
            request = connector.build_batch_request([entry for _, entry, _, _ in members], settings)
        started, duration_ms, response, error = _send(rt, request)
        # One moment for every event of the request (its answer): the members delivered together share their
        # delivered_at, so their transition binds it once instead of as an array of a thousand timestamps.
        answered = outbox.now()
        outcomes = connector.classify_batch(response, error, len(members))
        if len(outcomes) != len(members):
            raise RuntimeError(f"{connector!r}.classify_batch gave {len(outcomes)} outcomes for {len(members)} events")
        status = response.status_code if response is not None else None
        excerpt = scrub(response.text) if response is not None else None
        log.info(
            "batch app=%s events=%d status=%s duration_ms=%s outcomes=%s",
            integration.app,
            len(members),
            status,
            duration_ms,
            dict(Counter(o.kind.value for o in outcomes)),
        )
        if any(o.kind == OutcomeKind.RATE_LIMITED for o in outcomes) and rate:
            rt.limiter.slow_down(target.batch_bucket)
        for position, ((action, entry, text, more), outcome) in enumerate(zip(members, outcomes, strict=True)):
            for each in (action, *more):
                # The request as it would have gone for this event alone, and where it sat in the real one.
                same_key_as = None if each is action else action.id
                if splice is not None and recorder is not None:
                    record = recorder.text_of(splice.body([text]), batch_members(len(members), position, same_key_as))
                else:
                    batch = {"events": len(members), "position": position}
                    if same_key_as is not None:
                        batch["same_key_as"] = same_key_as
                    record = redact_text(connector.build_batch_request([entry], settings), {"batch": batch})
                decisions.append(
                    _sent(rt, each, outcome, started, duration_ms, status, error, record, excerpt, answered)
                )
    return decisions


def batch_members(events: int, position: int, same_key_as: int | None = None) -> str:
    """The ``batch`` key of an event's record, ``{"events": …, "position": …[, "same_key_as": …]}``, as the members of
    an object written by ``json_text`` (no spaces): formatted directly, a thousand times a request, rather than
    encoded (0.3 against 0.9 µs)."""
    if same_key_as is None:
        return f'"batch":{{"events":{events:d},"position":{position:d}}}'
    return f'"batch":{{"events":{events:d},"position":{position:d},"same_key_as":{same_key_as:d}}}'


def _sent(
    rt: Runtime,
    action: outbox.Delivering,
    outcome: Outcome,
    started: datetime,
    duration_ms: int,
    status: int | None,
    error: Exception | None,
    request: str,
    response: str | None,
    answered: datetime,
) -> Decision:
    """The decision for one action whose request went out (alone or in a batch), with its attempt. ``answered`` is
    when the request's answer (or its error) came: the moment its outcome counts from."""
    state, values = _next_state(rt, action, outcome, answered)
    values.update(attempt_count=action.attempt_count + 1, last_status=status)  # we hold the lease: no one else writes
    attempt = {
        "action_id": action.id,
        "store_id": action.store_id,
        "number": action.attempt_count + 1,
        "started_at": started,
        "duration_ms": duration_ms,
        "outcome": outcome.kind.value,
        "http_status": status,
        "error": str(error) if error else (outcome.reason if outcome.kind != OutcomeKind.DELIVERED else None),
        "request": request,
        "response": response,
        "next_attempt_at": values.get("run_at") if state == ActionState.PENDING else None,
    }
    rejected = outcome.reason if outcome.kind == OutcomeKind.CREDENTIALS else None
    return Decision(action, state, values, attempt, rejected)


MAX_TOKEN_SLEEP = 0.25  # a worker waits this long at most for a token; a longer wait goes back to the database


def _take_token(rt: Runtime, bucket: str, rate: float, burst: float | None = None) -> float:
    """0 when a token was taken; else how long until the next one, which the action waits in the database."""
    wait = rt.limiter.acquire(bucket, rate, burst)
    if 0 < wait <= MAX_TOKEN_SLEEP:
        time.sleep(wait)
        wait = rt.limiter.acquire(bucket, rate, burst)
    return wait


def _next_state(
    rt: Runtime, action: outbox.Delivering, outcome: Outcome, at: datetime
) -> tuple[ActionState, dict[str, Any]]:
    policy = rt.retry_policy
    if outcome.kind == OutcomeKind.DELIVERED:
        return ActionState.DELIVERED, {"delivered_at": at, "reason_code": None, "reason_text": None}
    if outcome.kind == OutcomeKind.RATE_LIMITED:
        count = action.rate_limited_count + 1
        if count > rt.config.max_rate_limited:
            return ActionState.FAILED, {
                "reason_code": "rate_limited",
                "reason_text": outcome.reason,
                "rate_limited_count": count,
            }
        delay = policy.rate_limited_delay(count, outcome.retry_after)
        return ActionState.PENDING, {
            "run_at": at + timedelta(seconds=delay),
            "rate_limited_count": count,
            "reason_code": "rate_limited",
            "reason_text": outcome.reason,
        }
    if outcome.kind == OutcomeKind.RETRY:
        failures = action.failure_count + 1
        retry_delay = policy.delay(failures, outcome.retry_after)
        if retry_delay is None:
            return ActionState.FAILED, {
                "failure_count": failures,
                "reason_code": "retries_exhausted",
                "reason_text": f"gave up after {failures} failed attempts; last: {outcome.reason}",
            }
        return ActionState.PENDING, {
            "run_at": at + timedelta(seconds=retry_delay),
            "failure_count": failures,
            "reason_code": "retrying",
            "reason_text": outcome.reason,
        }
    if outcome.kind == OutcomeKind.CREDENTIALS:
        return ActionState.HELD, {"reason_code": "credentials_rejected", "reason_text": outcome.reason}
    return ActionState.FAILED, {"reason_code": "rejected", "reason_text": outcome.reason}


def _record(rt: Runtime, decisions: list[Decision], lease: str) -> dict[str, int]:
    """Every attempt and every transition of the batch, in one transaction."""
    tally: Counter[str] = Counter()
    with rt.db.transaction() as session:
        attempts = [d.attempt for d in decisions if d.attempt is not None]
        if attempts:
            insert_attempts(session, attempts)
        # One conditional UPDATE per kind of change (on PostgreSQL: all delivered actions in one statement, their
        # statuses in a VALUES list), its RETURNING checked against the ids it was meant to move.
        groups: dict[tuple[ActionState, tuple[str, ...]], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for decision in decisions:
            values = {**decision.values, "lease_expires_at": None}
            if decision.state == ActionState.DELIVERED:
                values.update(reason_code=None, reason_text=None)
            elif decision.state in (ActionState.FAILED, ActionState.SKIPPED):
                values.setdefault("caused_by", Actor.SYSTEM if decision.state == ActionState.FAILED else Actor.RULE)
            groups[(decision.state, tuple(sorted(values)))].append((decision.action.id, values))
        for (state, _), changes in groups.items():
            moved = outbox.transition_many(
                session, changes, expected=ActionState.SENDING, lease_token=lease, state=state
            )
            tally.update({state.value: len(moved), "lease_lost": len(changes) - len(moved)})
        for integration_id, reason in {
            d.action.integration_id: d.credentials_rejected for d in decisions if d.credentials_rejected
        }.items():
            _needs_attention(session, integration_id, reason)
    tally = +tally  # drop the zeros
    if tally["lease_lost"]:
        log.warning(
            "%d actions had moved on (their lease ran out): attempts recorded, states left alone", tally["lease_lost"]
        )
    return dict(tally)


ATTEMPT_COLUMNS = (
    "action_id",
    "store_id",
    "number",
    "started_at",
    "duration_ms",
    "outcome",
    "http_status",
    "error",
    "request",
    "response",
    "next_attempt_at",
)
REQUEST_AT = ATTEMPT_COLUMNS.index("request")
_COPY_ATTEMPTS = f"COPY attempts ({', '.join(ATTEMPT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def insert_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write a batch of attempt rows: COPY on PostgreSQL (the cheapest bulk write there is, for us and for
    the server), a Core executemany elsewhere. ``request`` is the record as JSON text (connectors.http.redact_text)
    or as a value.

    The COPY is in binary format: psycopg writes integers and times without formatting them as text, and the server
    reads them without parsing (5.3 → 2.3 µs of our CPU a row, 10.7 → 8.9 µs of PostgreSQL's, measured on 1,000 P2
    attempts); the rows stored are the same."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        decoded = [{**row, "request": _value(row["request"])} for row in rows]
        connection.execute(insert(Attempt), decoded)
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(_COPY_ATTEMPTS) as copy:
        # Strings go as text: the server reads them with the column's own receive function (varchar's checks its
        # length, json's parses the record, as their text input does).
        copy.set_types(pgcopy.binary_types(Attempt.__table__, ATTEMPT_COLUMNS))
        write = copy.write_row
        for row in rows:
            values = [row[c] for c in ATTEMPT_COLUMNS]
            if not isinstance(values[REQUEST_AT], str):
                values[REQUEST_AT] = json.dumps(values[REQUEST_AT])
            write(values)


def _value(request: Any) -> Any:
    return json.loads(request) if isinstance(request, str) else request


def _needs_attention(session: Session, integration_id: int | None, reason: str) -> None:
    integration = session.get(Integration, integration_id) if integration_id else None
    if integration is None:
        return
    session.execute(
        update(Integration)
        .where(Integration.id == integration.id, Integration.state == IntegrationState.CONNECTED)
        .values(
            state=IntegrationState.NEEDS_ATTENTION,
            last_error=f"credentials rejected: {reason}",
            updated_at=outbox.now(),
        )
        .execution_options(synchronize_session=False)
    )
    outbox.hold_integration(
        session, integration.id, "integration_needs_attention", f"{integration.app} needs attention: {reason}"
    )
