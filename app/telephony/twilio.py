"""Twilio Media Streams: the JSON text messages Twilio sends over the WebSocket -> typed events.

Reference: Twilio, "Media Streams - WebSocket Messages" (twilio.com/docs/voice/media-streams/websocket-messages)
and "TwiML Voice: <Stream>" (twilio.com/docs/voice/twiml/stream); pipecat's ``TwilioFrameSerializer``
(pipecat-ai/pipecat, src/pipecat/serializers/twilio.py) was read for the same message shapes.

Messages from Twilio (every one but ``connected`` carries ``sequenceNumber``, a string counting messages of
the whole stream, and ``streamSid``):

* ``connected`` -- ``{"event": "connected", "protocol": "Call", "version": "1.0.0"}``
* ``start`` -- ``start.callSid`` (the call id), ``start.streamSid``, ``start.tracks``, ``start.customParameters``
  (``<Parameter name="agent_id" value="..."/>`` in the TwiML gives ``agent_id``), ``start.mediaFormat``
  (``{"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}``)
* ``media`` -- ``media.track`` (``inbound``: the caller, ``outbound``: what Twilio plays/bridges to the caller),
  ``media.chunk`` (string, counts from "1" per track: the leg's sequence number), ``media.timestamp``
  (string, ms since the stream started, shared by both tracks: the call's media clock), ``media.payload``
  (base64 mu-law 8 kHz mono, no header)
* ``dtmf`` -- ``dtmf.track``, ``dtmf.digit``;  ``mark`` -- ``mark.name``;  ``stop`` -- the stream (call) ended

Twilio cannot add headers to the WebSocket request and ``<Stream url>`` takes no query string, so a nuqi key is
passed as ``<Parameter name="api_key" .../>``: it is kept in ``TwilioSession.api_key`` (for the route to check
before analysing audio) and removed from the event metadata.

nuqi only listens, so it sends nothing back (a bidirectional ``<Connect><Stream>`` is not needed; use
``<Start><Stream track="both_tracks">``).  Track -> role is configurable (default inbound = customer,
outbound = agent: the usual inbound contact-centre call).
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from app.telephony.events import (
    CallEnded,
    CallStarted,
    Dtmf,
    LegFrame,
    Mark,
    Notice,
    Output,
    ProtocolError,
    ulaw_to_pcm16,
)
from pipelines.errors import UnsupportedAudioError

RATE = 8000
DEFAULT_TRACK_ROLES = {"inbound": "customer", "outbound": "agent"}


class TwilioSession:
    """One Media Streams WebSocket connection.  ``feed(text)`` per text message; binary messages are an error."""

    def __init__(self, track_roles: dict[str, str] | None = None) -> None:
        self.track_roles = dict(track_roles or DEFAULT_TRACK_ROLES)
        self.call_id: str | None = None
        self.stream_sid: str | None = None
        self.agent_id: str | None = None
        self.api_key: str | None = None
        self.started = False
        self.ended = False
        self.last_sequence = 0
        self.frames = 0

    def feed(self, text: str | bytes) -> Output:
        if isinstance(text, (bytes, bytearray)):
            raise ProtocolError("Twilio Media Streams sends JSON text messages, not binary ones", field="body")
        try:
            msg = json.loads(text)
        except ValueError:
            raise ProtocolError("message is not valid JSON", field="body") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
            raise ProtocolError("message has no 'event' field", field="event")
        seq = msg.get("sequenceNumber")
        if seq is not None:
            self.last_sequence = _int(seq, "sequenceNumber")
        event = msg["event"]
        handler = getattr(self, f"_on_{event}", None)
        if handler is None:
            return Output([Notice("twilio_unknown_event", {"event": event})])
        if self.ended:
            raise ProtocolError(f"'{event}' after 'stop': the stream has ended", field="event")
        return handler(msg)

    # ------------------------------------------------------------------ events
    def _on_connected(self, msg: dict[str, Any]) -> Output:
        return Output([Notice("connected", {"protocol": msg.get("protocol"), "version": msg.get("version")})])

    def _on_start(self, msg: dict[str, Any]) -> Output:
        start = _obj(msg, "start")
        call_sid = start.get("callSid")
        if not isinstance(call_sid, str) or not call_sid:
            raise ProtocolError("start.callSid is missing", field="start.callSid")
        fmt = start.get("mediaFormat") or {}
        encoding = str(fmt.get("encoding", "audio/x-mulaw")).lower()
        rate = _int(fmt.get("sampleRate", RATE), "start.mediaFormat.sampleRate")
        channels = _int(fmt.get("channels", 1), "start.mediaFormat.channels")
        if encoding != "audio/x-mulaw" or rate != RATE or channels != 1:
            raise UnsupportedAudioError(
                f"mediaFormat {encoding} {rate} Hz x{channels}: Media Streams sends audio/x-mulaw 8000 Hz mono",
                field="start.mediaFormat")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError("start.customParameters must be an object", field="start.customParameters")
        self.call_id, self.stream_sid = call_sid, start.get("streamSid") or msg.get("streamSid")
        self.agent_id = params.get("agent_id") or None
        self.api_key = params.get("api_key") or None  # Twilio sends no custom headers: the key rides here
        params = {k: v for k, v in params.items() if k != "api_key"}  # never into metadata / logs
        self.started = True
        tracks = start.get("tracks") or ["inbound"]
        roles = tuple(dict.fromkeys(self.track_roles[t] for t in tracks if t in self.track_roles))
        meta = {"stream_sid": self.stream_sid, "account_sid": start.get("accountSid"), "tracks": tracks,
                "custom_parameters": params}
        return Output([CallStarted(call_sid, "twilio", RATE, roles, self.agent_id, meta)])

    def _on_media(self, msg: dict[str, Any]) -> Output:
        if not self.started:
            raise ProtocolError("'media' before 'start'", field="event")
        media = _obj(msg, "media")
        track = media.get("track", "inbound")
        role = self.track_roles.get(track)
        if role is None:
            return Output([Notice("twilio_unmapped_track", {"track": track})])
        try:
            payload = base64.b64decode(media.get("payload") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ProtocolError("media.payload is not valid base64", field="media.payload") from None
        if not payload:
            return Output()
        chunk = media.get("chunk")
        ts_ms = media.get("timestamp")
        self.frames += 1
        frame = LegFrame(
            role=role, samples=ulaw_to_pcm16(payload), sample_rate=RATE,
            seq=None if chunk is None else _int(chunk, "media.chunk"),
            ts=None if ts_ms is None else _int(ts_ms, "media.timestamp") * RATE // 1000,
            ts_clock="call",
        )
        return Output([frame])

    def _on_dtmf(self, msg: dict[str, Any]) -> Output:
        d = _obj(msg, "dtmf")
        track = str(d.get("track", "inbound_track")).removesuffix("_track")
        return Output([Dtmf(str(d.get("digit", "")), self.track_roles.get(track))])

    def _on_mark(self, msg: dict[str, Any]) -> Output:
        return Output([Mark(str(_obj(msg, "mark").get("name", "")))])

    def _on_stop(self, msg: dict[str, Any]) -> Output:
        self.ended = True
        return Output([CallEnded("stop")], close=True)


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    v = msg.get(key)
    if not isinstance(v, dict):
        raise ProtocolError(f"'{msg.get('event')}' message has no '{key}' object", field=key)
    return v


def _int(v: Any, name: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ProtocolError(f"{name} must be an integer (or its string), got {v!r}", field=name) from None
