"""Call ingest: ordering by ``seq``, idempotency, compare-and-set commits, alert persistence.

Per chunk: decode (pure; a bad chunk never touches state) → load the call's state →
wait briefly for a missing predecessor (another worker may be processing it) →
analyse → commit state + timeline entry with a version check → persist alerts.  Lost
compare-and-set races are retried within one bound (:mod:`app.services.cas`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from app import observability as obs
from app.runtime import Runtime
from app.services.cas import RETRY_SLEEP_S, CasRetry, retry_cas
from app.store import CallRecord
from pipelines.asr import admission as live_asr
from pipelines.audio.decode import ChunkFormat, DecodedChunk, decode_chunk
from pipelines.errors import ConflictError, InputError, NotFoundError
from pipelines.fusion import CallAlert
from pipelines.pii import redact_meta, redact_obj
from pipelines.session import CallState, ChunkResult, process_audio, public_view, summarize

logger = logging.getLogger("nuqi.calls")

MAX_SEQ = 10**9
# field of a stored timeline entry that holds the chunk's alerts (re-delivered when the chunk is retried);
# never sent to clients.  The name is part of the stored format: calls stored earlier carry it too.
STORED_ALERTS = "_alerts"


def state_dict(state: CallState) -> dict[str, Any]:
    """``state.state_dict()`` without ``dataclasses.asdict``'s deep copy (~1 ms, a tenth of a chunk's CPU):
    dataclasses become dicts (also inside dict values), plain containers are shared, not copied.  Only for a
    state that is serialised and then dropped, as here."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, dict) and any(dataclasses.is_dataclass(x) for x in v.values()):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(state)


def _new_record(call_id: str, tenant: str, agent_id: str | None, meta: dict[str, Any] | None = None) -> CallRecord:
    return CallRecord(call_id=call_id, tenant=tenant, agent_id=agent_id, meta=dict(meta or {}),
                      state=CallState().state_dict())


def ensure_call(rt: Runtime, call_id: str, tenant: str, agent_id: str | None,
                meta: dict[str, Any] | None = None, asr: str | None = None) -> CallRecord:
    """Get or create the call; bind the agent if it was not bound yet; keep a live-ASR override (``asr=on|off``)
    for the call's first analysed audio (ignored once that has decided)."""
    if meta:  # nothing personal is stored or returned: every value masked but the kept fields (settings)
        meta = redact_meta(meta, rt.settings.security.pii_keep_meta_fields)
    rec = rt.store.get_call(call_id, tenant=tenant)  # calls are the tenant's own: another's id is another call
    if rec is None:
        rt.store.create_call(_new_record(call_id, tenant, agent_id, meta))
        rec = rt.store.get_call(call_id, tenant=tenant)
        assert rec is not None
    asr_first = asr is not None and not (rec.state.get("asr") or {}).get("status")
    if (agent_id and rec.agent_id != agent_id) or meta or asr_first:
        current = rec

        def bind() -> CallRecord | None:
            nonlocal current
            if agent_id:
                current.agent_id = agent_id
            current.meta.update(meta or {})
            if asr is not None:
                current.state["asr"] = live_asr.note_request(current.state.get("asr") or {}, asr)
            if rt.store.save_call(current, current.version):
                return current
            current = rt.store.get_call(call_id, tenant=tenant) or current
            return None

        rec = retry_cas(bind, f"binding call {call_id!r}", call_id=call_id)
    return rec


def get_call(rt: Runtime, call_id: str, tenant: str) -> CallRecord:
    rec = rt.store.get_call(call_id, tenant=tenant)
    if rec is None:
        raise NotFoundError(f"call {call_id!r} not found", call_id=call_id)
    return rec


def _stored_entry(result: ChunkResult) -> dict[str, Any]:
    """The timeline entry as stored: with the chunk's alerts (redacted) when it raised any."""
    if not result.alerts:
        return result.entry
    return {**result.entry, STORED_ALERTS: redact_obj([a.to_dict() for a in result.alerts])}


def _public_entry(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if k != STORED_ALERTS}


