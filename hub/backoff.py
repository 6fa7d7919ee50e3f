"""When to try again: a pure function of the failure count and the platform's Retry-After.

Built on tenacity's wait strategies (a chain of fixed waits, each with random jitter), but never used
to sleep: the result is stored as the action's next run time (design.md, invariant 4).
"""

from __future__ import annotations

from collections.abc import Sequence

from tenacity import RetryCallState, wait_chain, wait_fixed, wait_random

MAX_RETRY_AFTER = 24 * 3600.0  # a platform asking for longer than a day is capped


class RetryPolicy:
    def __init__(self, schedule: Sequence[float], jitter: float = 0.1) -> None:
        self.schedule = tuple(float(s) for s in schedule)
        self._wait = wait_chain(*(wait_fixed(s) + wait_random(0, s * jitter) for s in self.schedule))

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def delay(self, failures: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait after the ``failures``-th failure, or None when the schedule is spent."""
        if failures < 1:
            raise ValueError("failures starts at 1")
        if failures > len(self.schedule):
            return None
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = failures
        wait = float(self._wait(state))
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait

    def rate_limited_delay(self, count: int, retry_after: float | None) -> float:
        """After a 429: the platform's Retry-After, else a short growing wait (1 s, 2 s, 4 s … 5 min)."""
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        return float(min(300.0, 2.0 ** max(0, count - 1)))
