"""The dispatcher process: a loop over hub.dispatch.dispatch_once."""

from __future__ import annotations

import logging
import threading
import time

from hub.dispatch import HOUSEKEEPING_SECONDS, dispatch_once, fold_received, housekeeping, pause
from hub.inbox import FOLD_BATCH
from hub.runtime import Runtime

log = logging.getLogger(__name__)

RECEIVING_PAUSE = 0.2  # seconds between rounds while triggers keep being received (Prefer: respond-async)


def run(rt: Runtime, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    log.info(
        "dispatcher started: every %.2fs, up to %d actions a round",
        rt.config.dispatch_interval,
        rt.config.dispatch_batch,
    )
    next_housekeeping = time.monotonic()
    while not stop.is_set():
        if time.monotonic() >= next_housekeeping:
            next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
            try:
                housekeeping(rt)
            except Exception:  # like a failed round: logged, and tried again next time
                log.exception("housekeeping failed; trying again later")
        try:
            received = fold_received(rt)
        except Exception:  # as a failed round: what was received waits, and is taken again next round
            log.exception("processing received triggers failed; trying again")
            received = 0
        try:
            claimed = dispatch_once(rt)
        except Exception:  # a database or Redis hiccup must not end the dispatcher; leases make it safe
            log.exception("dispatch round failed; trying again")
            claimed = 0
        # A full round means more is due (or received): go again at once. Triggers are being received: look again
        # soon, for more of them, rather than after a whole interval.
        if claimed < rt.config.dispatch_batch and received < FOLD_BATCH:
            stop.wait(min(pause(rt), RECEIVING_PAUSE) if received else pause(rt))
    log.info("dispatcher stopped")