def _attempt(rt: Runtime, call_id: str, tenant: str, agent_id: str | None, seq: int, chunk: DecodedChunk,
             start_s: float | None, waited: float, asr: str | None = None) -> tuple[str, dict[str, Any] | None]:
    """One try at applying a chunk. Returns ("done", response) or ("wait"|"retry", None)."""
    rec = ensure_call(rt, call_id, tenant, agent_id)
    if rec.status == "ended":
        raise ConflictError(f"call {call_id!r} has ended; no more audio is accepted", call_id=call_id)
    # a stored entry for seq implies last_seq >= seq (entry and state commit together): a new chunk skips the read
    stored = rt.store.get_chunk(call_id, seq, tenant=tenant) if seq <= int(rec.state.get("last_seq", -1)) else None
    if stored is not None:  # a retry: re-deliver the chunk's alerts (dedup keys keep this idempotent), so an
        # alert is never lost when a worker died between committing the chunk and storing its alerts
        alerts = [CallAlert.from_dict(a) for a in stored.get(STORED_ALERTS, [])]
        redelivered = [a for a in (store_alert(rt, rec, a) for a in alerts) if a is not None]
        return "done", {**_public_entry(stored), "duplicate": True, "alerts": redelivered}
    state = CallState.from_state(rec.state)
    if seq <= state.last_seq:
        raise ConflictError(
            f"chunk seq {seq} arrived after seq {state.last_seq} was processed; it was recorded as a gap",
            call_id=call_id, seq=seq, last_seq=state.last_seq,
        )
    if seq > state.last_seq + 1 and waited < rt.settings.ingest.gap_wait_s:  # also a new call's seq 1 waits for its seq 0
        return "wait", None
    expected = rec.version
    level_before = obs.stage_level(rec.state)
    with obs.inference("audio"):
        result = process_audio(state, chunk, seq, rt.models, start_s)
    result.entry["wall_s"] = round(time.time(), 3)  # when it was analysed (t_start/t_end: media time)
    decide_asr(rt, call_id, tenant, state, asr)
    rec.state = state_dict(state)
    if not rt.store.commit_chunk(rec, expected, seq, _stored_entry(result)):
        return "retry", None
    feed_asr(rt, call_id, tenant, state, chunk, result.entry["t_start"])
    obs.stage_change(level_before, rec.state)
    stored_alerts = [a for a in (store_alert(rt, rec, a) for a in result.alerts) if a is not None]
    return "done", {**result.entry, "duplicate": False, "alerts": stored_alerts, "gaps": state.gaps}


def decide_asr(rt: Runtime, call_id: str, tenant: str, state: CallState, override: str | None) -> None:
    """Before a call's first analysed audio is committed: its live-ASR status (``state.asr``; kept after)."""
    if rt.asr is not None and not state.asr.get("status"):
        state.asr = rt.asr.decide(call_id, tenant, state.asr, override)


def feed_asr(rt: Runtime, call_id: str, tenant: str, state: CallState, chunk: DecodedChunk, t_start: float) -> None:
    """After an analysed window is committed: its audio to live ASR when the call has it (never blocks)."""
    if rt.asr is not None and state.asr.get("status") == live_asr.ADMITTED:
        rt.asr.feed(call_id, tenant, chunk, t_start)


def store_alert(rt: Runtime, rec: CallRecord, alert: CallAlert) -> dict[str, Any] | None:
    """Persist an alert (idempotent by its dedup key); its stored JSON, or None when it was stored before."""
    data = alert.to_dict()
    payload = redact_obj({k: v for k, v in data.items() if k not in ("level", "kind", "dedup_key")})
    stored = rt.store.add_alert(rec.call_id, rec.tenant, rec.agent_id, alert.level, alert.kind,
                                payload, f"{rec.call_id}:{alert.dedup_key}")
    obs.alert_raised(data if stored else None)
    return stored.to_dict() if stored else None


class _Progress:
    """This worker's chunks in flight for one call, and an event set whenever one of them commits."""

    def __init__(self) -> None:
        self.inflight: set[int] = set()
        self.event = asyncio.Event()

    def committed(self) -> None:
        self.event.set()
        self.event = asyncio.Event()


_PROGRESS: dict[tuple[int, str, str], _Progress] = {}  # (id(runtime), tenant, call_id): one event loop per runtime


