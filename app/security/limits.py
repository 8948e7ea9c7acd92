"""Request body cap for every endpoint (``NUQI_MAX_BODY_BYTES``), before any route reads the body.

A declared ``Content-Length`` over the cap is answered 413 at once, without reading the body; a
body streamed without a length (chunked) is counted and the request fails with 413 (``chunk_too_large``)
as soon as it passes the cap, so no route ever buffers more than the cap.  The 413 is the answer even when
the route's body parser would have reported the aborted read as a malformed body (400).

Slow bodies are cut too (408 ``request_timeout``, the connection closed): a body that stalls for
``idle_timeout_s`` between two reads, or that, after ``grace_s``, has arrived at less than ``min_rate`` bytes/s
on average (a trickle that would hold the connection for hours).  Only the body is timed; a route waiting for
the client to disconnect (server-sent events) is not.

Some routes have a cap of their own (``route_limits``): ``POST /v1/batch`` streams its multipart uploads to
disk up to ``batch_max_upload_bytes``, far beyond the cap of an API call.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from app.errors import error_body
from pipelines.errors import ChunkTooLargeError, InputError

BODY_IDLE_TIMEOUT_S = 15.0
BODY_GRACE_S = 20.0
BODY_MIN_RATE = 32 * 1024  # bytes/s on average once the grace period is over


class BodyTimeoutError(InputError):
    code = "request_timeout"


def _too_large(limit: int, declared: str | None = None) -> ChunkTooLargeError:
    size = f"of {declared[:20]} bytes " if declared is not None else ""
    return ChunkTooLargeError(f"request body {size}exceeds the {limit}-byte limit", field="body", limit=limit)


async def _answer(send: Any, status: int, body: dict) -> None:
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(raw)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": raw})


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int, route_limits: dict[tuple[str, str], int] | None = None,
                 idle_timeout_s: float = BODY_IDLE_TIMEOUT_S, grace_s: float = BODY_GRACE_S,
                 min_rate: float = BODY_MIN_RATE) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.route_limits = {(m.upper(), p): int(n) for (m, p), n in (route_limits or {}).items()}
        self.idle_timeout_s = float(idle_timeout_s)
        self.grace_s = float(grace_s)
        self.min_rate = float(min_rate)

    def limit_for(self, scope: dict) -> int:
        return self.route_limits.get((scope.get("method", ""), scope.get("path", "").rstrip("/") or "/"),
                                     self.max_bytes)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = None
        for k, v in scope.get("headers") or ():
            if k == b"content-length":
                declared = v
                break
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                await _answer(send, 400, error_body("invalid_request", "invalid Content-Length header",
                                                    field="content-length"))
                return
            if size > limit:
                exc = _too_large(limit, declared.decode("latin-1"))
                await _answer(send, 413, error_body(exc.code, exc.message, **exc.detail))
                return
        await self._counted(scope, receive, send, limit)

    async def _next_part(self, receive: Any, t0: float, seen: int) -> dict:
        """The next body message, within the idle timeout and the minimum average rate."""
        now = time.monotonic()
        wait = self.idle_timeout_s
        if self.min_rate > 0:  # the time left before the average rate falls below min_rate for good
            wait = min(wait, max(t0 + max(self.grace_s, (seen + 1) / self.min_rate) - now, 0.0))
        try:
            return await asyncio.wait_for(receive(), timeout=max(wait, 0.001))
        except asyncio.TimeoutError:
            took = time.monotonic() - t0
            raise BodyTimeoutError(f"request body too slow: {seen} bytes in {took:.1f} s (a body may not stall "
                                   f"for {self.idle_timeout_s:g} s, nor arrive at under {self.min_rate:g} bytes/s "
                                   f"after {self.grace_s:g} s)", field="body") from None

    async def _counted(self, scope: dict, receive: Any, send: Any, limit: int) -> None:
        seen = 0
        over: ChunkTooLargeError | BodyTimeoutError | None = None
        started = False
        body_done = False
        t0 = time.monotonic()

        async def counted() -> dict:
            nonlocal seen, over, body_done
            if body_done:  # the body is in: later reads wait for a disconnect, untimed
                return await receive()
            try:
                message = await self._next_part(receive, t0, seen)
            except BodyTimeoutError as exc:
                over = exc
                raise
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    over = _too_large(limit)
                    raise over
            else:
                body_done = True
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if over is not None and message["type"].startswith("http.response"):
                if message["type"] == "http.response.start" and not started:
                    started = True  # whatever the route made of the aborted read: the answer is 413 (408)
                    await _answer(send, _status(over), error_body(over.code, over.message, **over.detail))
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except (ChunkTooLargeError, BodyTimeoutError):
            if over is None:
                raise
            if not started:
                await _answer(send, _status(over), error_body(over.code, over.message, **over.detail))


def _status(exc: Exception) -> int:
    return 408 if isinstance(exc, BodyTimeoutError) else 413
