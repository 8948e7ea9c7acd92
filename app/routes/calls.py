"""Live call ingest: audio chunks over HTTP or WebSocket, call state, end of call."""
from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from app.deps import CallId, Principal, RuntimeDep, check_call_id, require_roles
from app.errors import COMMON, WITH_BODY, AuthError, RateLimitedError, error_body, responses, status_for
from app.schemas import (
    CallEnded,
    CallInfo,
    CallMeta,
    CallView,
    ChunkResult,
    FramesResult,
    TranscriptIn,
    TranscriptResult,
)
from app.security.roles import ADMIN, AGENT, INGEST, QA, SUPERVISOR
from app.security.streams import ConnectionGuard, audio_cost
from app.services import calls as svc
from app.services import stream as stream_svc
from app.services.telephony import all_legs_ended
from app.services.transcripts import ingest_transcript
from pipelines.audio.decode import ChunkFormat, parse_channel_map
from pipelines.errors import ChunkTooLargeError, InputError, NuqiError

logger = logging.getLogger("nuqi.routes.calls")
router = APIRouter(prefix="/v1/calls", tags=["calls"], responses=responses(*COMMON, *WITH_BODY, 404, 409))

Ingest = Annotated[Principal, Depends(require_roles(INGEST, ADMIN))]
AsrOverride = Annotated[Literal["on", "off"] | None, Query(
    description="live ASR of this call (on the call's first chunk; default: the service's NUQI_LIVE_ASR)")]
# agents read only the calls bound to them (another agent's call is a 404)
Reader = Annotated[Principal, Depends(require_roles(AGENT, SUPERVISOR, QA, ADMIN, agent_own_call=True))]


def _format(sample_rate: int | None, encoding: str | None, role: str | None, channels: int | None,
            channel_map: str | None) -> ChunkFormat:
    return ChunkFormat(encoding=encoding, sample_rate=sample_rate, channels=channels,
                       role=(role or "customer").lower(), channel_map=parse_channel_map(channel_map))


def _as_json(model: type[BaseModel], out: Any) -> dict[str, Any]:
    """A service result as the JSON body the HTTP endpoint with ``response_model=model`` returns."""
    return model.model_validate(out, from_attributes=True).model_dump(mode="json", exclude_unset=True)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ChunkTooLargeError(f"request body of {declared} bytes exceeds the {limit}-byte limit", field="body")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ChunkTooLargeError(f"request body exceeds the {limit}-byte limit", field="body")
    return bytes(body)


