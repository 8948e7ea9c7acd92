"""API-key management (role ``admin``): create, list, show, revoke.

An admin manages the keys of its own tenant.  The operator's bootstrap key
(``NUQI_BOOTSTRAP_ADMIN_KEY``) may also create and manage keys of other tenants, which is how a
new tenant gets its first admin key.
"""
from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from app.deps import Principal, require_roles
from app.errors import COMMON, WITH_BODY, ForbiddenError, responses
from app.schemas import KEY_ID, TENANT, KeyCreated, KeyIn, KeyList, KeyOut
from app.security.keys import BOOTSTRAP_ID
from app.security.roles import ADMIN
from pipelines.errors import ConflictError, NotFoundError

_ADMIN = require_roles(ADMIN)
router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(_ADMIN)],  # also any route added later
                   responses=responses(*COMMON, *WITH_BODY, 404))
Admin = Annotated[Principal, Depends(_ADMIN)]


def _root(who: Principal) -> bool:
    """The bootstrap key (or the open API of auth-disabled mode) acts across tenants."""
    return who.key_id in (None, BOOTSTRAP_ID)


def _sec(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.security


@router.post("/keys", status_code=201, response_model=KeyCreated,
             summary="Create an API key (the raw key is returned once)")
async def create_key(body: KeyIn, request: Request, who: Admin) -> dict:
    tenant = body.tenant or who.tenant
    if tenant != who.tenant and not _root(who):
        raise ForbiddenError("an admin key may only create keys for its own tenant", tenant=tenant)
    key, raw = await asyncio.to_thread(_sec(request).keys.create, tenant, body.role, agent_id=body.agent_id,
                                       name=body.name, rate_per_s=body.rate_per_s, burst=body.burst)
    return {**key.public(), "key": raw}


@router.get("/keys", response_model=KeyList, summary="List API keys (no secrets)")
async def list_keys(request: Request, who: Admin,
                    tenant: Annotated[str | None, Query(pattern=TENANT)] = None) -> dict:
    if tenant is None:
        tenant = None if _root(who) else who.tenant
    elif tenant != who.tenant and not _root(who):
        return {"keys": []}
    keys = await asyncio.to_thread(_sec(request).keys.list, tenant)
    return {"keys": [k.public() for k in keys]}


async def _own_key(request: Request, who: Principal, key_id: str):  # type: ignore[no-untyped-def]
    key = await asyncio.to_thread(_sec(request).keys.get, key_id)
    if key is None or (key.tenant != who.tenant and not _root(who)):
        raise NotFoundError(f"API key {key_id!r} not found", key_id=key_id)
    return key


@router.get("/keys/{key_id}", response_model=KeyOut, summary="One API key (no secret)")
async def get_key(request: Request, who: Admin,
                  key_id: Annotated[str, Path(pattern=KEY_ID)]) -> dict:
    return (await _own_key(request, who, key_id)).public()


@router.delete("/keys/{key_id}", response_model=KeyOut,
               summary="Revoke an API key (idempotent; effective within NUQI_KEY_CACHE_S)")
async def revoke_key(request: Request, who: Admin,
                     key_id: Annotated[str, Path(pattern=KEY_ID)]) -> dict:
    await _own_key(request, who, key_id)
    if key_id == BOOTSTRAP_ID:  # the operator's key: no tenant admin (nor itself) may lock the operator out
        raise ConflictError("the bootstrap admin key is managed by the operator through NUQI_BOOTSTRAP_ADMIN_KEY: "
                            "rotate or unset it there and restart", key_id=key_id)
    key = await asyncio.to_thread(_sec(request).keys.revoke, key_id)
    return key.public()
