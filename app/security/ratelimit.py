"""Per-key token bucket: ``rate`` tokens per second up to ``burst``; one token per request (``cost``: a
WebSocket takes what its messages amount to in requests at once, ``app.security.streams``).

Redis mode: the bucket lives in Redis (one Lua script per request, Redis' own clock), so all workers
and hosts share it.  SQLite mode: one bucket per worker process (with N workers a key may get up to
N times its rate).  If Redis cannot be reached the limiter lets the request through (fail open) and
the request then meets the store's own 503.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.store.redis import RedisStore

logger = logging.getLogger("nuqi.security.ratelimit")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float  # 0 when allowed
    remaining: float


class Limiter(Protocol):
    async def take(self, bucket: str, rate: float, burst: float, cost: float = 1.0) -> Decision: ...

    async def close(self) -> None: ...


class LocalLimiter:
    """In-process buckets (SQLite mode, tests)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # bucket -> (tokens, at)
        self._lock = threading.Lock()

    async def take(self, bucket: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        return self.take_sync(bucket, rate, burst, cost)

    def take_sync(self, bucket: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(bucket, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= cost:
                self._buckets[bucket] = (tokens - cost, now)
                return Decision(True, 0.0, tokens - cost)
            self._buckets[bucket] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget idle buckets (they refill to full anyway)
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 3600}
        return Decision(False, (cost - tokens) / rate if rate > 0 else math.inf, tokens)

    async def close(self) -> None:
        pass


# KEYS[1] bucket hash; ARGV: rate, burst, ttl_s, cost.  Returns {allowed, tokens*1000, retry_after_ms}.
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if not tokens then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed, retry = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
elseif rate > 0 then
  retry = math.ceil((cost - tokens) / rate * 1000)
else
  retry = 3600000
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {allowed, math.floor(tokens * 1000), retry}
"""


class RedisLimiter:
    """Buckets shared by every worker through Redis (asyncio client, so the event loop never blocks)."""

    def __init__(self, url: str, prefix: str, connect_timeout_s: float = 1.0, socket_timeout_s: float = 1.0) -> None:
        self.prefix = prefix
        self.client = aredis.Redis.from_url(url, socket_connect_timeout=connect_timeout_s,
                                            socket_timeout=socket_timeout_s, retry=Retry(NoBackoff(), 1),
                                            max_connections=64)
        self._script = self.client.register_script(_BUCKET)
        self._down_logged = 0.0

    async def take(self, bucket: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        ttl = max(60, int(math.ceil(burst / rate)) + 60) if rate > 0 else 86400
        try:
            allowed, tokens, retry_ms = await self._script(keys=[f"{self.prefix}:rl:{bucket}"],
                                                           args=[rate, burst, ttl, cost])
        except redis.exceptions.RedisError as exc:
            if time.monotonic() - self._down_logged > 10:
                self._down_logged = time.monotonic()
                logger.warning("rate limiter cannot reach Redis (%s); letting requests through", exc)
            return Decision(True, 0.0, float(burst))
        return Decision(bool(allowed), int(retry_ms) / 1000.0, int(tokens) / 1000.0)

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except Exception:  # noqa: BLE001 - closing a dead connection at shutdown
            pass


def open_limiter(store: Any) -> Limiter:
    if isinstance(store, RedisStore):
        return RedisLimiter(store.url, store.prefix, store.connect_timeout_s, store.socket_timeout_s)
    return LocalLimiter()
