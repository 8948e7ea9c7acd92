"""FastAPI dependencies (``Annotated`` aliases) shared by the routes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.runtime import Runtime


# ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its worker-thread pool, i.e. two
# thread hops (and GIL hand-offs) per request for two attribute lookups
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: tenant and role (``ingest``, ``agent``, ``supervisor``, ``qa``, ``admin``)."""

    tenant: str = "default"
    role: str = "admin"
    agent_id: str | None = None
    key_id: str | None = None


async def get_principal(request: Request) -> Principal:
    return getattr(request.state, "principal", None) or Principal()


PrincipalDep = Annotated[Principal, Depends(get_principal)]
