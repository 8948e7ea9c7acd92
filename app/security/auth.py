"""Authentication, role-based access and rate limiting as one ASGI middleware.

* The key comes from the ``X-API-Key`` header or the ``api_key`` query parameter (the widget's
  EventSource cannot set headers).  The query parameter is removed from the request before the
  routes and the access log see it.
* No/invalid/revoked key → 401; a key whose role may not use the endpoint → 403; over the key's
  token bucket → 429 with ``Retry-After``.  Errors use the service's JSON error shape.
* ``request.state.principal`` (``app.deps.Principal``) carries tenant, role and agent id; the routes
  and services scope every read by tenant (another tenant's call or alert is a 404, never a 403).
* Agents only reach their own calls: ``GET /v1/calls/{id}`` of a call bound to another agent is a 404.

Access matrix (first match wins; anything not listed needs ``admin``):

=====================================================  ==========================================
``POST /v1/calls/{id}``, ``.../audio``, ``.../transcript``, ``.../end``, WS ``.../stream``   ingest, admin
``GET /v1/calls``, ``GET /v1/calls/{id}[/...]``        agent (own calls), supervisor, qa, admin
``GET /v1/alerts``, ``/v1/alerts/stream``, ``POST /v1/alerts/{id}/ack``  agent (own), supervisor, admin
``GET /v1/board``                                      supervisor, admin
``/v1/batch*``                                         qa, admin
``POST /v1/text/*`` (stateless scoring)                ingest, supervisor, qa, admin
``/v1/admin/*``                                        admin
``/healthz``, ``/readyz``, ``/metrics``, docs, pages   public (no key)
=====================================================  ==========================================

With ``NUQI_AUTH_ENABLED=false`` (the default of ``make serve``) every request is the admin of tenant
``default`` and a loud warning is logged at start-up.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from app.deps import Principal
from app.errors import error_body
from app.security.keys import ApiKey, KeyManager, open_key_store
from app.security.ratelimit import Limiter, LocalLimiter, open_limiter
from pipelines.errors import StoreUnavailableError
from pipelines.settings import Settings

logger = logging.getLogger("nuqi.security")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

INGEST, AGENT, SUPERVISOR, QA, ADMIN = "ingest", "agent", "supervisor", "qa", "admin"

FAIL_RATE, FAIL_BURST = 5.0, 30  # invalid-key attempts per second / burst, per client address
PUBLIC = re.compile(r"^/(healthz|readyz|metrics|docs|docs/oauth2-redirect|redoc|openapi\.json|favicon\.ico"
                    r"|widget|board|static/[^/]+)?$")

# (methods or None for any, path regex, roles, agent_owns_call)
RULES: list[tuple[frozenset[str] | None, re.Pattern[str], frozenset[str], bool]] = [
    (frozenset({"POST"}), re.compile(r"^/v1/calls/[^/]+(/(audio|transcript|end))?$"), frozenset({INGEST, ADMIN}),
     False),
    (frozenset({"WS"}), re.compile(r"^/v1/calls/[^/]+/stream$"), frozenset({INGEST, ADMIN}), False),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/v1/calls/?$"), frozenset({SUPERVISOR, QA, ADMIN}), False),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/v1/calls/(?P<call_id>[^/]+)(/.*)?$"),
     frozenset({AGENT, SUPERVISOR, QA, ADMIN}), True),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/v1/alerts(/stream)?$"), frozenset({AGENT, SUPERVISOR, ADMIN}), False),
    (frozenset({"POST"}), re.compile(r"^/v1/alerts/[^/]+/ack$"), frozenset({AGENT, SUPERVISOR, ADMIN}), False),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/v1/board$"), frozenset({SUPERVISOR, ADMIN}), False),
    (None, re.compile(r"^/v1/batch(/.*|es(/.*)?)?$"), frozenset({QA, ADMIN}), False),
    (frozenset({"POST"}), re.compile(r"^/v1/text/[^/]+$"), frozenset({INGEST, SUPERVISOR, QA, ADMIN}), False),
    (None, re.compile(r"^/v1/admin(/.*)?$"), frozenset({ADMIN}), False),
]


def access(method: str, path: str) -> tuple[frozenset[str], str | None]:
    """Roles allowed on ``method path`` and, for agent-owned call paths, the call id."""
    for methods, pattern, roles, owned in RULES:
        if methods is not None and method not in methods:
            continue
        m = pattern.match(path)
        if m:
            return roles, (m.group("call_id") if owned else None)
    return frozenset({ADMIN}), None


def is_public(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and bool(PUBLIC.match(path))


@dataclass
class SecurityRuntime:
    """Per-process security state: key manager (store-backed) and rate limiter."""

    settings: Settings
    keys: KeyManager
    limiter: Limiter
    store: Any
    bootstrap_pending: bool = False
    failures: LocalLimiter = field(default_factory=LocalLimiter)  # wrong keys per client address

    @classmethod
    def start(cls, settings: Settings, store: Any) -> "SecurityRuntime":
        keys = KeyManager(open_key_store(store), cache_s=settings.key_cache_s)
        limiter = open_limiter(store) if settings.auth_enabled else LocalLimiter()
        sec = cls(settings, keys, limiter, store, bootstrap_pending=bool(settings.bootstrap_admin_key))
        try:
            sec.ensure_bootstrap()
            if settings.auth_enabled and not settings.bootstrap_admin_key and not keys.list():
                logger.warning("auth is enabled but no API key exists: set NUQI_BOOTSTRAP_ADMIN_KEY to create one")
        except StoreUnavailableError as exc:  # the store may come up later; retried on the next request
            logger.error("cannot install the bootstrap admin key yet: %s", exc.message)
        if not settings.auth_enabled:
            warn_open_api()
        return sec

    def ensure_bootstrap(self) -> None:
        if self.bootstrap_pending and self.settings.bootstrap_admin_key:
            self.keys.ensure_bootstrap(self.settings.bootstrap_admin_key, self.settings.bootstrap_tenant)
            self.bootstrap_pending = False

    async def close(self) -> None:
        await self.limiter.close()


def warn_open_api() -> None:
    banner = ("\n" + "!" * 78 + "\n!!  NUQI_AUTH_ENABLED is false: the API is OPEN. Every request acts as the admin of\n"
              "!!  tenant 'default'. Set NUQI_AUTH_ENABLED=true and NUQI_BOOTSTRAP_ADMIN_KEY before exposing it.\n"
              + "!" * 78 + "\n")
    logger.warning("API is open: authentication is disabled (NUQI_AUTH_ENABLED=false)")
    sys.stderr.write(banner)
    sys.stderr.flush()


def _strip_api_key(scope: Scope) -> str | None:
    """Pop ``api_key`` from the query string (so routes, logs and the access log never see it)."""
    qs = scope.get("query_string") or b""
    if b"api_key" not in qs:
        return None
    pairs = parse_qsl(qs.decode("latin-1"), keep_blank_values=True)
    key = next((v for k, v in pairs if k == "api_key"), None)
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "api_key"]).encode("latin-1")
    return key


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return v.decode("latin-1")
    return None


class AuthMiddleware:
    """Pure ASGI (works for HTTP and WebSocket; streams are not buffered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = "WS" if scope["type"] == "websocket" else scope["method"]
        path = scope["path"]
        raw = _strip_api_key(scope)
        if is_public(method, path):
            await self.app(scope, receive, send)
            return
        sec: SecurityRuntime | None = getattr(scope["app"].state, "security", None)
        if sec is None:  # fail closed: never serve data before the key store is open
            await _deny(scope, receive, send, 503, "not_ready", "the service is starting; security not initialised")
            return
        if not sec.settings.auth_enabled:
            scope.setdefault("state", {})["principal"] = Principal()
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"x-api-key") or raw
        if not raw:
            await _deny(scope, receive, send, 401, "unauthorized",
                        "an API key is required: send the X-API-Key header (or ?api_key= for EventSource)")
            return
        client = (scope.get("client") or ("?", 0))[0]
        if not sec.failures.peek(f"fail:{client}", FAIL_RATE, FAIL_BURST):
            await _deny(scope, receive, send, 429, "rate_limited",
                        "too many requests with invalid API keys from this address; slow down",
                        headers=[(b"retry-after", b"1")])
            return
        try:
            if sec.bootstrap_pending:
                await asyncio.to_thread(sec.ensure_bootstrap)
            hit, key = sec.keys.cached(raw)  # the common case: no thread hop
            if not hit:
                key = await asyncio.to_thread(sec.keys.verify, raw)
        except StoreUnavailableError as exc:
            await _deny(scope, receive, send, 503, exc.code, exc.message)
            return
        if key is None:
            sec.failures.take_sync(f"fail:{client}", FAIL_RATE, FAIL_BURST)
            await _deny(scope, receive, send, 401, "unauthorized", "invalid or revoked API key")
            return
        roles, owned_call = access(method, path)
        if key.role not in roles:
            await _deny(scope, receive, send, 403, "forbidden",
                        f"role {key.role!r} may not {method} {path}; allowed: {', '.join(sorted(roles))}",
                        role=key.role)
            return
        rate = key.rate_per_s if key.rate_per_s is not None else sec.settings.rate_limit_per_s
        burst = key.burst if key.burst is not None else sec.settings.rate_limit_burst
        decision = await sec.limiter.take(key.key_id, rate, burst)
        if not decision.allowed:
            retry = max(1, math.ceil(decision.retry_after_s))
            await _deny(scope, receive, send, 429, "rate_limited",
                        f"API key {key.key_id} is over its rate limit of {rate:g} requests/s (burst {burst}); "
                        f"retry after {retry} s", headers=[(b"retry-after", str(retry).encode())],
                        retry_after_s=round(decision.retry_after_s, 3))
            return
        principal = Principal(tenant=key.tenant, role=key.role, agent_id=key.agent_id, key_id=key.key_id)
        if owned_call is not None and key.role == AGENT:
            try:
                owns = await asyncio.to_thread(_agent_owns, sec.store, owned_call, key)
            except StoreUnavailableError as exc:
                await _deny(scope, receive, send, 503, exc.code, exc.message)
                return
            if not owns:
                await _deny(scope, receive, send, 404, "not_found", f"call {owned_call!r} not found",
                            call_id=owned_call)
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _agent_owns(store: Any, call_id: str, key: ApiKey) -> bool:
    rec = store.get_call(call_id)
    return rec is not None and rec.tenant == key.tenant and rec.agent_id == key.agent_id


