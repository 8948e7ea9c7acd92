"""Supervisor board: live calls of a tenant, highest stage first, with each call's anger trend."""
from __future__ import annotations

from typing import Any

from app.runtime import Runtime
from pipelines.session import CallState, public_view


def board_view(rt: Runtime, tenant: str, include_ended: bool = False, limit: int = 500) -> dict[str, Any]:
    calls = []
    for rec in rt.store.list_calls(tenant=tenant, status=None if include_ended else "active", limit=limit):
        view = public_view(CallState.from_state(rec.state), rt.models.fusion)
        stage = view.get("stage") or {}
        calls.append({
            "call_id": rec.call_id, "agent_id": rec.agent_id, "status": rec.status,
            "updated_at": rec.updated_at, "clock_s": view["clock_s"],
            "stage": stage, "anger": view.get("anger", {}), "trend": view.get("trend", []),
            "unacked_alerts": None,
        })
    unacked: dict[str, int] = {}
    for a in rt.store.list_alerts(tenant=tenant, include_acked=False, limit=5000):
        unacked[a.call_id] = unacked.get(a.call_id, 0) + 1
    for c in calls:
        c["unacked_alerts"] = unacked.get(c["call_id"], 0)
    calls.sort(key=lambda c: (-(c["stage"].get("level") or 0), -(c["anger"].get("fused") or 0.0)))
    return {"calls": calls, "count": len(calls)}
