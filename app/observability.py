"""Prometheus metrics (``GET /metrics``) and structured JSON logs.

Metrics (all ``nuqi_*``):

* ``chunk_latency_seconds``       histogram: audio chunk request → response (decode, ordering wait, analysis, store)
* ``model_inference_seconds``     histogram by ``kind`` (audio chunk analysis, transcript snippet analysis)
* ``active_calls``                gauge: calls with status ``active`` in the store (all workers; read at scrape)
* ``stage_transitions_total``     counter by ``from_level``/``to_level`` (customer escalation stage)
* ``alerts_raised_total``         counter by ``level``/``kind``; ``alerts_acked_total`` (first acks only)
* ``store_errors_total``          counter by ``backend``: requests that met an unavailable store (→ 503)
* ``http_responses_total``        counter by status class (2xx/4xx/5xx); every class is exported from the start
  (0 until seen), and a 500 from an unhandled error counts as 5xx

With several uvicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before start
(``make serve`` does): every worker writes its samples there and any worker's ``/metrics`` sums them.

Logs: the ``nuqi.*`` loggers write one JSON object per line (``ts``, ``level``, ``logger``, ``msg``,
``call_id`` when known, ``exc``); messages and tracebacks pass through :func:`pipelines.pii.redact`,
so no phone/ID/card number or e-mail reaches a log.  Call ids are chosen by the client and may be a phone
number: logs (these and uvicorn's access lines) show them as keyed digests (``#3f9a…``, setting
``pii_log_key``), the same digest for the same id, so a call's lines can still be followed.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import sqlite3
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from app.deps import RequireRoles
from app.errors import ForbiddenError, error_body, responses
from pipelines.errors import StoreUnavailableError
from pipelines.pii import id_digest, redact

logger = logging.getLogger("nuqi.observability")

CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("nuqi_call_id", default=None)
MULTIPROC = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
REGISTRY = CollectorRegistry(auto_describe=True)

CHUNK_LATENCY = Histogram(
    "nuqi_chunk_latency_seconds", "Audio chunk request to response (decode, wait for predecessor, analysis, store)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 5.0), registry=REGISTRY)
INFERENCE = Histogram(
    "nuqi_model_inference_seconds", "Model/analysis time per unit of work", ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=REGISTRY)
STAGE_TRANSITIONS = Counter("nuqi_stage_transitions_total", "Escalation stage changes of the customer",
                            ["from_level", "to_level"], registry=REGISTRY)
ALERTS_RAISED = Counter("nuqi_alerts_raised_total", "Alerts stored (after dedup)", ["level", "kind"],
                        registry=REGISTRY)
ALERTS_ACKED = Counter("nuqi_alerts_acked_total", "Alerts acknowledged (first ack only)", registry=REGISTRY)
STORE_ERRORS = Counter("nuqi_store_errors_total", "Requests that failed because the store was unavailable",
                       ["backend"], registry=REGISTRY)
RESPONSES = Counter("nuqi_http_responses_total", "HTTP responses by status class", ["code"], registry=REGISTRY)
for _cls in ("2xx", "3xx", "4xx", "5xx"):  # a series for every class, so `rate(...{code="5xx"})` exists at 0
    RESPONSES.labels(_cls)
if not MULTIPROC:
    ProcessCollector(registry=REGISTRY)


# --------------------------------------------------------------------------- hooks used by the services
def observe_chunk(seconds: float) -> None:
    CHUNK_LATENCY.observe(seconds)


@contextmanager
def inference(kind: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        INFERENCE.labels(kind).observe(time.perf_counter() - t0)


def stage_level(state: dict[str, Any] | None) -> int:
    """The customer's stage level inside a stored call state (0 when not started)."""
    try:
        return int(state["fusion"]["analyzer"]["tracker"]["stage"]["level"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return 0


def stage_change(before: int, state: dict[str, Any]) -> None:
    after = stage_level(state)
    if after != before:
        STAGE_TRANSITIONS.labels(str(before), str(after)).inc()


def alert_raised(alert: dict[str, Any] | None) -> None:
    if alert is not None:
        ALERTS_RAISED.labels(str(alert.get("level")), str(alert.get("kind"))).inc()


def alert_acked(was_acked: bool, now_acked: bool) -> None:
    if now_acked and not was_acked:
        ALERTS_ACKED.inc()


# --------------------------------------------------------------------------- /metrics
def _count_active(store: Any) -> int:
    count = getattr(store, "count_calls", None)
    if count is not None:
        return int(count(status="active"))
    path = getattr(store, "path", None)
    if path is not None:  # SQLite: a read-only connection of our own
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                return int(db.execute("SELECT COUNT(*) FROM calls WHERE status='active'").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store error: {exc}") from exc
    return len(store.list_calls(status="active", limit=1_000_000))


def _active_calls_text(n: int | None) -> bytes:
    reg = CollectorRegistry()

    class _Active:
        def collect(self):  # type: ignore[no-untyped-def]
            g = GaugeMetricFamily("nuqi_active_calls", "Calls with status active in the store (all workers)")
            if n is not None:
                g.add_metric([], n)
            yield g

    reg.register(_Active())
    return generate_latest(reg)


router = APIRouter(tags=["health"])


async def metrics_access(request: Request) -> None:
    """``NUQI_METRICS_ROLES`` set: a key with one of those roles, of the operator's tenant (the counters span every
    tenant); unset: public.  Not a ``require_roles`` route: whether it needs a key is a setting."""
    sec = request.app.state.runtime.settings.security
    if not sec.metrics_roles or not sec.auth_enabled:  # (with auth off the whole API is open)
        return
    who = await RequireRoles(tuple(sec.metrics_roles))(request)
    if who.tenant != sec.bootstrap_tenant:
        raise ForbiddenError(f"/metrics spans every tenant: only keys of tenant {sec.bootstrap_tenant!r} "
                             "(NUQI_BOOTSTRAP_TENANT) may read it", role=who.role)


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response,
            description="Public unless `NUQI_METRICS_ROLES` names the roles that may read it (then a key with one "
                        "of them, of the operator's tenant `NUQI_BOOTSTRAP_TENANT`).",
            responses=responses(401, 403, 429, 503))
async def metrics(request: Request) -> Response:
    await metrics_access(request)
    if MULTIPROC:
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
    else:
        reg = REGISTRY
    try:
        active: int | None = await asyncio.to_thread(_count_active, request.app.state.runtime.store)
    except StoreUnavailableError:
        active = None
    body = generate_latest(reg) + _active_calls_text(active)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


# --------------------------------------------------------------------------- logs
_LOG_KEY = {"key": ""}  # settings.security.pii_log_key, set by install()
_PATH_IDS = re.compile(r"(/v1/calls/)([^/?#\s\"]+)|([?&]call_id=)([^&#\s\"]+)")


def log_id(value: str) -> str:
    """How a client-chosen id (call id) appears in logs: a keyed digest."""
    return "#" + id_digest(str(value), _LOG_KEY["key"])


def log_path(text: str) -> str:
    """``text`` (a request path, a log argument) with call ids as digests and personal data redacted."""
    return redact(_PATH_IDS.sub(lambda m: m.group(1) + log_id(m.group(2)) if m.group(1)
                                else m.group(3) + log_id(m.group(4)), text))


class AccessLogIds(logging.Filter):
    """uvicorn's access and WebSocket lines: call ids in the path as digests (a phone number as call id)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(log_path(a) if isinstance(a, str) and "/" in a else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = log_path(record.msg)
        return True


class JsonFormatter(logging.Formatter):
    EXTRA = ("call_id", "seq", "tenant", "key_id", "status", "duration_ms", "path", "method")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
            "msg": log_path(record.getMessage()),
        }
        call_id = getattr(record, "call_id", None) or CALL_ID.get()
        if call_id:
            out["call_id"] = log_id(call_id)
        for k in self.EXTRA[1:]:
            v = getattr(record, k, None)
            if v is not None:
                out[k] = log_path(v) if isinstance(v, str) else v
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class _JsonHandler(logging.StreamHandler):
    pass


def _not_nuqi(record: logging.LogRecord) -> bool:
    return not record.name.startswith("nuqi")


def setup_logging(level: str = "info") -> None:
    """JSON lines on stderr for the ``nuqi`` loggers; plain root handlers stop repeating them."""
    root_nuqi = logging.getLogger("nuqi")
    if not any(isinstance(h, _JsonHandler) for h in root_nuqi.handlers):
        handler = _JsonHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root_nuqi.addHandler(handler)
    root_nuqi.setLevel(getattr(logging, level.upper(), logging.INFO))
    for h in logging.getLogger().handlers:
        if type(h) is logging.StreamHandler and _not_nuqi not in h.filters:
            h.addFilter(_not_nuqi)


# --------------------------------------------------------------------------- middleware + install
_CALL_PATH = re.compile(r"^/v1/calls/([^/]+)")


class ObservabilityMiddleware:
    """Sets the call-id context for logs and counts responses by status class."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        m = _CALL_PATH.match(scope.get("path", ""))
        token = CALL_ID.set(m.group(1) if m else None)

        started = False

        async def counting_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                RESPONSES.labels(f"{int(message['status']) // 100}xx").inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send if scope["type"] == "http" else send)
        except Exception:
            # an unhandled error: Starlette's outermost ServerErrorMiddleware (or an app-wide handler for
            # Exception, which runs there too) answers 500 outside this middleware, so count it here
            if scope["type"] == "http" and not started:
                RESPONSES.labels("5xx").inc()
            raise
        finally:
            CALL_ID.reset(token)


def install(app: FastAPI, settings: Any) -> None:
    """Add /metrics, the middleware, the store-error counter, and JSON logs if configured."""
    app.include_router(router)
    app.add_middleware(ObservabilityMiddleware)

    @app.exception_handler(StoreUnavailableError)
    async def _store_down(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        rt = getattr(request.app.state, "runtime", None)
        STORE_ERRORS.labels(getattr(getattr(rt, "store", None), "name", "unknown")).inc()
        logger.warning("store unavailable: %s", exc.message)
        return JSONResponse(error_body(exc.code, exc.message, **exc.detail), status_code=503,
                            headers={"Retry-After": "1"})

    _LOG_KEY["key"] = settings.security.pii_log_key
    for name in ("uvicorn.access", "uvicorn.error"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, AccessLogIds) for f in lg.filters):
            lg.addFilter(AccessLogIds())
    if settings.log_json:
        setup_logging(settings.log_level)
