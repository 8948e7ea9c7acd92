"""Maps pipeline exceptions to HTTP: every error is a JSON body naming the problem.

Shape: ``{"error": {"code": "...", "message": "...", "detail": {...}}}``.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pipelines import errors as E

logger = logging.getLogger("nuqi.http")

STATUS = [  # most specific first
    (E.ChunkTooLargeError, 413),
    (E.NotFoundError, 404),
    (E.ConflictError, 409),
    (E.InputError, 422),
    (E.ModelNotAvailableError, 503),
    (E.StoreUnavailableError, 503),
]


class AuthError(E.NuqiError):
    code = "unauthorized"


class ForbiddenError(E.NuqiError):
    code = "forbidden"


class RateLimitedError(E.NuqiError):
    code = "rate_limited"


class NotReadyError(E.NuqiError):
    code = "not_ready"


class InvalidJsonError(E.InputError):
    """A request body or WebSocket frame that is not JSON the service can read (malformed, not UTF-8, a lone
    surrogate, nested too deep): 400."""

    code = "invalid_json"


STATUS[:0] = [(AuthError, 401), (ForbiddenError, 403), (RateLimitedError, 429), (NotReadyError, 503),
              (InvalidJsonError, 400)]
AUTHENTICATE = 'ApiKey header="X-API-Key"'  # the WWW-Authenticate challenge of every 401


def status_for(exc: E.NuqiError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str, **detail: object) -> dict:
    return {"error": {"code": code, "message": message, "detail": detail}}


# --------------------------------------------------------------------------- the error shape in OpenAPI
class ErrorInfo(BaseModel):
    code: str = Field(description="machine-readable name of the problem, e.g. invalid_json, not_found")
    message: str = Field(description="what was wrong with which input, for people")
    detail: dict[str, Any] = Field(default_factory=dict, description="the field concerned and other facts")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of the API."""

    error: ErrorInfo


ERROR_DESCRIPTIONS = {
    408: "the request body arrived too slowly (`request_timeout`)",
    400: "the body is not JSON the service can read (`invalid_json`: malformed, not UTF-8, a lone surrogate, "
         "nested too deep) or a malformed request",
    401: "no, an invalid or a revoked API key",
    403: "the key's role may not use this operation, or a path outside the allowed folders",
    404: "no such call, alert, key, job or file (another tenant's is a 404 too)",
    409: "conflicts with the current state (e.g. a chunk after the call ended, deleting a running job)",
    413: "the body (or an audio chunk) is larger than the configured limit (`chunk_too_large`)",
    422: "a parameter or body field is invalid (the message names it)",
    429: "the key is over its rate limit (see `Retry-After`)",
    503: "the store or a model is unavailable, or the service is starting (see `Retry-After`)",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a router or an operation: the listed error statuses, each with
    :class:`ErrorBody`."""
    return {c: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[c]} for c in codes}


# what every operation can answer: 401/403/429 (roles), 422 (parameters), 503 (store, models); 413 where a
# body is read, 404 with a path id, 409 where state can conflict
COMMON = (401, 403, 422, 429, 503)
WITH_BODY = (400, 413)


def install(app: FastAPI) -> None:
    @app.exception_handler(E.NuqiError)
    async def _nuqi(_: Request, exc: E.NuqiError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            logger.warning("%s: %s", exc.code, exc.message)
        retry = exc.detail.get("retry_after_s", 1)
        headers = {"Retry-After": str(max(1, math.ceil(float(retry))))} if status in (429, 503) else None
        if status == 401:
            headers = {"WWW-Authenticate": AUTHENTICATE}
        return JSONResponse(error_body(exc.code, exc.message, **exc.detail), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
            problems.append(f"{loc or 'request'}: {err.get('msg')}")
        return JSONResponse(
            error_body("invalid_request", "; ".join(problems) or "invalid request",
                       errors=[{"loc": list(map(str, e.get("loc", ()))), "msg": e.get("msg")} for e in exc.errors()]),
            status_code=422,
        )

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        # a client that went away mid-body (a cancelled upload): a warning, not an ERROR traceback
        logger.warning("client disconnected before its request body was read: %s %s", request.method,
                       request.url.path)
        return Response(status_code=400)  # nobody reads it

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
                413: "chunk_too_large"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path)) or headers.get("Allow", "")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers or None)


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route of ``app`` serves at ``path`` (the ``Allow`` header of a 405)."""
    contexts = getattr(routing, "iter_route_contexts", None)  # FastAPI ≥ 0.16x keeps included routers whole
    methods: set[str] = set()
    for route in contexts(app.routes) if contexts is not None else app.routes:
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods |= set(route.methods)
    return sorted(methods)
