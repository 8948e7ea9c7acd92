"""Transcript snippets of a live call: analyse, persist (interim superseded by final), update state."""
from __future__ import annotations

import time
from typing import Any, Protocol

from app import observability as obs
from app.runtime import Runtime
from app.services.calls import RETRY_SLEEP_S, ensure_call, state_dict, store_alert
from pipelines.errors import ConflictError
from pipelines.pii import redact_call_state, redact_obj
from pipelines.session import CallState, process_transcript


class Snippet(Protocol):
    role: str
    text: str
    start: float | None
    end: float | None
    final: bool
    id: str | None


def _apply(rt: Runtime, call_id: str, tenant: str, s: Snippet) -> dict[str, Any]:
    key = s.id or f"{s.role}:{s.start if s.start is not None else 'na'}"
    for _ in range(200):
        rec = ensure_call(rt, call_id, tenant, None)
        if rec.status == "ended":
            raise ConflictError(f"call {call_id!r} has ended; no more transcripts are accepted", call_id=call_id)
        state = CallState.from_state(rec.state)
        expected = rec.version
        level_before = obs.stage_level(rec.state)
        with obs.inference("transcript"):  # keywords/emotion see the original text, in memory only
            entry = process_transcript(state, s.role, s.text, s.start, s.end, s.final, rt.models)
        alerts = entry.pop("_alerts", [])
        entry = redact_obj(entry)  # nothing personal is stored, returned or logged
        entry["key"] = key
        rec.state = redact_call_state(state_dict(state))
        if s.final and not rt.store.save_call(rec, expected):
            time.sleep(RETRY_SLEEP_S)
            continue
        if s.final:
            obs.stage_change(level_before, rec.state)
        rt.store.put_transcript(call_id, key, entry)
        stored = [a for a in (store_alert(rt, rec, a) for a in alerts) if a is not None]
        from pipelines.session import public_view

        return {"call_id": call_id, "utterance": entry, "alerts": stored,
                "state": public_view(state, rt.models.fusion)}
    raise ConflictError(f"call {call_id!r} is being updated too often; retry", call_id=call_id)


async def ingest_transcript(rt: Runtime, call_id: str, snippet: Snippet, *, tenant: str) -> dict[str, Any]:
    async with rt.lock_for(call_id):
        out = await rt.run(_apply, rt, call_id, tenant, snippet)
    if out["alerts"]:
        await rt.alerts.notify()
    return out
