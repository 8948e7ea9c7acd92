"""JSON checked at the edge, before any route or parser sees it: every HTTP JSON body and WebSocket text frame.

What a route's parser (the standard library's ``json``, pydantic) would accept but the service cannot use is
refused here with a named 4xx, instead of failing deep inside (a ``RecursionError`` from ``json.loads``, a
tokenizer ``TypeError`` on a lone surrogate, the store's encoder refusing an integer beyond 64 bits):

* not JSON, not UTF-8, or a lone UTF-16 surrogate (``"\\ud800"``) in a key or a value → 400 ``invalid_json``;
* nesting deeper than :data:`MAX_DEPTH` → 400 ``json_too_deep``;
* an integer outside the signed 64-bit range → 422 ``integer_out_of_range``.

HTTP bodies are checked when their ``Content-Type`` is JSON (``application/json``, ``…+json``), or when it is
absent and the body starts like JSON (FastAPI parses such bodies as JSON; audio chunks without a type are
left alone).  WebSocket text frames that start like JSON get the same checks; a refused frame is answered
with an error frame (``{"error": …, "status": 400}``) and the connection stays open.
"""
from __future__ import annotations

import json
import re
from typing import Any

import orjson

from app.errors import InvalidJsonError, error_body, status_for
from pipelines.errors import InputError, NuqiError

MAX_DEPTH = 64  # the store's encoder stops at 254 levels; no request of this API nests more than a few
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

_LONG_DIGITS = re.compile(rb"\d{19,}")  # only such literals can leave the 64-bit range
_JSON_START = re.compile(rb"\s*[\[{]")


class IntegerRangeError(InputError):
    code = "integer_out_of_range"


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, ``[]`` is 1), counted without recursion; stops counting
    once past ``limit``."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _check_int(literal: str) -> int:
    value = int(literal)
    if not INT_MIN <= value <= INT_MAX:
        raise IntegerRangeError(f"integer {literal[:24]}{'…' if len(literal) > 24 else ''} is outside the signed "
                                "64-bit range", field="body")
    return value


def check_json(raw: bytes | str, *, field: str = "body") -> None:
    """Raise :class:`~app.errors.InvalidJsonError` or :class:`IntegerRangeError` unless ``raw`` is JSON the
    service can use; an empty (or blank) text passes (routes treat it as no body)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if not data.strip():
        return
    try:  # not JSON, not UTF-8, lone surrogates (orjson refuses them; the standard library does not), > 1024 deep
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        reason = "too_deep" if "depth" in str(exc) else "malformed"
        raise InvalidJsonError(f"{field} is not valid JSON: {exc}", field=field, reason=reason) from None
    if nesting_depth(value) > MAX_DEPTH:
        raise InvalidJsonError(f"{field}: JSON nested more than {MAX_DEPTH} levels deep", field=field,
                               reason="too_deep", max_depth=MAX_DEPTH)
    if _LONG_DIGITS.search(data):  # orjson reads such integers as floats: look at them with the stdlib
        try:
            json.loads(data, parse_int=_check_int)
        except IntegerRangeError as exc:
            exc.detail["field"] = field
            raise


def looks_like_json(data: bytes) -> bool:
    return _JSON_START.match(data[:64]) is not None


def _is_json_type(value: bytes | None) -> bool:
    if value is None:
        return False
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class JsonGuardMiddleware:
    """Pure ASGI: buffers a JSON request body (the body limit outside still applies), checks it, replays it;
    checks WebSocket text frames one by one."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        ctype = next((v for k, v in scope.get("headers") or () if k == b"content-type"), None)
        if ctype is not None and not _is_json_type(ctype):
            await self.app(scope, receive, send)
            return
        if ctype is None and scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        extra: list[dict] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                extra.append(message)  # a disconnect: the route sees it after the body
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
            if ctype is None and len(chunks) == 1 and chunks[0] and not looks_like_json(chunks[0]):
                await self.app(scope, _replay([message], receive), send)  # not JSON (raw audio): stream it on
                return
        body = b"".join(chunks)
        if ctype is not None or looks_like_json(body):
            try:
                check_json(body)
            except NuqiError as exc:
                await _answer(send, status_for(exc), error_body(exc.code, exc.message, **exc.detail))
                return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}, *extra], receive),
                       send)

    async def _websocket(self, scope: dict, receive: Any, send: Any) -> None:
        accepted = False

        async def watched_send(message: dict) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted = True
            await send(message)

        async def checked_receive() -> dict:
            while True:
                message = await receive()
                text = message.get("text") if message["type"] == "websocket.receive" else None
                if not text or not accepted:
                    return message
                data = text.encode("utf-8", "surrogatepass")
                if not looks_like_json(data):
                    return message
                try:
                    check_json(data, field="frame")
                except NuqiError as exc:  # answer it and read the next frame; the connection stays open
                    body = {**error_body(exc.code, exc.message, **exc.detail), "status": status_for(exc)}
                    await send({"type": "websocket.send", "text": json.dumps(body, ensure_ascii=False)})
                    continue
                return message

        await self.app(scope, checked_receive, watched_send)


def _replay(messages: list[dict], receive: Any) -> Any:
    """A ``receive`` that returns ``messages`` first, then reads on."""
    async def replayed() -> dict:
        if messages:
            return messages.pop(0)
        return await receive()

    return replayed


async def _answer(send: Any, status: int, body: dict) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})
