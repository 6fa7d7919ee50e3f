"""The retry schedule is a pure function: tenacity's waits with jitter, Retry-After honoured."""

from __future__ import annotations

import pytest

from hub.backoff import MAX_RETRY_AFTER, RetryPolicy
from hub.config import DEFAULT_RETRY_SCHEDULE


def test_each_failure_waits_its_step_of_the_schedule_plus_at_most_ten_percent_jitter() -> None:
    policy = RetryPolicy(DEFAULT_RETRY_SCHEDULE, jitter=0.1)
    for failures, step in enumerate(DEFAULT_RETRY_SCHEDULE, 1):
        waits = [policy.delay(failures) for _ in range(50)]
        assert all(w is not None and step <= w <= step * 1.1 for w in waits)
        assert len(set(waits)) > 1  # jittered, so retries of many actions don't arrive together


def test_the_schedule_ends_after_its_last_step() -> None:
    policy = RetryPolicy((1.0, 2.0))
    assert policy.max_attempts == 3
    assert policy.delay(3) is None
    with pytest.raises(ValueError):
        policy.delay(0)


def test_retry_after_wins_when_it_asks_for_longer_and_is_capped_at_a_day() -> None:
    policy = RetryPolicy((5.0,), jitter=0)
    assert policy.delay(1, retry_after=120) == 120
    assert policy.delay(1, retry_after=1) == 5
    assert policy.delay(1, retry_after=10 * 86400) == MAX_RETRY_AFTER


def test_rate_limited_waits_use_retry_after_or_grow_from_a_second() -> None:
    policy = RetryPolicy((5.0,))
    assert policy.rate_limited_delay(1, retry_after=30) == 30
    assert [policy.rate_limited_delay(n, None) for n in (1, 2, 3, 20)] == [1, 2, 4, 300]
