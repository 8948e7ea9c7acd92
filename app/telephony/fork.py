"""FreeSWITCH ``mod_audio_fork`` / ``mod_audio_stream``: an optional JSON metadata text frame, then binary L16.

References: drachtio's mod_audio_fork README (``uuid_audio_fork <uuid> start <wss-url> <mix-type>
<sampling-rate> <metadata>``: linear 16-bit PCM, ``mono`` = the caller only, ``mixed`` = both in one channel,
``stereo`` = two channels, caller in one and callee in the other; ``metadata`` = a JSON text frame sent once on
connect) and amigniter's mod_audio_stream README (``uuid_audio_stream <uuid> start <url> <mix-type>
<sampling-rate> <metadata>``, the same framing).  Both modules send the host's native sample order, i.e.
little-endian on x86-64/arm64.

The stream carries no sequence numbers or timestamps: WebSocket frames arrive in order, so samples are
contiguous and the framer numbers them.  A binary frame that ends inside a sample or a stereo frame keeps its
remainder for the next one.  Call id, rate, channel count and channel map come from the query string (the
route passes them in) or the metadata (keys ``call_id``/``callId``/``uuid``, ``sample_rate``/``sampleRate``,
``channels``, ``channel_map``, ``agent_id``); the query string wins.  Stereo default: channel 0 = customer
(the caller), channel 1 = agent.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from app.telephony.events import CallStarted, LegFrame, Notice, Output, ProtocolError
from pipelines.audio.decode import ROLES, parse_channel_map
from pipelines.errors import InputError, UnsupportedAudioError

DEFAULT_RATE = 8000
STEREO_DEFAULT = ("customer", "agent")
_CALL_ID_KEYS = ("call_id", "callId", "uuid", "callSid", "call_sid")


class ForkSession:
    """One mod_audio_fork / mod_audio_stream WebSocket connection."""

    def __init__(self, *, call_id: str | None = None, sample_rate: int | None = None, channels: int | None = None,
                 channel_map: str | tuple[str, ...] | None = None, role: str = "customer",
                 agent_id: str | None = None) -> None:
        self.query = {"call_id": call_id, "sample_rate": sample_rate, "channels": channels,
                      "channel_map": channel_map, "agent_id": agent_id}
        self.role = role
        self.metadata: dict[str, Any] = {}
        self.started = False
        self.call_id: str | None = None
        self.rate = DEFAULT_RATE
        self.roles: tuple[str, ...] = (role,)
        self._rest = b""
        self.frames = 0

    def feed_text(self, text: str | bytes) -> Output:
        try:
            meta = json.loads(text)
        except ValueError:
            raise ProtocolError("text frame is not JSON metadata", field="metadata") from None
        if not isinstance(meta, dict):
            raise ProtocolError("metadata must be a JSON object", field="metadata")
        if self.started:
            return Output([Notice("fork_text", meta)])
        self.metadata = meta
        return self._start()

    def feed_binary(self, data: bytes) -> Output:
        out = Output() if self.started else self._start()
        width = 2 * len(self.roles)
        buf = self._rest + bytes(data)
        n = len(buf) - len(buf) % width
        self._rest = buf[n:]
        if n == 0:
            return out
        x = np.frombuffer(buf[:n], "<i2").astype(np.int16).reshape(-1, len(self.roles))
        self.frames += 1
        for i, role in enumerate(self.roles):
            if role in ROLES:
                out.events.append(LegFrame(role, np.ascontiguousarray(x[:, i]), self.rate))
        return out

    def _start(self) -> Output:
        m, q = self.metadata, self.query
        call_id = q["call_id"] or next((str(m[k]) for k in _CALL_ID_KEYS if m.get(k)), None)
        if not call_id:
            raise InputError("call id missing: pass ?call_id= or put call_id in the metadata", field="call_id")
        rate = q["sample_rate"] or m.get("sample_rate") or m.get("sampleRate") or DEFAULT_RATE
        try:
            rate = int(str(rate).lower().removesuffix("k")) * (1000 if str(rate).lower().endswith("k") else 1)
        except ValueError:
            raise InputError(f"sample_rate {rate!r} is not a number", field="sample_rate") from None
        if rate not in (8000, 16000, 24000, 32000, 48000):
            raise UnsupportedAudioError(f"sample_rate {rate} Hz is not one mod_audio_fork sends", field="sample_rate")
        cmap = q["channel_map"] or m.get("channel_map")
        roles = (parse_channel_map(cmap) if isinstance(cmap, str) else tuple(cmap)) if cmap else None
        channels = int(q["channels"] or m.get("channels") or (len(roles) if roles else 1))
        if channels not in (1, 2):
            raise UnsupportedAudioError(f"channels={channels}: mono or stereo only", field="channels")
        if roles is None:
            roles = (self.role,) if channels == 1 else STEREO_DEFAULT
        if len(roles) != channels:
            raise InputError(f"channel_map names {len(roles)} channels but the stream has {channels}",
                             field="channel_map")
        self.call_id, self.rate, self.roles, self.started = call_id, rate, tuple(roles), True
        agent_id = q["agent_id"] or m.get("agent_id")
        legs = tuple(r for r in roles if r in ROLES)
        return Output([CallStarted(call_id, "fork", rate, legs, agent_id, dict(m))])
