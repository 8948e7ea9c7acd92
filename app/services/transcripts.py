"""Transcript snippets of a live call: analyse, persist (interim superseded by final), update state.

Idempotent by utterance ``id``: a final snippet whose id was already applied (a client's retry) changes
nothing (no second utterance, no stage rise, no new alert); the answer is the stored utterance with
``duplicate: true`` and its alerts re-delivered (their dedup keys keep that idempotent, so an alert is never
lost when a worker died between committing the state and storing the alerts).  An interim snippet arriving
after the final one of its id is ignored the same way.  Snippets without an id cannot be recognised.

The response has the chunk response's top-level shape: ``stage`` (the call's stage), ``anger``
(``fused``: the customer's latest fused anger, ``agent``), ``alerts``; the snippet's own analysis is under
``utterance`` and the call's live view under ``state``.

Transcripts come from the platform (``source: "platform"``) or from the built-in recogniser
(:func:`ingest_asr`, ``source: "asr"`` with its ``confidence``; keywords also matched by sound).  Platform
transcripts win: the first final one stops live ASR of a call in ``auto`` mode, and a recognised utterance
whose span a platform transcript of the same leg covers is not applied (``pipelines.asr.admission``).
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from app import observability as obs
from app.runtime import Runtime
from app.services.calls import STORED_ALERTS, ensure_call, state_dict, store_alert
from app.services.cas import retry_cas
from app.store import CallRecord
from pipelines.asr import admission
from pipelines.errors import ConflictError
from pipelines.fusion import CallAlert
from pipelines.pii import id_digest, redact, redact_call_state, redact_obj
from pipelines.session import CallState, process_transcript, public_view

MAX_FINAL_IDS = 4096  # final utterance ids a call remembers (retries come within seconds; a call has far fewer)


class Snippet(Protocol):
    role: str
    text: str
    start: float | None
    end: float | None
    final: bool
    id: str | None


def storage_key(s: Snippet) -> str:
    """The store's key of a snippet: a digest of its id (an id may be personal, e.g. a phone number), or
    role and start time for snippets without one."""
    if s.id:
        return "id:" + id_digest(s.id)
    return f"{s.role}:{s.start if s.start is not None else 'na'}"


def _top(view: dict[str, Any]) -> dict[str, Any]:
    """The call-level fields every ingest response carries at the top: stage and anger."""
    out: dict[str, Any] = {}
    if "stage" in view:
        out["stage"] = view["stage"]
    if "anger" in view:
        out["anger"] = view["anger"]
    return out


def _duplicate(rt: Runtime, rec: CallRecord, call_id: str, key: str, s: Snippet) -> dict[str, Any]:
    stored = next((t for t in rt.store.list_transcripts(call_id, tenant=rec.tenant) if t.get("key") == key), None)
    if stored is None:  # the state was committed but the worker died before the entry was stored
        stored = {"role": s.role, "text": redact(s.text), "start": s.start, "end": s.end, "final": True, "key": key,
                  "id": redact(s.id or "")}
    alerts = [CallAlert.from_dict(a) for a in stored.get(STORED_ALERTS, [])]
    redelivered = [a for a in (store_alert(rt, rec, a) for a in alerts) if a is not None]
    utterance = {k: v for k, v in stored.items() if k != STORED_ALERTS}
    view = public_view(CallState.from_state(rec.state), rt.models.fusion)
    return {"call_id": call_id, "duplicate": True, **_top(view), "alerts": redelivered, "utterance": utterance,
            "state": view}


@dataclass(frozen=True)
class AsrSnippet:
    """A final transcript of the built-in recogniser (one utterance), applied like a platform snippet."""

    role: str
    text: str
    start: float | None
    end: float | None
    id: str
    confidence: float | None
    final: bool = True


def _apply(rt: Runtime, call_id: str, tenant: str, s: Snippet) -> dict[str, Any]:
    key = storage_key(s)
    asr = isinstance(s, AsrSnippet)

    def attempt() -> dict[str, Any] | None:
        rec = ensure_call(rt, call_id, tenant, None)
        if rec.status == "ended":
            raise ConflictError(f"call {call_id!r} has ended; no more transcripts are accepted", call_id=call_id)
        state = CallState.from_state(rec.state)
        if s.id and key in state.final_ids:
            return _duplicate(rt, rec, call_id, key, s)
        stopped = False
        if asr:
            why = admission.accepts(state.asr, s.role, s.start, s.end)
            if why is not None:  # platform transcripts win; nothing is stored
                return {"call_id": call_id, "dropped": why}
        elif s.final:
            state.asr, stopped = admission.note_platform(state.asr, s.role, s.start, s.end)
        expected = rec.version
        level_before = obs.stage_level(rec.state)
        with obs.inference("transcript"):  # keywords/emotion see the original text, in memory only
            result = process_transcript(state, s.role, s.text, s.start, s.end, s.final, rt.models, asr=asr)
        entry = redact_obj(result.entry)  # nothing personal is stored, returned or logged
        entry["key"] = key
        entry["source"] = "asr" if asr else "platform"
        if asr:
            entry["confidence"] = s.confidence  # type: ignore[attr-defined]
            entry["wall_s"] = round(time.time(), 3)  # when it was applied (start/end: call time)
        if s.id:
            entry["id"] = redact(s.id)
        if s.final and s.id:
            state.final_ids = [*state.final_ids, key][-MAX_FINAL_IDS:]
        rec.state = redact_call_state(state_dict(state))
        if s.final:
            if not rt.store.save_call(rec, expected):
                return None
            obs.stage_change(level_before, rec.state)
        stored_entry = entry
        if result.alerts:  # kept with the utterance so that a retry re-delivers them
            stored_entry = {**entry, STORED_ALERTS: redact_obj([a.to_dict() for a in result.alerts])}
        rt.store.put_transcript(call_id, key, stored_entry, tenant=tenant)
        stored = [a for a in (store_alert(rt, rec, a) for a in result.alerts) if a is not None]
        view = public_view(state, rt.models.fusion)
        return {"call_id": call_id, "duplicate": False, **_top(view), "alerts": stored, "utterance": entry,
                "state": view, **({"asr_stopped": True} if stopped else {})}

    return retry_cas(attempt, f"transcript of call {call_id!r}", call_id=call_id)


async def ingest_transcript(rt: Runtime, call_id: str, snippet: Snippet, *, tenant: str,
                            executor: Executor | None = None) -> dict[str, Any]:
    """Apply a snippet under the call's lock, in the analysis threads (or ``executor``)."""
    async with rt.lock_for(call_id):
        if executor is None:
            out = await rt.run(_apply, rt, call_id, tenant, snippet)
        else:
            out = await asyncio.get_running_loop().run_in_executor(executor, _apply, rt, call_id, tenant, snippet)
    if out.pop("asr_stopped", False) and getattr(rt, "asr", None) is not None:
        rt.asr.stop(call_id, tenant)  # auto mode: the platform sends transcripts for this call now
    if out.get("alerts"):
        await rt.alerts.notify()
    return out


async def ingest_asr(rt: Runtime, call_id: str, snippet: AsrSnippet, *, tenant: str,
                     executor: Executor | None = None) -> dict[str, Any]:
    """A recognised utterance (live ASR) through the transcript path (in ``executor``: live ASR's own thread, so
    a burst of transcripts never queues before audio analysis); ``{"dropped": why}`` when it is not applied (ASR
    stopped for the call, or a platform transcript covers its span)."""
    return await ingest_transcript(rt, call_id, snippet, tenant=tenant, executor=executor)
