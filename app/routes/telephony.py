"""Native telephony endpoints: Twilio Media Streams, Genesys AudioHook, FreeSWITCH fork (WebSockets), and the
allocation of Asterisk AudioSocket sessions and RTP legs.  The protocols are :mod:`app.telephony`; the streaming
core is :mod:`app.services.stream`; the README section "Connect your telephony platform" shows each platform's side.
"""
from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from app.deps import CallId, Principal, RequireRoles, require_roles
from app.errors import COMMON, WITH_BODY, AuthError, ForbiddenError, RateLimitedError, error_body, responses
from app.schemas import StreamAllocation
from app.security.roles import ADMIN, INGEST
from app.services.stream import telephony
from app.services.telephony import PlatformCall, TelephonyRuntime, parse_roles
from app.telephony.audiohook import AudioHookSession
from app.telephony.events import CallStarted, Output, ProtocolError
from app.telephony.fork import ForkSession
from app.telephony.twilio import TwilioSession
from pipelines.errors import NuqiError

logger = logging.getLogger("nuqi.routes.telephony")
router = APIRouter(tags=["telephony"], responses=responses(*COMMON, *WITH_BODY, 404, 409))
INGEST_ROLES = (INGEST, ADMIN)
Ingest = Annotated[Principal, Depends(require_roles(*INGEST_ROLES))]


class KeyInStream(RequireRoles):
    """``require_roles`` for a platform that cannot send a key with the WebSocket handshake (Twilio: no headers,
    no query string): a key that comes with the handshake is checked there; without one the handshake is
    accepted and the route checks the key the stream's first message carries before any audio is analysed."""

    async def __call__(self, conn: HTTPConnection) -> Principal | None:  # type: ignore[override]
        if getattr(conn.state, "principal", None) is None and getattr(conn.state, "auth_error", None) is None \
                and getattr(conn.app.state, "security", None) is not None:
            return None
        return await super().__call__(conn)


async def _check_key(conn: HTTPConnection, who: Principal | None, raw_key: str | None) -> Principal:
    """The handshake's principal, or the one of a key the platform sent inside the stream."""
    if who is None:
        from app.security.auth import _authenticate  # the middleware's own check: key, rate, failures

        if not raw_key:
            raise AuthError("an API key is required: send it as the stream's api_key parameter")
        who, err = await _authenticate(conn.app.state.security, conn.scope, raw_key)
        if err is not None:
            raise err
        assert who is not None
    if who.role not in INGEST_ROLES:
        raise ForbiddenError(f"role {who.role!r} may not stream audio; allowed: {', '.join(INGEST_ROLES)}",
                             role=who.role)
    return who


def _runtime(conn: HTTPConnection) -> Any:
    return conn.app.state.runtime


def _security(conn: HTTPConnection) -> Any:
    """The app's SecurityRuntime: a stream's key is checked again while it lives (``app.security.streams``)."""
    return getattr(conn.app.state, "security", None)


async def _pump(ws: WebSocket, call: PlatformCall, feed_text: Any, feed_binary: Any, *,
                on_close_end: bool = False) -> None:
    """Read the platform's messages into its protocol session and the call until it ends or disconnects."""
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                if on_close_end and msg.get("code", 1000) in (1000, 1001):  # a clean close is the end of the call
                    call.send = None  # the socket is gone
                    await call.end("close")
                break
            try:
                if call.session is not None:
                    call.session.check_rate()
                if msg.get("bytes") is not None:
                    if feed_binary is None:
                        raise ProtocolError(f"{call.platform} sends text messages, not binary ones", field="body")
                    out: Output = feed_binary(msg["bytes"])
                else:
                    out = feed_text(msg.get("text") or "")
                await call.handle(out.events)
                for reply in out.replies:
                    await ws.send_text(reply)
                if out.close or call.ended:
                    await ws.close()
                    break
            except NuqiError as exc:
                call.log_error(exc, f"stream {call.session.call_id if call.session else '?'}")
                if isinstance(exc, (AuthError, ForbiddenError)) or (  # also a key revoked while the stream lived
                        isinstance(exc, RateLimitedError) and "ahead of real time" in exc.message):
                    await ws.close(code=1008, reason=exc.message[:120])
                    break
    except WebSocketDisconnect:
        pass
    finally:
        await call.close()


# --------------------------------------------------------------------------- Twilio Media Streams
@router.websocket("/v1/telephony/twilio")
async def twilio(websocket: WebSocket,
                 who: Annotated[Principal | None, Depends(KeyInStream(INGEST_ROLES))]) -> None:
    """Twilio Media Streams (``<Start><Stream url=... track="both_tracks">``): ``start.callSid`` is the call id,
    ``start.customParameters`` carry ``agent_id`` and (Twilio sends no headers) ``api_key``; ``inbound`` = customer,
    ``outbound`` = agent (``NUQI_TWILIO_TRACK_ROLES``); ``stop`` ends the call.  nuqi sends nothing back."""
    rt = _runtime(websocket)
    session = TwilioSession(parse_roles(telephony(rt.settings).twilio_track_roles, "twilio_track_roles"))

    async def authorize(ev: CallStarted) -> Principal:
        return await _check_key(websocket, who, session.api_key)

    await websocket.accept()
    call = PlatformCall(rt, "twilio", authorize, security=_security(websocket))
    await _pump(websocket, call, session.feed, None)


