"""Call ingest: ordering by ``seq``, idempotency, compare-and-set commits, alert persistence.

Per chunk: decode (pure; a bad chunk never touches state) → load the call's state →
wait briefly for a missing predecessor (another worker may be processing it) →
analyse → commit state + timeline entry with a version check → persist alerts.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from app.runtime import Runtime
from app.store import CallRecord
from pipelines.audio.decode import ChunkFormat, decode_chunk
from pipelines.errors import ConflictError, NotFoundError
from pipelines.session import CallState, process_audio

logger = logging.getLogger("nuqi.calls")

GAP_WAIT_S = 1.5  # how long a chunk waits for its predecessor before the hole is recorded as a gap
RETRY_SLEEP_S = 0.02


def _new_record(call_id: str, tenant: str, agent_id: str | None, meta: dict[str, Any] | None = None) -> CallRecord:
    return CallRecord(call_id=call_id, tenant=tenant, agent_id=agent_id, meta=dict(meta or {}),
                      state=CallState().state_dict())


def ensure_call(rt: Runtime, call_id: str, tenant: str, agent_id: str | None,
                meta: dict[str, Any] | None = None) -> CallRecord:
    """Get or create the call; bind the agent if it was not bound yet."""
    rec = rt.store.get_call(call_id)
    if rec is None:
        rt.store.create_call(_new_record(call_id, tenant, agent_id, meta))
        rec = rt.store.get_call(call_id)
        assert rec is not None
    if rec.tenant != tenant:
        raise NotFoundError(f"call {call_id!r} not found", call_id=call_id)
    if (agent_id and rec.agent_id != agent_id) or meta:
        for _ in range(20):
            if agent_id:
                rec.agent_id = agent_id
            rec.meta.update(meta or {})
            if rt.store.save_call(rec, rec.version):
                break
            rec = rt.store.get_call(call_id) or rec
    return rec


def get_call(rt: Runtime, call_id: str, tenant: str) -> CallRecord:
    rec = rt.store.get_call(call_id)
    if rec is None or rec.tenant != tenant:
        raise NotFoundError(f"call {call_id!r} not found", call_id=call_id)
    return rec


def _attempt(rt: Runtime, call_id: str, tenant: str, agent_id: str | None, seq: int, chunk: Any,
             start_s: float | None, waited: float) -> tuple[str, dict[str, Any] | None]:
    """One try at applying a chunk. Returns ("done", response) or ("wait"|"retry", None)."""
    rec = ensure_call(rt, call_id, tenant, agent_id)
    if rec.status == "ended":
        raise ConflictError(f"call {call_id!r} has ended; no more audio is accepted", call_id=call_id)
    stored = rt.store.get_chunk(call_id, seq)
    if stored is not None:
        return "done", {**stored, "duplicate": True}
    state = CallState.from_state(rec.state)
    if seq <= state.last_seq:
        raise ConflictError(
            f"chunk seq {seq} arrived after seq {state.last_seq} was processed; it was recorded as a gap",
            call_id=call_id, seq=seq, last_seq=state.last_seq,
        )
    if state.last_seq >= 0 and seq > state.last_seq + 1 and waited < GAP_WAIT_S:
        return "wait", None
    expected = rec.version
    entry = process_audio(state, chunk, seq, rt.models, start_s)
    alerts = entry.pop("_alerts", [])
    rec.state = state.state_dict()
    if not rt.store.commit_chunk(rec, expected, seq, entry):
        return "retry", None
    stored_alerts = [a for a in (store_alert(rt, rec, a) for a in alerts) if a is not None]
    return "done", {**entry, "duplicate": False, "alerts": stored_alerts, "gaps": state.gaps}


def store_alert(rt: Runtime, rec: CallRecord, alert: dict[str, Any]) -> dict[str, Any] | None:
    payload = {k: v for k, v in alert.items() if k not in ("level", "kind", "dedup_key")}
    stored = rt.store.add_alert(rec.call_id, rec.tenant, rec.agent_id, int(alert["level"]), str(alert["kind"]),
                                payload, f"{rec.call_id}:{alert['dedup_key']}")
    return stored.to_dict() if stored else None


async def ingest_audio(rt: Runtime, call_id: str, body: bytes, fmt: ChunkFormat, seq: int, *,
                       tenant: str, agent_id: str | None = None, start_s: float | None = None) -> dict[str, Any]:
    chunk = await rt.run(lambda: decode_chunk(body, fmt, max_seconds=rt.settings.max_chunk_seconds))
    t0 = time.monotonic()
    while True:
        waited = time.monotonic() - t0
        async with rt.lock_for(call_id):  # held per attempt only, so a predecessor can get in
            outcome, result = await rt.run(_attempt, rt, call_id, tenant, agent_id, seq, chunk, start_s, waited)
        if outcome == "done":
            assert result is not None
            if result.get("alerts"):
                await rt.alerts.notify()
            return {"call_id": call_id, **result}
        await asyncio.sleep(RETRY_SLEEP_S * (5 if outcome == "wait" else 1))


def call_view(rt: Runtime, call_id: str, tenant: str, timeline: bool = True) -> dict[str, Any]:
    from pipelines.session import public_view

    rec = get_call(rt, call_id, tenant)
    state = CallState.from_state(rec.state)
    view: dict[str, Any] = {
        "call_id": rec.call_id, "agent_id": rec.agent_id, "status": rec.status, "meta": rec.meta,
        "created_at": rec.created_at, "updated_at": rec.updated_at,
        "state": public_view(state, rt.models.fusion), "summary": rec.summary,
    }
    if timeline:
        view["timeline"] = rt.store.list_chunks(call_id)
        view["transcripts"] = rt.store.list_transcripts(call_id)
    return view


def end_call(rt: Runtime, call_id: str, tenant: str) -> dict[str, Any]:
    """Mark the call ended (idempotent) and store its summary."""
    from pipelines.session import summarize

    for _ in range(50):
        rec = get_call(rt, call_id, tenant)
        if rec.status == "ended" and rec.summary is not None:
            return {"call_id": call_id, "status": "ended", "summary": rec.summary}
        state = CallState.from_state(rec.state)
        expected = rec.version
        rec.summary = summarize(state, rt.store.list_chunks(call_id), rt.models.fusion)
        rec.status = "ended"
        rec.state = state.state_dict()
        if rt.store.save_call(rec, expected):
            return {"call_id": call_id, "status": "ended", "summary": rec.summary}
        time.sleep(RETRY_SLEEP_S)
    raise ConflictError(f"call {call_id!r} is being updated too often to end it; retry", call_id=call_id)
