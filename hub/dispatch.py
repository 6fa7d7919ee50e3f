"""Hand claimed actions to rq: jobs carry ids only, grouped per integration and batched."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from connectors import registry
from hub import inbox, outbox

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger(__name__)

DELIVER_JOB = "jobs.deliver.deliver"
JOB_TIMEOUT = 600  # rq's own limit for one job; a batch of slow platform calls must fit in it


def job_size(rt: Runtime, app: str | None) -> int:
    """Ids per job: HUB_JOB_BATCH, or a whole batch request's worth for a connector that sends in batches."""
    try:
        batch_size = registry.get(app).capabilities.batch_size if app else 1
    except registry.UnknownConnector:
        batch_size = 1
    return max(rt.config.job_batch, batch_size)


def enqueue(rt: Runtime, claimed: Iterable[outbox.Claimed], *, at_front: bool = False) -> int:
    """One job per integration, lease and batch of ids; a job carries its ids and their lease token. Returns the
    number of jobs."""
    groups: dict[tuple[int | None, str | None], list[int]] = defaultdict(list)
    apps: dict[int | None, str | None] = {}
    for item in claimed:
        groups[(item.integration_id, item.lease)].append(item.id)
        apps.setdefault(item.integration_id, item.app)
    jobs: list[tuple[Any, ...]] = []
    for (integration_id, lease), ids in groups.items():
        size = job_size(rt, apps[integration_id])
        jobs.extend((ids[i : i + size], lease) if lease else (ids[i : i + size],) for i in range(0, len(ids), size))
    if at_front:
        for args in jobs:
            rt.queue.enqueue(
                DELIVER_JOB, *args, job_timeout=JOB_TIMEOUT, at_front=True, result_ttl=60, failure_ttl=86400
            )
    elif jobs:
        rt.queue.enqueue_many(
            [
                rt.queue.prepare_data(DELIVER_JOB, args, timeout=JOB_TIMEOUT, result_ttl=60, failure_ttl=86400)
                for args in jobs
            ]
        )
    return len(jobs)


def dispatch_once(rt: Runtime) -> int:
    """Claim due actions (and expired leases) and enqueue them. Returns how many were claimed."""
    claimed = outbox.claim_due(rt.db, rt.config.dispatch_batch, rt.config.lease_seconds)
    if claimed:
        # If enqueueing fails (Redis down), the leases run out and a later round claims them again.
        jobs = enqueue(rt, claimed)
        log.info("dispatched %d actions in %d jobs", len(claimed), jobs)
    return len(claimed)


def fold_received(rt: Runtime) -> int:
    """Process the triggers received with ``Prefer: respond-async`` (hub.inbox). Returns how many were taken."""
    taken = inbox.fold_once(rt.db, rt.caches.stores)
    if taken:
        log.info("processed %d received triggers", taken)
    return taken


MIN_PAUSE = 0.01  # seconds: what is due but locked is another dispatcher's, about to be committed


def pause(rt: Runtime) -> float:
    """How long an idle dispatcher waits before its next round: until the next pending action comes due, and at
    most HUB_DISPATCH_INTERVAL (actions created meanwhile, and lost leases, wait for the next round).

    So a backlog scheduled for a moment goes out at that moment, not up to an interval later, without polling
    the database many times a second. A failed look-up waits the whole interval."""
    try:
        next_due = outbox.next_due(rt.db)
    except Exception:  # the round after will say what is wrong
        log.debug("could not read when the next action is due", exc_info=True)
        return rt.config.dispatch_interval
    if next_due is None:
        return rt.config.dispatch_interval
    wait = (next_due - outbox.now()).total_seconds()
    return min(rt.config.dispatch_interval, max(MIN_PAUSE, wait))


HOUSEKEEPING_SECONDS = 30.0  # how often a dispatcher runs housekeeping()


def housekeeping(rt: Runtime) -> None:
    """What a dispatcher does besides dispatching, every HOUSEKEEPING_SECONDS: start again the bulk operations
    whose run was lost, and fold the counters the triggers appended (hub.counters)."""
    from hub import bulk, counters  # bulk reaches this module through hub.operations

    restarted = bulk.sweep(rt)
    if restarted:
        log.warning("started %d lost bulk operations again: %s", len(restarted), restarted)
    with rt.db.session() as session:
        folded = counters.compact_all(session)
    if folded:
        log.info("compacted %d action counter keys", folded)