# --------------------------------------------------------------------------- Genesys AudioHook
@router.websocket("/v1/telephony/audiohook")
async def audiohook(websocket: WebSocket, who: Ingest) -> None:
    """Genesys Cloud AudioHook protocol v2; the key is the ``X-API-KEY`` header AudioHook sends.  ``open`` ->
    ``opened`` (PCMU 8 kHz, ``external`` = customer, ``internal`` = agent), ``ping`` -> ``pong``, ``close`` ->
    ``closed`` (the call ends); call id = ``conversationId``."""
    rt = _runtime(websocket)
    session = AudioHookSession(parse_roles(telephony(rt.settings).audiohook_channel_roles, "audiohook_channel_roles"))

    async def authorize(ev: CallStarted) -> Principal:
        return who

    await websocket.accept()
    call = PlatformCall(rt, "audiohook", authorize, security=_security(websocket))
    await _pump(websocket, call, session.feed_text, session.feed_binary)


# --------------------------------------------------------------------------- FreeSWITCH fork
@router.websocket("/v1/telephony/fork")
async def fork(websocket: WebSocket, who: Ingest, call_id: str | None = None, sample_rate: str | None = None,
               channels: int | None = None, channel_map: str | None = None, agent_id: str | None = None,
               role: str = "customer") -> None:
    """FreeSWITCH ``mod_audio_fork`` / ``mod_audio_stream``: optional JSON metadata text frame, then binary L16
    (mono, or stereo caller/customer left); call id, rate, channels, channel map from the query or the metadata.
    A clean close ends the call; a dropped connection keeps the buffered audio for a reconnect."""
    rt = _runtime(websocket)
    await websocket.accept()
    try:
        rate = None
        if sample_rate:
            s = sample_rate.lower()
            rate = int(s.removesuffix("k")) * (1000 if s.endswith("k") else 1)
        session = ForkSession(call_id=call_id, sample_rate=rate, channels=channels, channel_map=channel_map,
                              role=role, agent_id=agent_id)
    except (ValueError, NuqiError) as exc:
        msg = exc.message if isinstance(exc, NuqiError) else f"bad query: {exc}"
        await websocket.send_json(error_body("invalid_request", msg))
        await websocket.close(code=1008)
        return

    async def authorize(ev: CallStarted) -> Principal:
        return who

    call = PlatformCall(rt, "fork", authorize, send=websocket.send_json, security=_security(websocket))
    await _pump(websocket, call, session.feed_text, session.feed_binary, on_close_end=True)


# --------------------------------------------------------------------------- AudioSocket, RTP allocations
class AudioSocketRequest(BaseModel):
    role: Literal["customer", "agent"] = "customer"
    agent_id: str | None = Field(None, max_length=128)


class RtpRequest(BaseModel):
    role: Literal["customer", "agent"] = "customer"
    codec: Literal["pcmu", "pcma", "l16"] = "pcmu"
    agent_id: str | None = Field(None, max_length=128)
    source_host: str | None = Field(None, max_length=64, description="only take packets from this address")


def _telephony_runtime(request: Request) -> TelephonyRuntime:
    tr: TelephonyRuntime | None = getattr(request.app.state, "telephony", None)
    if tr is None:
        from app.errors import NotReadyError

        raise NotReadyError("the service is starting; telephony listeners are not up yet")
    return tr


@router.post("/v1/calls/{call_id}/audiosocket", response_model=StreamAllocation, response_model_exclude_none=True,
             summary="Allocate an Asterisk AudioSocket session for a call leg (returns the UUID to use)")
async def allocate_audiosocket(call_id: CallId, request: Request, who: Ingest,
                               body: AudioSocketRequest = Body(default_factory=AudioSocketRequest)) -> dict:
    out = _telephony_runtime(request).allocate_audiosocket(call_id, body.role, who, body.agent_id)
    out["host"] = telephony(request.app.state.runtime.settings).rtp_public_host or request.url.hostname
    return out


@router.post("/v1/calls/{call_id}/rtp", response_model=StreamAllocation, response_model_exclude_none=True,
             summary="Allocate a UDP port for an RTP leg of a call (PCMU, PCMA or L16)")
async def allocate_rtp(call_id: CallId, request: Request, who: Ingest, body: RtpRequest = Body(...)) -> dict:
    tel = telephony(request.app.state.runtime.settings)
    return await _telephony_runtime(request).allocate_rtp(call_id, body.role, body.codec, who, body.agent_id,
                                                          body.source_host, tel.rtp_public_host or request.url.hostname)