@router.post(
    "/{call_id}/audio",
    summary="Ingest one audio chunk of a live call",
    description=(
        "Body: one chunk as raw PCM s16le, G.711 µ-law/A-law or a WAV file. A call is created on its first chunk. "
        "Whole chunks (the window, 1 s, or longer): `seq` must increase by one per chunk: a repeated `seq` returns "
        "the stored result (idempotent), a gap is recorded. Shorter frames (from 10 ms; or `mode=frames`) are "
        "buffered per call and leg into the same windows; each leg (`role`) has its own `seq` space, a lost `seq` "
        "becomes silence, and the answer lists the windows completed (possibly none) and what is buffered. "
        "Digital silence (hold, mute) is valid audio. Parameters may also be sent as headers X-Sample-Rate, X-Encoding, X-Role, X-Channel-Map, X-Seq, "
        "X-Agent-Id. Response: per role `features`, `delta` (vs the speaker's opening baseline, null until ready), "
        "`anger.acoustic` in [0,1], and the fused assessment/stage."
    ),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "audio/wav": {"schema": {"type": "string", "format": "binary"}}}}},
    response_model=ChunkResult | FramesResult,
    response_model_exclude_unset=True,
)
async def post_audio(
    call_id: CallId, request: Request, rt: RuntimeDep, who: Ingest,
    seq: Annotated[int | None, Query(ge=0, le=10**9, description="chunk (or frame) sequence number, 0-based")] = None,
    sample_rate: Annotated[int | None, Query(ge=1, le=10**6, description="Hz; required for raw PCM/G.711")] = None,
    encoding: Annotated[str | None, Query(description="wav | pcm_s16le | mulaw | alaw (default: sniffed)")] = None,
    role: Annotated[str | None, Query(description="customer | agent, for mono chunks")] = None,
    channels: Annotated[int | None, Query(ge=1, le=8, description="raw audio channel count")] = None,
    channel_map: Annotated[str | None, Query(description="stereo roles, e.g. 'agent,customer' (default)")] = None,
    agent_id: Annotated[str | None, Query(max_length=128)] = None,
    start: Annotated[float | None, Query(ge=0, le=86400, description="chunk start, seconds into the call (frames: "
                                                                     "media time of the leg's first frame)")] = None,
    mode: Annotated[Literal["auto", "frames", "chunks"], Query(
        description="frames: buffer into the call's analysis windows (per-leg sequence numbers); chunks: analyse "
                    "this chunk as it is; auto (default): frames for a chunk shorter than the window or a call "
                    "already streamed in frames")] = "auto",
    x_sample_rate: Annotated[int | None, Header()] = None,
    x_encoding: Annotated[str | None, Header()] = None,
    x_role: Annotated[str | None, Header()] = None,
    x_channel_map: Annotated[str | None, Header()] = None,
    x_seq: Annotated[int | None, Header()] = None,
    x_agent_id: Annotated[str | None, Header()] = None,
    asr: AsrOverride = None,
) -> dict:
    fmt = _format(sample_rate or x_sample_rate, encoding or x_encoding, role or x_role, channels,
                  channel_map or x_channel_map)
    seq = seq if seq is not None else x_seq
    if seq is not None and not 0 <= seq <= svc.MAX_SEQ:
        raise InputError(f"seq must be between 0 and {svc.MAX_SEQ}", field="seq", seq=str(seq)[:32])
    body = await _read_body(request, rt.settings.ingest.max_body_bytes)
    agent = agent_id or x_agent_id or who.agent_id
    if mode != "chunks":
        chunk = await rt.run(stream_svc.as_frame, rt, call_id, who.tenant, body, fmt, mode == "frames")
        if chunk is not None:
            return await stream_svc.post_frames(rt, call_id, chunk, seq, tenant=who.tenant, agent_id=agent,
                                                anchor_s=start, asr=asr)
    if seq is None:
        raise InputError("seq is required (query ?seq= or header X-Seq): chunks are ordered by it", field="seq")
    return await svc.ingest_audio(rt, call_id, body, fmt, seq, tenant=who.tenant, agent_id=agent, start_s=start,
                                  asr=asr)


@router.post("/{call_id}", response_model=CallInfo, summary="Create a call or set its metadata (binds the agent)")
async def put_meta(call_id: CallId, rt: RuntimeDep, who: Ingest, meta: CallMeta = Body(...)) -> dict:
    rec = await rt.run(svc.ensure_call, rt, call_id, who.tenant, meta.agent_id, meta.meta, meta.asr)
    out = {"call_id": rec.call_id, "agent_id": rec.agent_id, "status": rec.status, "meta": rec.meta}
    asr = rec.state.get("asr") or {}
    if asr.get("status") or asr.get("requested"):
        out["asr"] = asr.get("status") or f"requested: {asr['requested']}"
    return out


@router.get("/{call_id}", response_model=CallView, response_model_exclude_unset=True,
            summary="Call state and per-chunk timeline")
async def get_call(call_id: CallId, rt: RuntimeDep, who: Reader,
                   timeline: Annotated[bool, Query(description="include the per-chunk timeline")] = True) -> dict:
    return await rt.run(svc.call_view, rt, call_id, who.tenant, timeline)


@router.post("/{call_id}/end", response_model=CallEnded, response_model_exclude_unset=True,
            summary="End the call and return its summary")
async def end_call(call_id: CallId, rt: RuntimeDep, who: Ingest) -> dict:
    await stream_svc.flush_stored(rt, call_id, who.tenant)  # streamed legs: their last buffered audio
    return await stream_svc.end_live_call(rt, call_id, who.tenant)