async def _deny(scope: Scope, receive: Any, send: Any, status: int, code: str, message: str,
                headers: list[tuple[bytes, bytes]] | None = None, **detail: Any) -> None:
    if scope["type"] == "websocket":
        # closing before accept makes the server answer the handshake with 403
        await send({"type": "websocket.close", "code": 1013 if status in (429, 503) else 1008,
                    "reason": f"{status} {code}"[:120]})
        return
    body = json.dumps(error_body(code, message, **detail), ensure_ascii=False).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    if status == 401:
        hdrs.append((b"www-authenticate", b'ApiKey header="X-API-Key"'))
    if status == 503:
        hdrs.append((b"retry-after", b"1"))
        if code == "store_unavailable":
            from app.observability import STORE_ERRORS

            store = getattr(getattr(scope["app"].state, "runtime", None), "store", None)
            STORE_ERRORS.labels(getattr(store, "name", "unknown")).inc()
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _openapi_security(app: Any) -> None:
    """Declare the API-key schemes in the OpenAPI document (Swagger 'Authorize', schemathesis auth)."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        comps = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        comps["ApiKeyHeader"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        comps["ApiKeyQuery"] = {"type": "apiKey", "in": "query", "name": "api_key"}
        for path, ops in schema.get("paths", {}).items():
            for method, op in ops.items():
                if isinstance(op, dict) and not is_public(method.upper(), path):
                    op.setdefault("security", [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}])
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def install(app: Any, settings: Settings) -> None:
    """Add the body-size limit and auth middlewares and the OpenAPI security schemes."""
    from app.security.limits import BodyLimitMiddleware

    app.add_middleware(AuthMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    _openapi_security(app)