async def ingest_audio(rt: Runtime, call_id: str, body: bytes, fmt: ChunkFormat, seq: int, *,
                       tenant: str, agent_id: str | None = None, start_s: float | None = None,
                       asr: str | None = None) -> dict[str, Any]:
    t_request = time.perf_counter()
    if not 0 <= seq <= MAX_SEQ:  # also guards the X-Seq header and the WebSocket's seq, which carry no bound
        raise InputError(f"seq must be between 0 and {MAX_SEQ}", field="seq", seq=str(seq)[:32])
    decoded: list[DecodedChunk] = []

    def attempt(waited: float) -> tuple[str, dict[str, Any] | None]:
        if not decoded:  # decoded in the same thread hop as the first attempt (a bad chunk never touches state)
            decoded.append(decode_chunk(body, fmt, max_seconds=rt.settings.ingest.max_chunk_seconds,
                                        allow_silence=True))
        return _attempt(rt, call_id, tenant, agent_id, seq, decoded[0], start_s, waited, asr)

    key = (id(rt), tenant, call_id)
    progress = _PROGRESS.setdefault(key, _Progress())
    progress.inflight.add(seq)
    t0 = time.monotonic()
    polls = 0
    races = CasRetry(f"chunk {seq} of call {call_id!r}", call_id=call_id, seq=seq)
    try:
        while True:
            # a predecessor in flight in this worker will come (however loaded we are): never record it as a gap
            local_predecessor = seq - 1 in progress.inflight
            waited = 0.0 if local_predecessor else time.monotonic() - t0
            async with rt.lock_for(call_id):  # held per attempt only, so a predecessor can get in
                outcome, result = await rt.run(attempt, waited)
            if outcome == "done":
                assert result is not None
                progress.committed()
                if result.get("alerts"):
                    await rt.alerts.notify()
                obs.observe_chunk(time.perf_counter() - t_request)
                return {"call_id": call_id, **result}
            if outcome == "wait":  # woken by a commit here, or poll (backing off) for one on another worker
                polls += 1
                timeout = 2.0 if local_predecessor else min(0.4, RETRY_SLEEP_S * 2 ** polls)
                try:
                    await asyncio.wait_for(progress.event.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            else:  # another worker committed first: re-read and analyse again
                await races.lose_and_wait_async()
    finally:
        progress.inflight.discard(seq)
        if not progress.inflight and _PROGRESS.get(key) is progress:
            del _PROGRESS[key]


def call_view(rt: Runtime, call_id: str, tenant: str, timeline: bool = True) -> dict[str, Any]:
    rec = get_call(rt, call_id, tenant)
    state = CallState.from_state(rec.state)
    view: dict[str, Any] = {
        "call_id": rec.call_id, "agent_id": rec.agent_id, "status": rec.status, "meta": rec.meta,
        "created_at": rec.created_at, "updated_at": rec.updated_at,
        "state": public_view(state, rt.models.fusion), "summary": rec.summary,
    }
    if timeline:
        view["timeline"] = [_public_entry(e) for e in rt.store.list_chunks(call_id, tenant=tenant)]
        view["transcripts"] = [_public_entry(t) for t in rt.store.list_transcripts(call_id, tenant=tenant)]
    return view


def end_call(rt: Runtime, call_id: str, tenant: str) -> dict[str, Any]:
    """Mark the call ended (idempotent) and store its summary."""

    def attempt() -> dict[str, Any] | None:
        rec = get_call(rt, call_id, tenant)
        if rec.status == "ended" and rec.summary is not None:
            return {"call_id": call_id, "status": "ended", "summary": rec.summary}
        state = CallState.from_state(rec.state)
        expected = rec.version
        rec.summary = summarize(state, rt.store.list_chunks(call_id, tenant=tenant), rt.models.fusion)
        rec.status = "ended"
        rec.state = state.state_dict()
        ttl = rt.settings.store.ended_call_detail_ttl_s
        if rt.store.save_call(rec, expected, detail_ttl_s=ttl if ttl > 0 else None):
            return {"call_id": call_id, "status": "ended", "summary": rec.summary}
        return None

    return retry_cas(attempt, f"ending call {call_id!r}", call_id=call_id)