@router.websocket("/{call_id}/stream")
async def stream(websocket: WebSocket, call_id: str, who: Ingest,
                 sample_rate: int | None = None, encoding: str | None = None, role: str | None = None,
                 channels: int | None = None, channel_map: str | None = None, agent_id: str | None = None,
                 seq: int | None = None, start: float | None = None, asr: str | None = None) -> None:
    """Binary messages are audio frames of any size from 10 ms (same formats as POST .../audio; mono frames are
    the leg ``role``, stereo ones are split by ``channel_map``), buffered into the call's analysis windows; ``seq``
    numbers the first frame (default: continue the leg's numbering), ``start`` places the leg's first sample on
    the call's media clock (default: its arrival time); ``asr=on|off`` overrides live ASR for the call (before its
    first window).  Text messages are JSON transcript snippets
    ``{"type": "transcript", ...}``, ``{"type": "ping"}`` (answered ``pong`` with what each leg buffers, once
    every earlier frame was taken) or ``{"type": "end"}`` (this connection's legs end; the call ends once all its
    legs have, ``{"type": "leg_ended"}`` until then).  Sent back: one ``{"type": "analysis", ...}`` per
    completed window (media ``t_start``/``t_end``, ``wall_s``, ``lost``), ``{"type": "alert", ...}`` per alert
    raised, the transcript/end results, or ``{"error": ...}``.  A disconnect keeps the buffered audio: a
    reconnect of the leg continues it.  The key is checked again while the stream is open
    (``app.security.streams``): over the key's rate a message is refused with an error frame (``rate_limited``,
    429; a message with audio costs its duration in windows, any other one request); a revoked key closes the
    stream (an error frame, then close 1008)."""
    rt = websocket.app.state.runtime
    tenant = who.tenant
    await websocket.accept()
    try:
        check_call_id(call_id)  # after accept, so the client reads why
        fmt = _format(sample_rate, encoding, role, channels, channel_map)
        if seq is not None and not 0 <= seq <= svc.MAX_SEQ:
            raise InputError(f"seq must be between 0 and {svc.MAX_SEQ}", field="seq")
        if asr not in (None, "on", "off"):
            raise InputError("asr must be on or off", field="asr")
    except NuqiError as exc:
        await websocket.send_json(error_body(exc.code, exc.message, **exc.detail))
        await websocket.close(code=1008)
        return
    session = stream_svc.StreamSession(rt, call_id, tenant, agent_id or who.agent_id, anchor_s=start, asr=asr)
    guard = ConnectionGuard.of(websocket, who)
    window_s = stream_svc.telephony(rt.settings).stream_window_s
    next_seq = seq
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                break
            try:
                session.check_rate()
                await guard.check_key()
                if msg.get("bytes") is not None:
                    data = msg["bytes"]
                    if len(data) > rt.settings.ingest.max_body_bytes:
                        raise ChunkTooLargeError(f"frame of {len(data)} bytes exceeds the limit", field="frame")
                    chunk = stream_svc.decode_frame(rt, data, fmt)
                    await guard.spend(audio_cost(chunk.duration_s, window_s))
                    for out in await session.feed_chunk(chunk, seq=next_seq):
                        await stream_svc.send_analysis(websocket.send_json, out)
                    if next_seq is not None:
                        next_seq += 1
                else:
                    await guard.spend(1.0)
                    for out in await _text_frame(rt, session, call_id, tenant, msg.get("text") or ""):
                        await websocket.send_json(out)
            except NuqiError as exc:
                await websocket.send_json({**error_body(exc.code, exc.message, **exc.detail),
                                           "status": status_for(exc)})
                if isinstance(exc, AuthError):  # the key was revoked while the stream was open
                    await websocket.close(code=1008, reason=f"401 {exc.code}: API key revoked")
                    break
                if isinstance(exc, RateLimitedError) and "ahead of real time" in exc.message:
                    await websocket.close(code=1008)
                    break
    except WebSocketDisconnect:
        pass
    finally:
        await session.close()


async def _text_frame(rt: Any, session: stream_svc.StreamSession, call_id: str, tenant: str,
                      text: str) -> list[dict]:
    try:
        frame = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"text frame is not JSON: {exc.msg}", field="frame") from None
    if not isinstance(frame, dict):
        raise InputError("text frame must be a JSON object", field="frame")
    kind = frame.get("type", "transcript")
    if kind == "end":  # this connection's legs end (their last short window); the call once every leg has ended
        last = await session.flush()
        session.closed = True
        if session.owned and not await rt.run(all_legs_ended, rt, call_id, tenant):
            return last + [{"type": "leg_ended", "call_id": call_id, "status": "active",
                            "roles": sorted(session.owned)}]
        return last + [_as_json(CallEnded, await stream_svc.end_live_call(rt, call_id, tenant))]
    if kind == "ping":  # a sync point: every frame sent before it has been taken
        return [{"type": "pong", "call_id": call_id, "buffered_s": session.buffered_s()}]
    if kind == "transcript":
        try:
            snippet = TranscriptIn.model_validate({k: v for k, v in frame.items() if k != "type"})
        except ValueError as exc:
            raise InputError(f"transcript frame is invalid: {exc}", field="frame") from None
        return [_as_json(TranscriptResult, await ingest_transcript(rt, call_id, snippet, tenant=tenant))]
    raise InputError(f"unknown frame type {kind!r}; use 'transcript', 'ping' or 'end'", field="type")
