"""Request body cap for every endpoint (``NUQI_MAX_BODY_BYTES``), before any route reads the body.

A declared ``Content-Length`` over the cap is answered 413 at once, without reading the body; a
body streamed without a length is counted and the request fails with 413 (``chunk_too_large``) as
soon as it passes the cap, so no route ever buffers more than the cap.
"""
from __future__ import annotations

import json
from typing import Any

from app.errors import error_body
from pipelines.errors import ChunkTooLargeError


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
            if size < 0 or size > self.max_bytes:
                msg = (f"request body of {declared.decode('latin-1')[:20]} bytes exceeds the {self.max_bytes}-byte "
                       "limit" if size >= 0 else "invalid Content-Length header")
                status = 413 if size >= 0 else 400
                body = json.dumps(error_body("chunk_too_large" if status == 413 else "invalid_request", msg,
                                             field="body")).encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send)
            return
        seen = 0
        limit = self.max_bytes

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ChunkTooLargeError(f"request body exceeds the {limit}-byte limit", field="body")
            return message

        await self.app(scope, counted, send)
