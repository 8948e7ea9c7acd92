"""Authentication and rate limiting as one ASGI middleware; authorization is declared per route.

* The key comes from the ``X-API-Key`` header or the ``api_key`` query parameter (the widget's
  EventSource cannot set headers).  The query parameter is removed from the request before the
  routes and the access log see it.
* A presented key is checked on every request and becomes ``request.state.principal``
  (``app.deps.Principal``: tenant, role, agent id); a key over its token bucket is refused.
  Errors (invalid/revoked key → 401, over the rate → 429 with ``Retry-After``, key store down → 503)
  are raised by the route's ``require_roles`` dependency, in the service's JSON error shape, so public
  routes answer whatever key comes with the request.
* Which roles may use an endpoint is the route's own dependency, ``app.deps.require_roles(...)``: no key
  → 401, another role → 403; a route without it is public (health, metrics, docs, pages).  The routes and
  services scope every read by tenant (another tenant's call or alert is a 404, never a 403), and agents
  only reach their own calls (``GET /v1/calls/{id}`` of a call bound to another agent is a 404).

Access by route (the ``require_roles`` of each; the OpenAPI document lists them per operation):

=====================================================  ==========================================
``POST /v1/calls/{id}``, ``.../audio``, ``.../transcript``, ``.../end``, WS ``.../stream``   ingest, admin
``GET /v1/calls/{id}``                                 agent (own calls), supervisor, qa, admin
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
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator
from urllib.parse import parse_qsl, urlencode

from fastapi import routing
from fastapi.routing import APIRoute, APIWebSocketRoute

from app.deps import Principal, RequireRoles
from app.errors import AuthError, RateLimitedError
from app.security.jsonguard import JsonGuardMiddleware
from app.security.keys import BOOTSTRAP_ID, KeyManager, open_key_store, parse_key
from app.security.limits import BodyLimitMiddleware
from app.security.ratelimit import Limiter, LocalLimiter, open_limiter
from app.settings import SecuritySettings, ServiceSettings
from pipelines.errors import NuqiError, StoreUnavailableError

logger = logging.getLogger("nuqi.security")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

FAIL_RATE, FAIL_BURST = 5.0, 30  # invalid-key attempts per second / burst, per client address


@dataclass
class SecurityRuntime:
    """Per-process security state: key manager (store-backed) and rate limiter."""

    settings: SecuritySettings
    keys: KeyManager
    limiter: Limiter
    store: Any
    bootstrap_pending: bool = False
    failures: LocalLimiter = field(default_factory=LocalLimiter)  # wrong keys per client address
    data_lost_at: float | None = None  # when this worker found the key store empty (Redis lost its data)
    _last_heal: float = 0.0

    @classmethod
    def start(cls, settings: SecuritySettings, store: Any) -> "SecurityRuntime":
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

    def check_store(self) -> bool:
        """Notice a key store that lost its data (Redis restarted without persistence, or flushed: its epoch
        marker or the bootstrap key is gone) and heal what can be healed: the bootstrap admin key is installed
        again and this worker's key cache emptied.  The other keys are gone for good (create them again).
        Returns False when a loss was found now.  Raises StoreUnavailableError when the store is down."""
        intact = self.store.check_intact()
        if self.bootstrap_pending:  # never installed yet (the store was down at start): not a loss
            self.ensure_bootstrap()
        if self.settings.bootstrap_admin_key and self.keys.get(BOOTSTRAP_ID) is None:
            intact = False
        if intact:
            return True
        self.data_lost_at = time.time()
        logger.error("the key store lost its data (Redis restarted without persistence, or flushed?): API keys, "
                     "live calls and alerts are gone; %s", "re-installing the bootstrap admin key"
                     if self.settings.bootstrap_admin_key else "no NUQI_BOOTSTRAP_ADMIN_KEY to re-install")
        self.keys.forget()
        self.bootstrap_pending = bool(self.settings.bootstrap_admin_key)
        self.ensure_bootstrap()
        return False

    def heal_bootstrap(self, raw: str) -> bool:
        """A key shaped like the bootstrap key failed: if the store lost the bootstrap record, re-install it
        (at most once per key-cache period, so wrong keys cannot make every request a store round trip).
        True when it was re-installed (verify ``raw`` again)."""
        if not self.settings.bootstrap_admin_key or parse_key(raw)[0] != BOOTSTRAP_ID:
            return False
        now = time.monotonic()
        if now - self._last_heal < max(self.settings.key_cache_s, 1.0):
            return False
        self._last_heal = now
        return not self.check_store()

    async def close(self) -> None:
        await self.limiter.close()


def warn_open_api() -> None:
    banner = ("\n" + "!" * 78
              + "\n!!  NUQI_AUTH_ENABLED is false: the API is OPEN. Every request acts as the admin of\n"
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
    """Pure ASGI (HTTP and WebSocket; streams are not buffered): API key → ``scope["state"]["principal"]``,
    and the key's rate limit.  It never answers a request itself: a wrong key, a key over its rate or a key
    store that cannot be reached is recorded as ``scope["state"]["auth_error"]``, which the route's
    ``require_roles`` dependency raises (public routes ignore it, as they ignore the key)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = _strip_api_key(scope)
            sec: SecurityRuntime | None = getattr(scope["app"].state, "security", None)
            if sec is not None:  # not started: public routes answer, the others fail closed (503, app.deps)
                principal, error = await _authenticate(sec, scope, _header(scope, b"x-api-key") or raw)
                state = scope.setdefault("state", {})
                if principal is not None:
                    state["principal"] = principal
                if error is not None:
                    state["auth_error"] = error
        await self.app(scope, receive, send)


