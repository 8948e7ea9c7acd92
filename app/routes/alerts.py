"""Alerts for agents and supervisors: long-poll, SSE stream, ack; the supervisors' live board data."""
from __future__ import annotations

import json
import time
from typing import Annotated, AsyncIterator

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from app.deps import Principal, RuntimeDep, require_roles
from app.errors import COMMON, WITH_BODY, AuthError, error_body, responses
from app.observability import alert_acked
from app.runtime import Runtime
from app.schemas import AckIn, Alert, AlertList, Board
from app.security.roles import ADMIN, AGENT, SUPERVISOR
from app.security.streams import ConnectionGuard
from app.services.board import board_view
from pipelines.errors import NotFoundError

router = APIRouter(prefix="/v1", tags=["alerts"], responses=responses(*COMMON, *WITH_BODY, 404))

AlertReader = Annotated[Principal, Depends(require_roles(AGENT, SUPERVISOR, ADMIN))]  # agents: their own alerts
BoardReader = Annotated[Principal, Depends(require_roles(SUPERVISOR, ADMIN))]

MAX_ID = 2**53  # alert ids/cursors above this are refused (422) instead of overflowing the store's integers
POLL_S = 0.5  # store poll interval while waiting (finds alerts raised by other workers)
HEARTBEAT_S = 15.0


def _scope(who: Principal, agent_id: str | None) -> tuple[str, str | None]:
    """Agents only ever see their own alerts; others may filter by agent."""
    return who.tenant, (who.agent_id if who.role == "agent" and who.agent_id else agent_id)


def _fetch(rt: Runtime, tenant: str, agent_id: str | None, call_id: str | None, after: int, limit: int,
           include_acked: bool) -> list[dict]:
    return [a.to_dict() for a in rt.store.list_alerts(tenant=tenant, agent_id=agent_id, call_id=call_id,
                                                       after=after, limit=limit, include_acked=include_acked)]


@router.get("/alerts", response_model=AlertList, response_model_exclude_unset=True,
            summary="Alerts after a cursor; long-polls up to `wait` seconds when there are none")
async def list_alerts(
    rt: RuntimeDep, who: AlertReader,
    agent_id: Annotated[str | None, Query(max_length=128)] = None,
    call_id: Annotated[str | None, Query(max_length=128)] = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="cursor: return alerts with id > after")] = 0,
    wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for a new alert")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    include_acked: bool = True,
) -> dict:
    tenant, agent = _scope(who, agent_id)
    deadline = time.monotonic() + wait
    while True:
        alerts = await rt.run(_fetch, rt, tenant, agent, call_id, after, limit, include_acked)
        remaining = deadline - time.monotonic()
        if alerts or remaining <= 0:
            cursor = alerts[-1]["id"] if alerts else after
            return {"alerts": alerts, "cursor": cursor}
        await rt.alerts.wait(min(POLL_S, remaining))


@router.get("/alerts/stream", summary="Server-sent events: one `alert` event per alert (id = cursor)",
            description="The key is checked again while the stream is open: once it is revoked (within "
                        "`NUQI_KEY_CACHE_S`) the stream sends an `error` event (`unauthorized`) and ends.",
            response_class=StreamingResponse,
            responses={200: {"description": "`text/event-stream`: `event: alert` with the alert's JSON as data "
                                            "(the `Alert` schema), `id` = its cursor",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream_alerts(
    request: Request, rt: RuntimeDep, who: AlertReader,
    agent_id: Annotated[str | None, Query(max_length=128)] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    max_seconds: Annotated[float, Query(gt=0, le=86400, description="close the stream after this long")] = 3600,
) -> StreamingResponse:
    tenant, agent = _scope(who, agent_id)
    cursor = after if after is not None else min(int(last_event_id), MAX_ID) \
        if (last_event_id or "").isdigit() and last_event_id.isascii() else 0

    guard = ConnectionGuard.of(request, who)

    async def events() -> AsyncIterator[str]:
        nonlocal cursor
        end = time.monotonic() + max_seconds
        last_beat = time.monotonic()
        yield "retry: 2000\n\n"
        while time.monotonic() < end and not await request.is_disconnected():
            try:
                await guard.check_key()  # a revoked key's stream ends within the key-cache period
            except AuthError as exc:
                yield f"event: error\ndata: {json.dumps(error_body(exc.code, exc.message, **exc.detail))}\n\n"
                return
            alerts = await rt.run(_fetch, rt, tenant, agent, None, cursor, 100, True)
            for a in alerts:
                cursor = a["id"]
                yield f"id: {a['id']}\nevent: alert\ndata: {json.dumps(a, ensure_ascii=False)}\n\n"
            if time.monotonic() - last_beat > HEARTBEAT_S:
                last_beat = time.monotonic()
                yield ": keep-alive\n\n"
            if not alerts:
                await rt.alerts.wait(POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/alerts/{alert_id}/ack", response_model=Alert, response_model_exclude_unset=True,
             summary="Acknowledge an alert (idempotent)")
async def ack_alert(alert_id: Annotated[int, Path(ge=0, le=MAX_ID)], rt: RuntimeDep, who: AlertReader,
                    ack: AckIn = Body(default_factory=AckIn)) -> dict:
    alert = await rt.run(rt.store.get_alert, alert_id)
    tenant, agent = _scope(who, None)
    if alert is None or alert.tenant != tenant or (agent is not None and alert.agent_id != agent):
        raise NotFoundError(f"alert {alert_id} not found", alert_id=alert_id)
    acked = await rt.run(rt.store.ack_alert, alert_id, ack.by or who.agent_id)
    assert acked is not None
    alert_acked(alert.acked_at is not None, acked.acked_at is not None)
    return acked.to_dict()


@router.get("/board", response_model=Board, response_model_exclude_unset=True,
            summary="Live calls of the tenant sorted by stage (supervisor board data)")
async def board(rt: RuntimeDep, who: BoardReader,
                include_ended: Annotated[bool, Query()] = False,
                limit: Annotated[int, Query(ge=1, le=2000)] = 500) -> dict:
    return await rt.run(board_view, rt, who.tenant, include_ended, limit)

