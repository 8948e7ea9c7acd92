"""The FastAPI application: ``create_app()`` wires settings, runtime, routes and error mapping."""
from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import FastAPI

from app import docs, errors, observability
from app.routes import admin, alerts, batch, calls, health, pages, telephony, transcripts
from app.runtime import Runtime
from app.security import auth
from app.security.auth import SecurityRuntime
from app.services.asr import LiveAsr
from app.services.telephony import TelephonyRuntime
from app.settings import ServiceSettings, get_service_settings
from pipelines.registry import ModelRegistry

logger = logging.getLogger("nuqi.app")


def create_app(settings: ServiceSettings | None = None, models: ModelRegistry | None = None) -> FastAPI:
    settings = settings or get_service_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.start(settings, models)
        app.state.runtime = runtime
        try:
            # live ASR: recogniser processes when NUQI_LIVE_ASR is not off and the Whisper model is assembled
            # (else every call says why it has none, and /readyz says so)
            runtime.asr = await LiveAsr.start(runtime)
            app.state.security = SecurityRuntime.start(settings.security, runtime.store)
            app.state.telephony = TelephonyRuntime(runtime, app.state.security)  # AudioSocket listener (if its port is set), RTP legs
            await app.state.telephony.start()
            # the loaded models (jieba's dictionary, lexicon, tokenizer, ...) never die: keep them out of the
            # cyclic GC, whose full collections otherwise stalled a request by 50-130 ms every second or two
            gc.collect()
            gc.freeze()
            yield
        finally:
            if getattr(app.state, "telephony", None) is not None:
                await app.state.telephony.close()
            if getattr(app.state, "security", None) is not None:
                await app.state.security.close()
            if runtime.asr is not None:
                await runtime.asr.close()
            runtime.close()

    app = FastAPI(
        title="nuqi (怒气)",
        version="0.1.0",
        summary="Hears anger building in live Mandarin customer-service calls and warns the agent in time.",
        lifespan=lifespan,
    )
    errors.install(app)
    docs.install(app)  # /docs and /redoc with their assets served locally (offline hosts)
    auth.install(app, settings)  # API keys, rate limit, body cap (roles: each route's require_roles)
    observability.install(app, settings)  # /metrics, JSON logs (outermost middleware)
    app.include_router(admin.router)
    for module in (health, calls, telephony, transcripts, alerts, pages, batch):
        app.include_router(module.router)
    return app
