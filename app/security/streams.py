"""Long-lived connections under the same key rules as requests: revocation and the per-key rate limit.

An HTTP request is checked once; an SSE alert stream or a WebSocket may live for hours.  A
:class:`ConnectionGuard` is made for each such connection from the key it was opened with:

* **Revocation.** Before each message (WebSockets) or poll (SSE) the key is looked up again when this worker's
  lookup of it is older than ``NUQI_KEY_CACHE_S`` (one store read per key and period, shared by all of the key's
  connections; ``app.security.keys.KeyManager.refresh``), so a revoked or deleted key (also one lost with a Redis
  that restarted without persistence) stops working on open connections within that period, as it does for new
  requests.  :meth:`check_key` raises ``AuthError``; the caller closes the connection (WebSocket close 1008 with
  the reason, an SSE stream ends with an ``error`` event).  While the key store cannot be reached the connection
  keeps its key (it is checked again next period), as a key store outage must not cut every live call.
* **Rate.** Messages draw on the key's token bucket (``NUQI_RATE_LIMIT_PER_S`` / ``NUQI_RATE_LIMIT_BURST`` or the
  key's own) as HTTP requests do: a message without audio costs one request; a message with audio costs its
  duration in analysis windows (``NUQI_STREAM_WINDOW_S``, 1 s: one window of audio is what one ``POST .../audio``
  chunk costs, mono or stereo), so a call streamed in 20 ms frames costs the same as the same call posted in 1 s
  chunks.  Costs below one request are summed locally and taken from the bucket once they reach one, so a 20 ms
  frame is not a store round trip.  :meth:`spend` raises ``RateLimitedError`` and the message is refused.

With authentication off (no key) the guard does nothing, as for requests.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from app.deps import Principal
from app.errors import AuthError, RateLimitedError
from pipelines.errors import StoreUnavailableError

logger = logging.getLogger("nuqi.security.streams")


class ConnectionGuard:
    """The key checks of one open connection (``sec``: the app's ``SecurityRuntime``; ``who``: its principal)."""

    def __init__(self, sec: Any, who: Principal | None) -> None:
        self.sec = sec
        self.who = who
        self.active = bool(sec is not None and who is not None and who.key_id and sec.settings.auth_enabled)
        self._credit = 0.0  # requests' worth taken from the key's bucket and not yet drawn by messages
        self._blocked_until = 0.0  # refused until then (monotonic clock) without asking the bucket
        self._rate: tuple[float, int] = (0.0, 0)  # the key's rate and burst when it was last refused
        self._checked = time.monotonic()  # the key was verified when the connection opened

    @classmethod
    def of(cls, conn: Any, who: Principal | None = None) -> "ConnectionGuard":
        """The guard of a Starlette request or WebSocket (its principal unless ``who`` is given)."""
        return cls(getattr(conn.app.state, "security", None), who or getattr(conn.state, "principal", None))

    async def _key(self) -> Any:
        keys = self.sec.keys
        hit, key = keys.current(self.who.key_id)
        if not hit:
            key = await asyncio.to_thread(keys.refresh, self.who.key_id)
        return key

    async def check_key(self) -> None:
        """AuthError when the connection's key was revoked (or is gone); looked up at most once per key-cache
        period (``key_cache_s``)."""
        if not self.active:
            return
        now = time.monotonic()
        if now - self._checked < self.sec.settings.key_cache_s:
            return
        self._checked = now
        try:
            key = await self._key()
        except StoreUnavailableError as exc:
            logger.warning("cannot re-check API key %s of an open connection: %s", self.who.key_id, exc.message)
            return
        if key is None or not key.active:
            raise AuthError(f"API key {self.who.key_id} was revoked; this connection is closed",
                            key_id=self.who.key_id)

    async def spend(self, cost: float = 1.0) -> None:
        """Draw ``cost`` requests' worth for one message; RateLimitedError when the key is over its rate (the
        message is refused).  Whole requests are taken from the key's bucket in advance and drawn down locally,
        so messages costing a fraction of a request (20 ms frames) are no store round trip each; once refused,
        the connection's messages are refused locally until the bucket has refilled enough."""
        if not self.active or cost <= 0:
            return
        if cost <= self._credit:
            self._credit -= cost
            return
        now = time.monotonic()
        if now < self._blocked_until:
            raise self._refused(self._blocked_until - now)
        key = await self._key()
        s = self.sec.settings
        rate = key.rate_per_s if key is not None and key.rate_per_s is not None else s.rate_limit_per_s
        burst = key.burst if key is not None and key.burst is not None else s.rate_limit_burst
        amount = min(max(1.0, cost - self._credit), float(burst))
        decision = await self.sec.limiter.take(self.who.key_id, rate, burst, amount)
        if not decision.allowed:
            self._blocked_until = time.monotonic() + decision.retry_after_s
            self._rate = (rate, burst)
            raise self._refused(decision.retry_after_s)
        self._credit = max(0.0, self._credit + amount - cost)

    def _refused(self, retry_after_s: float) -> RateLimitedError:
        rate, burst = self._rate
        retry = max(1, math.ceil(retry_after_s))
        return RateLimitedError(f"API key {self.who.key_id} is over its rate limit of {rate:g} requests/s "
                                f"(burst {burst}); this message was refused; retry after {retry} s",
                                retry_after_s=round(retry_after_s, 3))


def audio_cost(seconds: float, window_s: float) -> float:
    """What ``seconds`` of audio in one message cost in requests: its duration in analysis windows."""
    return seconds / window_s if window_s > 0 else 1.0
