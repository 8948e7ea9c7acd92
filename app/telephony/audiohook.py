"""Genesys Cloud AudioHook protocol v2, server side: a session state machine over the WebSocket messages.

References: the Genesys AudioHook protocol reference (developer.genesys.cloud/devapps/audiohook) as implemented
by Genesys' own reference server (purecloudlabs/audiohook-reference-implementation:
app/audiohook/src/protocol/message.ts, core.ts, server/serversessionimpl.ts, audio/audioframe.ts), and pipecat's
``GenesysAudioHookSerializer`` (pipecat-ai/pipecat, src/pipecat/serializers/genesys.py).

Envelope: every message has ``version`` ("2"), ``type``, ``seq`` (the sender's counter, +1 per message),
``id`` (the session id the client chose) and ``parameters``; client messages also carry ``serverseq`` (the last
server seq seen) and ``position`` (ISO 8601 duration ``PT12.34S``: audio sent so far); server messages carry
``clientseq`` (the last client seq received).  Text frames are JSON control messages, binary frames are audio.

Client -> server: ``open`` (``parameters.conversationId`` = the call id, ``organizationId``, ``participant``,
``media``: the formats offered), ``ping``, ``close``, ``paused`` / ``resumed`` (``start``, ``discarded``),
``discarded`` (``start``, ``discarded``), ``update``, ``error``.  Server -> client: ``opened`` (the one media
format chosen, ``startPaused``), ``pong``, ``closed``, ``disconnect`` (``reason``: completed | unauthorized | error).

Audio: ``PCMU`` (preferred here: what Genesys offers first) or ``L16`` at 8 kHz, interleaved in the order of the
chosen format's ``channels`` list; ``external`` = the customer, ``internal`` = the agent (mapping configurable).
L16 samples are little-endian, as the reference server reads them (an ``Int16Array`` over the frame bytes).
The session counts the samples it received; audio the client paused or discarded (``resumed`` /
``discarded`` parameters) moves the stream position on, so each :class:`LegFrame` carries its position as a
timestamp and the framer fills what was not sent with silence.
Authentication (the ``X-API-KEY`` header of the WebSocket upgrade) is the route's job, before the first message.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from app.telephony.events import (
    AudioDiscarded,
    CallEnded,
    CallStarted,
    LegFrame,
    Notice,
    Output,
    PlatformError,
    ProtocolError,
    StreamPaused,
    StreamResumed,
    decode_payload,
)

VERSION = "2"
DEFAULT_CHANNEL_ROLES = {"external": "customer", "internal": "agent"}
FORMAT_PREFERENCE = ("PCMU", "L16")
RATES = (8000,)
_DURATION = re.compile(r"^PT(\d+(?:\.\d*)?|\.\d+)S$")


def parse_duration(value: Any, name: str = "position") -> float:
    """``"PT12.34S"`` -> 12.34 (AudioHook durations are always seconds)."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise ProtocolError(f"{name} {value!r} is not an ISO 8601 duration in seconds (PT<n>S)", field=name)
    return float(m.group(1))


def format_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S".replace(".000S", "S")


