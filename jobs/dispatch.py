"""The dispatcher process: a loop over hub.dispatch.dispatch_once."""

from __future__ import annotations

import logging
import threading
import time

from hub.dispatch import HOUSEKEEPING_SECONDS, dispatch_once, housekeeping, pause
from hub.runtime import Runtime

log = logging.getLogger(__name__)


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
            claimed = dispatch_once(rt)
        except Exception:  # a database or Redis hiccup must not end the dispatcher; leases make it safe
            log.exception("dispatch round failed; trying again")
            claimed = 0
        if claimed < rt.config.dispatch_batch:  # a full round means more is due: go again at once
            stop.wait(pause(rt))
    log.info("dispatcher stopped")
