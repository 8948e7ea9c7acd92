"""Liveness and readiness."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import RuntimeDep
from pipelines.errors import StoreUnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded and store reachable")
async def readyz(rt: RuntimeDep) -> JSONResponse:
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
    body = {"ready": ready, "models": models, "store": {"backend": rt.store.name, "ok": store_ok, "error": store_error},
            "reasons": reasons}
    return JSONResponse(body, status_code=200 if ready else 503)
