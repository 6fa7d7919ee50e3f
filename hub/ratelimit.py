"""Rate limits per integration, shared by every worker: a GCRA token bucket in one Redis Lua script.

The rate comes from the connector's published limit (``Capabilities.rate_limit_per_second``). A 429
from the platform slows the bucket down for a while. Waiting for a token costs no attempt: the
worker either waits a moment or puts the action back with its new due time.
"""

from __future__ import annotations

import redis

# KEYS[1] bucket (its theoretical arrival time, ms), KEYS[2] slow-down factor.
# ARGV[1] emission interval in ms (1000 / rate), ARGV[2] burst (requests allowed at once).
# Returns 0 when a token was taken, else the milliseconds to wait. Time comes from Redis, so workers on
# machines with skewed clocks share one timeline.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local factor = tonumber(redis.call('GET', KEYS[2]) or '1')
if factor > 0 and factor < 1 then interval = interval / factor end
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return math.ceil(allow_at - now) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now + tolerance) + 1000)
return 0
"""

PREFIX = "tidings:rl:"


class RateLimiter:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(GCRA)

    def acquire(self, bucket: str, per_second: float, burst: float | None = None) -> float:
        """Take a token. Returns 0.0 when taken, else the seconds until one is free."""
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        burst = max(1.0, burst if burst is not None else per_second)
        wait_ms = self._script(keys=[PREFIX + bucket, PREFIX + bucket + ":slow"], args=[1000.0 / per_second, burst])
        return int(wait_ms) / 1000.0

    def slow_down(self, bucket: str, factor: float = 0.5, seconds: int = 60) -> None:
        """After a 429: run the bucket at ``factor`` of its rate for ``seconds`` (repeated 429s go slower still)."""
        key = PREFIX + bucket + ":slow"
        current = float(self.client.get(key) or 1.0)
        self.client.set(key, max(0.05, current * factor), ex=seconds)

    def reset(self, bucket: str) -> None:
        self.client.delete(PREFIX + bucket, PREFIX + bucket + ":slow")