async def _authenticate(sec: SecurityRuntime, scope: Scope, raw: str | None) -> tuple[Principal | None,
                                                                                    NuqiError | None]:
    """(principal, None) for a valid key within its rate; (None, error) for a bad one; (None, None) without."""
    if not sec.settings.auth_enabled:
        return Principal(), None
    if not raw:  # anonymous: only public routes serve it (the others answer 401)
        return None, None
    client = (scope.get("client") or ("?", 0))[0]
    try:
        if sec.bootstrap_pending:
            await asyncio.to_thread(sec.ensure_bootstrap)
        hit, key = sec.keys.cached(raw)  # the common case: no thread hop
        if not hit:
            key = await asyncio.to_thread(sec.keys.verify, raw)
            if key is None and await asyncio.to_thread(sec.heal_bootstrap, raw):  # Redis lost the bootstrap key
                key = await asyncio.to_thread(sec.keys.verify, raw)
    except StoreUnavailableError as exc:
        return None, exc
    if key is None:  # only invalid attempts are throttled: a valid key behind the same NAT address still works
        if not sec.failures.take_sync(f"fail:{client}", FAIL_RATE, FAIL_BURST).allowed:
            return None, RateLimitedError("too many requests with invalid API keys from this address; slow down",
                                          retry_after_s=1)
        return None, AuthError("invalid or revoked API key")
    rate = key.rate_per_s if key.rate_per_s is not None else sec.settings.rate_limit_per_s
    burst = key.burst if key.burst is not None else sec.settings.rate_limit_burst
    decision = await sec.limiter.take(key.key_id, rate, burst)
    if not decision.allowed:
        retry = max(1, math.ceil(decision.retry_after_s))
        return None, RateLimitedError(f"API key {key.key_id} is over its rate limit of {rate:g} requests/s "
                                      f"(burst {burst}); retry after {retry} s",
                                      retry_after_s=round(decision.retry_after_s, 3))
    return Principal(tenant=key.tenant, role=key.role, agent_id=key.agent_id, key_id=key.key_id), None


def api_routes(app: Any) -> Iterator[Any]:
    """Every HTTP and WebSocket route of ``app`` with its effective path, methods and dependencies (those of
    its routers included).  FastAPI ≥ 0.16x keeps included routers whole (``iter_route_contexts``)."""
    contexts = getattr(routing, "iter_route_contexts", None)
    for route in contexts(app.routes) if contexts is not None else app.routes:
        if isinstance(getattr(route, "original_route", route), (APIRoute, APIWebSocketRoute)):
            yield route


def route_roles(route: Any) -> RequireRoles | None:
    """The ``require_roles`` dependency of a route (its own, its router's, or a sub-dependency's)."""
    todo = list(route.dependant.dependencies)
    while todo:
        dep = todo.pop()
        if isinstance(dep.call, RequireRoles):
            return dep.call
        todo.extend(dep.dependencies)
    return None


def _openapi_security(app: Any) -> None:
    """Declare the API-key schemes in the OpenAPI document (Swagger 'Authorize', schemathesis auth) and, on each
    operation with a ``require_roles`` dependency, the schemes and the roles (``x-roles``, and in the text)."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        comps = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        comps["ApiKeyHeader"] = {"type": "apiKey", "in": "header", "name": "X-API-Key"}
        comps["ApiKeyQuery"] = {"type": "apiKey", "in": "query", "name": "api_key"}
        for route in api_routes(app):
            if not route.methods or (need := route_roles(route)) is None:  # (WebSockets are not in OpenAPI)
                continue
            ops = schema.get("paths", {}).get(route.path_format, {})
            for method in route.methods:
                op = ops.get(method.lower())
                if op is None:
                    continue
                roles = sorted(need.roles)
                op.setdefault("security", [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}])
                op["x-roles"] = roles
                responses = op.setdefault("responses", {})
                responses.setdefault("401", {"description": "no, an invalid or a revoked API key"})
                responses.setdefault("403", {"description": f"the key's role is not one of: {', '.join(roles)}"})
                note = f"Roles: {', '.join(roles)}" + (" (an agent: its own calls only)" if need.agent_own_call else "")
                op["description"] = f"{op['description']}\n\n{note}." if op.get("description") else f"{note}."
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def install(app: Any, settings: ServiceSettings) -> None:
    """Add the body-size limit, auth and JSON-guard middlewares and the OpenAPI security schemes."""
    app.add_middleware(JsonGuardMiddleware)  # innermost: JSON bodies and frames checked (app.security.jsonguard)
    app.add_middleware(AuthMiddleware)
    ingest = settings.ingest
    app.add_middleware(BodyLimitMiddleware, max_bytes=ingest.max_body_bytes,
                       route_limits={("POST", "/v1/batch"): settings.batch.batch_max_upload_bytes},
                       idle_timeout_s=ingest.body_idle_timeout_s, grace_s=ingest.body_grace_s,
                       min_rate=ingest.body_min_rate)
    _openapi_security(app)
