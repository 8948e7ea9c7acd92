"""Liveness and readiness (public: no API key)."""
from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from app.deps import RuntimeDep
from app.schemas import Health, Readiness
from pipelines.errors import StoreUnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, summary="Readiness: models loaded and store reachable",
            description="Also notices a store that lost its data (Redis restarted without persistence, or flushed): "
                        "the bootstrap admin key is installed again and `store.data_lost_at` / `warnings` say when; "
                        "the other API keys, live calls and alerts are gone and must be created again.",
            responses={503: {"model": Readiness, "description": "not ready: `reasons` says why"}})
async def readyz(request: Request, rt: RuntimeDep, response: Response) -> dict:
    store_ok, store_error = True, None
    sec = getattr(request.app.state, "security", None)
    try:
        await rt.run(rt.store.ping)
        if sec is not None:
            await rt.run(sec.check_store)  # Redis lost its keys: re-install the bootstrap key (self-heal)
    except StoreUnavailableError as exc:
        store_ok, store_error = False, exc.message
    warnings = []
    lost_at = getattr(sec, "data_lost_at", None)
    if lost_at is not None:
        warnings.append(f"the store lost its data at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(lost_at))} "
                        "(Redis restarted without persistence, or flushed): the bootstrap admin key was installed "
                        "again; the other API keys, live calls and alerts are gone (run Redis with AOF persistence)")
    models = {k: v.to_dict() for k, v in rt.models.status.items()}
    ready = rt.models.ready and store_ok
    reasons = [f"model {k} not loaded: {v['error']}" for k, v in models.items() if not v["loaded"]]
    if not store_ok:
        reasons.append(f"store {rt.store.name} unavailable: {store_error}")
    response.status_code = 200 if ready else 503
    out = {"ready": ready, "models": models, "reasons": reasons, "warnings": warnings,
           "store": {"backend": rt.store.name, "ok": store_ok, "error": store_error, "data_lost_at": lost_at}}
    if rt.asr is not None:  # live ASR is optional: its absence is reported, never a reason to be unready
        out["asr"] = rt.asr.health()
    return out
