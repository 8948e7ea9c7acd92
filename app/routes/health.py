"""Liveness and readiness (public: no API key)."""
from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import RuntimeDep
from app.schemas import Health, Readiness
from pipelines.errors import StoreUnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, summary="Readiness: models loaded and store reachable",
            responses={503: {"model": Readiness, "description": "not ready: `reasons` says why"}})
async def readyz(rt: RuntimeDep, response: Response) -> dict:
    store_ok, store_error = True, None
    try:
        await rt.run(rt.store.ping)
    except StoreUnavailableError as exc:
        store_ok, store_error = False, exc.message
    models = {k: v.to_dict() for k, v in rt.models.status.items()}
    ready = rt.models.ready and store_ok
    reasons = [f"model {k} not loaded: {v['error']}" for k, v in models.items() if not v["loaded"]]
    if not store_ok:
        reasons.append(f"store {rt.store.name} unavailable: {store_error}")
    response.status_code = 200 if ready else 503
    out = {"ready": ready, "models": models, "store": {"backend": rt.store.name, "ok": store_ok, "error": store_error},
           "reasons": reasons}
    if rt.asr is not None:  # live ASR is optional: its absence is reported, never a reason to be unready
        out["asr"] = rt.asr.health()
    return out
