"""Maps pipeline exceptions to HTTP: every error is a JSON body naming the problem.

Shape: ``{"error": {"code": "...", "message": "...", "detail": {...}}}``.
"""
from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


STATUS[:0] = [(AuthError, 401), (ForbiddenError, 403), (RateLimitedError, 429), (NotReadyError, 503)]
AUTHENTICATE = 'ApiKey header="X-API-Key"'  # the WWW-Authenticate challenge of every 401


def status_for(exc: E.NuqiError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str, **detail: object) -> dict:
    return {"error": {"code": code, "message": message, "detail": detail}}


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

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)