class AudioHookSession:
    """Server side of one AudioHook WebSocket connection."""

    def __init__(self, channel_roles: dict[str, str] | None = None,
                 formats: tuple[str, ...] = FORMAT_PREFERENCE) -> None:
        self.channel_roles = dict(channel_roles or DEFAULT_CHANNEL_ROLES)
        self.formats = formats
        self.state = "PREPARING"  # -> ACTIVE <-> PAUSED -> CLOSED (or DISCONNECTED after an error)
        self.id: str | None = None
        self.seq = 0  # server seq of the last message sent
        self.clientseq = 0  # seq of the last client message received
        self.conversation_id: str | None = None
        self.media: dict[str, Any] | None = None
        self.received = 0  # sample frames received (per channel)
        self.skipped = 0  # sample frames the client paused or discarded (silence on the media clock)
        self.frames = 0
        self.client_position: float | None = None

    # ------------------------------------------------------------------ public
    @property
    def rate(self) -> int:
        return int(self.media["rate"]) if self.media else 8000

    @property
    def channels(self) -> list[str]:
        return list(self.media["channels"]) if self.media else []

    def feed_text(self, text: str | bytes) -> Output:
        try:
            msg = json.loads(text)
        except ValueError:
            return self._disconnect("error", "Text message not valid JSON")
        if not isinstance(msg, dict) or not all(k in msg for k in ("version", "type", "seq", "id")):
            return self._disconnect("error", "Message not a well-formed client message")
        if str(msg["version"]) != VERSION:
            return self._disconnect("error", f"Unsupported protocol version {msg['version']!r}")
        if not isinstance(msg["seq"], int) or msg["seq"] != self.clientseq + 1:
            return self._disconnect("error", f"Invalid seq value {msg['seq']!r} (expected {self.clientseq + 1})")
        self.clientseq = msg["seq"]
        if isinstance(msg.get("serverseq"), int) and msg["serverseq"] > self.seq:
            return self._disconnect("error", "Invalid serverseq value")
        if self.id is None:
            self.id = str(msg["id"])
        elif msg["id"] != self.id:
            return self._disconnect("error", "Session identifier mismatch")
        if "position" in msg:
            try:
                self.client_position = parse_duration(msg["position"])
            except ProtocolError as e:
                return self._disconnect("error", e.message)
        params = msg.get("parameters") or {}
        if not isinstance(params, dict):
            return self._disconnect("error", "parameters must be an object")
        handler = getattr(self, f"_on_{msg['type']}", None)
        if handler is None:
            return self._disconnect("error", f"'{msg['type']}' is not a supported client message")
        if self.state in ("CLOSED", "DISCONNECTED"):
            return Output([Notice("audiohook_ignored", {"type": msg["type"], "state": self.state})])
        try:
            return handler(params)
        except ProtocolError as e:
            return self._disconnect("error", e.message)

    def feed_binary(self, data: bytes) -> Output:
        if self.state not in ("ACTIVE", "PAUSED") or self.media is None:
            return self._disconnect("error", f"Received audio in state {self.state}")
        fmt, chans = self.media["format"], self.channels
        width = (1 if fmt == "PCMU" else 2) * len(chans)
        if len(data) % width:
            return self._disconnect("error", f"Audio frame of {len(data)} bytes is not a whole number of "
                                             f"{len(chans)}-channel {fmt} samples")
        x = decode_payload(bytes(data), "pcmu" if fmt == "PCMU" else "l16le").reshape(-1, len(chans))
        ts = self.received + self.skipped
        self.received += len(x)
        self.frames += 1
        out = Output()
        for i, ch in enumerate(chans):
            role = self.channel_roles.get(ch)
            if role is not None:
                out.events.append(LegFrame(role, np.ascontiguousarray(x[:, i]), self.rate, seq=self.frames,
                                           ts=ts, ts_clock="call"))
        return out

    def disconnect(self, reason: str = "completed", info: str | None = None) -> Output:
        """Server-initiated end (``completed``, ``unauthorized``, ``error``)."""
        return self._disconnect(reason, info)

    # ------------------------------------------------------------------ handlers
    def _on_open(self, p: dict[str, Any]) -> Output:
        if self.state != "PREPARING":
            return Output([Notice("audiohook_ignored", {"type": "open", "state": self.state})])
        conv = p.get("conversationId")
        if not isinstance(conv, str) or not conv:
            raise ProtocolError("open.parameters.conversationId is missing")
        chosen = self._choose_media(p.get("media"))
        if chosen is None:
            raise ProtocolError(f"no offered media format is supported (want {' or '.join(self.formats)} at "
                                f"{'/'.join(map(str, RATES))} Hz with external/internal channels)")
        self.conversation_id, self.media, self.state = conv, chosen, "ACTIVE"
        reply = self._message("opened", {"media": [chosen], "startPaused": False})
        roles = tuple(self.channel_roles[c] for c in chosen["channels"] if c in self.channel_roles)
        meta = {"session_id": self.id, "organization_id": p.get("organizationId"), "participant": p.get("participant"),
                "media": chosen, "language": p.get("language"), "custom_config": p.get("customConfig"),
                "continued_sessions": p.get("continuedSessions")}
        return Output([CallStarted(conv, "audiohook", chosen["rate"], roles, None, meta)], [reply])

    def _choose_media(self, offered: Any) -> dict[str, Any] | None:
        if not isinstance(offered, list):
            return None
        best, best_key = None, None
        for m in offered:
            if not isinstance(m, dict) or m.get("type") != "audio" or m.get("format") not in self.formats:
                continue
            chans = m.get("channels")
            if m.get("rate") not in RATES or not isinstance(chans, list) or not chans:
                continue
            if not all(c in ("external", "internal") for c in chans) or len(set(chans)) != len(chans):
                continue
            key = (self.formats.index(m["format"]), -sum(c in self.channel_roles for c in chans))
            if best_key is None or key < best_key:
                best, best_key = m, key
        return None if best is None else {"type": "audio", "format": best["format"], "channels": list(best["channels"]),
                                          "rate": best["rate"]}

    def _on_ping(self, p: dict[str, Any]) -> Output:
        return Output([], [self._message("pong", {})])

    def _on_close(self, p: dict[str, Any]) -> Output:
        self.state = "CLOSED"
        return Output([CallEnded("close")], [self._message("closed", {})], close=False)

    def _on_paused(self, p: dict[str, Any]) -> Output:
        if self.state != "ACTIVE":
            return Output([Notice("audiohook_ignored", {"type": "paused", "state": self.state})])
        self.state = "PAUSED"
        return Output([StreamPaused()])

    _on_pause = _on_paused  # some clients name it so (pipecat handles a client 'pause')

    def _on_resumed(self, p: dict[str, Any]) -> Output:
        if self.state != "PAUSED":
            return Output([Notice("audiohook_ignored", {"type": "resumed", "state": self.state})])
        self.state = "ACTIVE"
        discarded = parse_duration(p["discarded"], "discarded") if "discarded" in p else 0.0
        self.skipped += int(round(discarded * self.rate))
        return Output([StreamResumed(discarded)])

    _on_resume = _on_resumed

    def _on_discarded(self, p: dict[str, Any]) -> Output:
        start = parse_duration(p.get("start"), "start")
        discarded = parse_duration(p.get("discarded"), "discarded")
        self.skipped += int(round(discarded * self.rate))
        return Output([AudioDiscarded(start, discarded)])

    def _on_update(self, p: dict[str, Any]) -> Output:
        return Output([Notice("update", p)])

    def _on_error(self, p: dict[str, Any]) -> Output:
        return Output([PlatformError(str(p.get("message", "")), p.get("code"))])

    # ------------------------------------------------------------------ messages
    def _message(self, type_: str, parameters: dict[str, Any]) -> str:
        self.seq += 1
        return json.dumps({"version": VERSION, "type": type_, "seq": self.seq, "clientseq": self.clientseq,
                           "id": self.id or "00000000-0000-0000-0000-000000000000", "parameters": parameters})

    def _disconnect(self, reason: str, info: str | None) -> Output:
        if self.state in ("CLOSED", "DISCONNECTED"):
            return Output(close=True)
        self.state = "DISCONNECTED"
        params: dict[str, Any] = {"reason": reason}
        if info:
            params["info"] = info
        events: list = [CallEnded("error" if reason == "error" else "disconnect")]
        if reason == "error":
            events.insert(0, PlatformError(f"protocol error: {info}", "server"))
        return Output(events, [self._message("disconnect", params)], close=True)
