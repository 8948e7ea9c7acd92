"""FastAPI dependencies (``Annotated`` aliases) shared by the routes: runtime, caller, call id.

Authorization is declared by each route: ``who: Annotated[Principal, Depends(require_roles(...))]``.
``app.security.auth.AuthMiddleware`` only turns the API key into ``request.state.principal`` and applies the
key's rate limit (a wrong key or one over its rate is recorded as ``request.state.auth_error``, which
``require_roles`` raises); a route without a ``require_roles`` dependency is public.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection

from app.errors import AuthError, ForbiddenError, NotReadyError, status_for
from app.runtime import Runtime
from app.schemas import CALL_ID
from app.security.roles import AGENT
from pipelines.errors import InputError, NotFoundError, NuqiError


# ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its worker-thread pool, i.e. two
# thread hops (and GIL hand-offs) per request for two attribute lookups
async def get_runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:  # before the lifespan started (or after it ended)
        raise NotReadyError("the service is starting; models and store are not loaded yet")
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: tenant and role (``ingest``, ``agent``, ``supervisor``, ``qa``, ``admin``)."""

    tenant: str = "default"
    role: str = "admin"
    agent_id: str | None = None
    key_id: str | None = None


class RequireRoles:
    """Dependency: the caller's :class:`Principal` when its role is one of ``roles``.

    No principal → the middleware's error for the key (401 invalid, 429 over its rate, 503 key store down) or
    401 without a key; another role → 403.  With ``agent_own_call`` an ``agent`` key only
    reaches calls bound to its own agent id (path parameter ``call_id``); anything else is a 404, the same
    answer as for a call that does not exist.  On a WebSocket the handshake is refused (close 1008, or 1013
    when the service is not ready) instead.  ``app.security.auth`` lists ``roles`` in the OpenAPI operation.
    """

    def __init__(self, roles: tuple[str, ...], agent_own_call: bool = False) -> None:
        self.roles = frozenset(roles)
        self.agent_own_call = agent_own_call

    def __repr__(self) -> str:
        return f"require_roles({', '.join(sorted(self.roles))})"

    async def __call__(self, conn: HTTPConnection) -> Principal:
        try:
            return await self._check(conn)
        except NuqiError as exc:
            if conn.scope["type"] != "websocket":
                raise
            # closing before accept makes the server answer the handshake with 403
            status = status_for(exc)
            raise WebSocketException(code=1013 if status in (429, 503) else 1008,
                                     reason=f"{status} {exc.code}") from None

    async def _check(self, conn: HTTPConnection) -> Principal:
        who: Principal | None = getattr(conn.state, "principal", None)
        if who is None:
            error: NuqiError | None = getattr(conn.state, "auth_error", None)  # set by app.security.auth
            if error is not None:
                raise error
            if getattr(conn.app.state, "security", None) is None:  # fail closed until the key store is open
                raise NotReadyError("the service is starting; security not initialised")
            raise AuthError("an API key is required: send the X-API-Key header (or ?api_key= for EventSource)")
        if who.role not in self.roles:
            method = "WS" if conn.scope["type"] == "websocket" else conn.scope["method"]
            raise ForbiddenError(f"role {who.role!r} may not {method} {conn.url.path}; allowed: "
                                 f"{', '.join(sorted(self.roles))}", role=who.role)
        if self.agent_own_call and who.role == AGENT:
            call_id = str(conn.path_params.get("call_id", ""))
            rt: Runtime = conn.app.state.runtime
            rec = await rt.run(lambda: rt.store.get_call(call_id, tenant=who.tenant))
            if rec is None or rec.agent_id != who.agent_id:
                raise NotFoundError(f"call {call_id!r} not found", call_id=call_id)
        return who


def require_roles(*roles: str, agent_own_call: bool = False) -> RequireRoles:
    """``Depends(require_roles("supervisor", "admin"))``: only callers with one of these roles."""
    return RequireRoles(roles, agent_own_call)


# --------------------------------------------------------------------------- call ids
CallId = Annotated[str, Path(pattern=CALL_ID, description="1-128 characters: letters, digits, '_', '.', ':', '-' "
                                                         "(starting with a letter or digit)")]
_CALL_ID_RE = re.compile(CALL_ID)


def check_call_id(call_id: str) -> None:
    """The ``CallId`` rule for call ids that do not come through a path parameter (WebSocket)."""
    if not _CALL_ID_RE.match(call_id):
        raise InputError("call_id must be 1-128 characters of letters, digits, '_', '.', ':' or '-'", field="call_id")
