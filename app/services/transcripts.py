"""Transcript snippets of a live call: analyse, persist (interim superseded by final), update state."""
from __future__ import annotations

from typing import Any, Protocol

from app import observability as obs
from app.runtime import Runtime
from app.services.calls import ensure_call, state_dict, store_alert
from app.services.cas import retry_cas
from pipelines.errors import ConflictError
from pipelines.pii import redact_call_state, redact_obj
from pipelines.session import CallState, process_transcript, public_view


class Snippet(Protocol):
    role: str
    text: str
    start: float | None
    end: float | None
    final: bool
    id: str | None


def _apply(rt: Runtime, call_id: str, tenant: str, s: Snippet) -> dict[str, Any]:
    key = s.id or f"{s.role}:{s.start if s.start is not None else 'na'}"

    def attempt() -> dict[str, Any] | None:
        rec = ensure_call(rt, call_id, tenant, None)
        if rec.status == "ended":
            raise ConflictError(f"call {call_id!r} has ended; no more transcripts are accepted", call_id=call_id)
        state = CallState.from_state(rec.state)
        expected = rec.version
        level_before = obs.stage_level(rec.state)
        with obs.inference("transcript"):  # keywords/emotion see the original text, in memory only
            result = process_transcript(state, s.role, s.text, s.start, s.end, s.final, rt.models)
        entry = redact_obj(result.entry)  # nothing personal is stored, returned or logged
        entry["key"] = key
        rec.state = redact_call_state(state_dict(state))
        if s.final:
            if not rt.store.save_call(rec, expected):
                return None
            obs.stage_change(level_before, rec.state)
        rt.store.put_transcript(call_id, key, entry)
        stored = [a for a in (store_alert(rt, rec, a) for a in result.alerts) if a is not None]
        return {"call_id": call_id, "utterance": entry, "alerts": stored,
                "state": public_view(state, rt.models.fusion)}

    return retry_cas(attempt, f"transcript {key!r} of call {call_id!r}", call_id=call_id)


async def ingest_transcript(rt: Runtime, call_id: str, snippet: Snippet, *, tenant: str) -> dict[str, Any]:
    async with rt.lock_for(call_id):
        out = await rt.run(_apply, rt, call_id, tenant, snippet)
    if out["alerts"]:
        await rt.alerts.notify()
    return out
