"""Typed events every telephony session yields (what the service acts on), and the G.711/L16 payload decoders.

G.711 decoding reuses the ITU-T tables of :mod:`pipelines.audio.decode` (``MULAW``/``ALAW``, float32 values
``v / 32768`` of 14/13-bit linear samples), scaled back to exact int16 so frames stay bit-exact through the
framer and ``Window.audio()`` gives the very floats ``decode_chunk`` gives for the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.audio.decode import ALAW, MULAW
from pipelines.errors import AudioDecodeError, InputError

MULAW_PCM16 = np.round(MULAW.astype(np.float64) * 32768.0).astype(np.int16)
ALAW_PCM16 = np.round(ALAW.astype(np.float64) * 32768.0).astype(np.int16)


class ProtocolError(InputError):
    """A platform sent something its protocol does not allow (bad JSON, wrong order, bad packet)."""

    code = "protocol_error"


def ulaw_to_pcm16(payload: bytes) -> np.ndarray:
    return MULAW_PCM16[np.frombuffer(payload, np.uint8)]


def alaw_to_pcm16(payload: bytes) -> np.ndarray:
    return ALAW_PCM16[np.frombuffer(payload, np.uint8)]


def l16_to_pcm16(payload: bytes, *, big_endian: bool) -> np.ndarray:
    if len(payload) % 2:
        raise AudioDecodeError(f"L16 payload of {len(payload)} bytes is not a whole number of samples", field="body")
    return np.frombuffer(payload, ">i2" if big_endian else "<i2").astype(np.int16)


def decode_payload(payload: bytes, encoding: str) -> np.ndarray:
    """``pcmu`` | ``pcma`` | ``l16be`` | ``l16le`` bytes -> int16 samples (interleaved if multi-channel)."""
    if encoding == "pcmu":
        return ulaw_to_pcm16(payload)
    if encoding == "pcma":
        return alaw_to_pcm16(payload)
    if encoding in ("l16be", "l16le"):
        return l16_to_pcm16(payload, big_endian=encoding == "l16be")
    raise InputError(f"unknown payload encoding {encoding!r}", field="encoding")


@dataclass(frozen=True, eq=False)
class LegFrame:
    """Audio of one leg: feed to ``CallFramer.push(role, samples, seq=, ts=, sample_rate=, ts_clock=)``."""

    role: str  # customer | agent
    samples: np.ndarray  # int16, mono
    sample_rate: int
    seq: int | None = None  # this leg's sequence number (None: in order, the framer numbers it)
    ts: int | None = None  # media timestamp in samples at sample_rate (None: contiguous with the last frame)
    ts_clock: str = "leg"  # "call": ts is shared by the call's legs (t=0 at stream start); "leg": own origin

    def push_kwargs(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "sample_rate": self.sample_rate, "ts_clock": self.ts_clock}


@dataclass(frozen=True)
class CallStarted:
    call_id: str
    platform: str  # twilio | audiohook | fork | audiosocket | rtp
    sample_rate: int
    roles: tuple[str, ...]  # legs this stream carries
    agent_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallEnded:
    reason: str  # stop | close | hangup | error | disconnect | idle | eof


@dataclass(frozen=True)
class StreamPaused:
    """The platform stopped sending audio (AudioHook ``paused``); the clock keeps running."""


@dataclass(frozen=True)
class StreamResumed:
    discarded_s: float = 0.0  # audio the platform did not send while paused (becomes silence)


@dataclass(frozen=True)
class AudioDiscarded:
    """The platform dropped audio (AudioHook ``discarded``): the next frame's timestamp skips it, so the framer
    fills it with silence; this event says why."""

    start_s: float
    duration_s: float


@dataclass(frozen=True)
class Dtmf:
    digit: str
    role: str | None = None


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class PlatformError:
    """The platform reported an error (AudioHook ``error``, AudioSocket 0xff)."""

    message: str
    code: int | str | None = None


@dataclass(frozen=True)
class Notice:
    """Anything else worth logging (AudioHook ``update``, Twilio ``connected``, fork metadata after the start)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


Event = LegFrame | CallStarted | CallEnded | StreamPaused | StreamResumed | AudioDiscarded | Dtmf | Mark | \
    PlatformError | Notice


@dataclass
class Output:
    """What feeding one message produced: events to act on, replies to send back (text), and whether the
    connection should be closed after sending them."""

    events: list[Event] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    close: bool = False
