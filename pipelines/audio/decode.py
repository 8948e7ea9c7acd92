"""Chunk → decoded, validated float32 audio per speaker role.

The call platform sends one chunk per request: raw PCM s16le, G.711 µ-law or A-law,
or a WAV file (PCM 8/16/24/32-bit, float, µ-law, A-law).  :func:`decode_chunk`
turns those bytes into one float32 array in [-1, 1] per role at an analysis rate
of 8000 or 16000 Hz, or raises a precise :mod:`pipelines.errors` exception naming
what is wrong.  It never touches call state, so a bad chunk cannot corrupt a call.
"""
from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from enum import Enum

import numpy as np
import soxr

from pipelines.errors import (
    AudioDecodeError,
    ChunkTooLargeError,
    InputError,
    InvalidAudioContentError,
    UnsupportedAudioError,
)

logger = logging.getLogger("nuqi.decode")

ROLES = ("customer", "agent")
MIN_INPUT_RATE = 8000
MAX_INPUT_RATE = 192000
DIGITAL_SILENCE_PEAK = 10 ** (-90 / 20)  # below -90 dBFS peak = nothing but zeros/dither
CLIP_LEVEL = 0.999
MAX_CLIPPED_FRACTION = 0.10  # more than 10 % of samples at full scale: prosody is destroyed


class Encoding(str, Enum):
    wav = "wav"
    pcm_s16le = "pcm_s16le"
    mulaw = "mulaw"
    alaw = "alaw"

    @classmethod
    def parse(cls, value: str | None, body: bytes) -> "Encoding":
        if value is None or value == "" or value == "auto":
            return cls.wav if body[:4] in (b"RIFF", b"RIFX", b"RF64") else cls.pcm_s16le
        aliases = {
            "s16le": cls.pcm_s16le, "pcm": cls.pcm_s16le, "l16": cls.pcm_s16le, "linear16": cls.pcm_s16le,
            "ulaw": cls.mulaw, "mu-law": cls.mulaw, "pcmu": cls.mulaw, "g711u": cls.mulaw,
            "a-law": cls.alaw, "pcma": cls.alaw, "g711a": cls.alaw, "wave": cls.wav,
        }
        key = value.strip().lower()
        if key in aliases:
            return aliases[key]
        try:
            return cls(key)
        except ValueError:
            raise UnsupportedAudioError(
                f"unknown encoding {value!r}; use one of wav, pcm_s16le, mulaw, alaw", field="encoding"
            ) from None


@dataclass(frozen=True)
class ChunkFormat:
    """What the caller declared about a chunk (query parameters / headers)."""

    encoding: str | None = None  # None/"auto": WAV if the body starts with RIFF, else pcm_s16le
    sample_rate: int | None = None  # required for raw encodings; WAV carries its own
    channels: int | None = None  # raw encodings: 1 or 2 (default: len(channel_map) or 1)
    role: str = "customer"  # mono chunks: whose voice it is
    channel_map: tuple[str, ...] | None = None  # stereo: role of channel 0, 1 (default agent, customer)


@dataclass(frozen=True)
class DecodedChunk:
    sample_rate: int  # analysis rate, 8000 or 16000
    input_rate: int  # rate the audio arrived at
    duration_s: float
    audio: dict[str, np.ndarray]  # role -> float32 mono samples at sample_rate
    encoding: str


def parse_channel_map(value: str | None) -> tuple[str, ...] | None:
    """``"agent,customer"`` or ``"customer=1,agent=0"`` or ``"agent=left,customer=right"``."""
    if value is None or value.strip() == "":
        return None
    parts = [p.strip().lower() for p in value.split(",") if p.strip()]
    if all("=" in p or ":" in p for p in parts):
        slots: dict[int, str] = {}
        for p in parts:
            role, _, idx = p.replace(":", "=").partition("=")
            role, idx = role.strip(), idx.strip()
            index = {"left": 0, "l": 0, "right": 1, "r": 1}.get(idx)
            if index is None:
                if not idx.isdigit():
                    raise InputError(f"channel_map entry {p!r}: channel must be 0, 1, left or right",
                                     field="channel_map")
                index = int(idx)
            slots[index] = role
        if sorted(slots) != list(range(len(slots))):
            raise InputError(f"channel_map {value!r} must name channels 0..n-1 exactly once", field="channel_map")
        roles = tuple(slots[i] for i in range(len(slots)))
    else:
        roles = tuple(parts)
    for role in roles:
        if role not in ROLES and role not in ("-", "none", "ignore"):
            raise InputError(f"channel_map role {role!r} is not one of customer, agent, none", field="channel_map")
    named = [r for r in roles if r in ROLES]
    if len(set(named)) != len(named):
        raise InputError(f"channel_map {value!r} names a role twice", field="channel_map")
    if len(roles) > 2:
        raise UnsupportedAudioError(f"channel_map has {len(roles)} channels; at most 2 are supported",
                                    field="channel_map")
    return roles


# ---------------------------------------------------------------------------------------------
# G.711 tables (ITU-T G.711), built once: byte value -> float in [-1, 1]

def _mulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    value = np.where(sign != 0, -magnitude, magnitude)
    return (value / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    value = np.where(sign != 0, magnitude, -magnitude)
    return (value / 32768.0).astype(np.float32)


MULAW = _mulaw_table()
ALAW = _alaw_table()


# ---------------------------------------------------------------------------------------------
# WAV

@dataclass(frozen=True)
class _WavInfo:
    format_tag: int
    channels: int
    sample_rate: int
    bits: int
    data: bytes


def _parse_wav(body: bytes) -> _WavInfo:
    if len(body) < 12 or body[:4] not in (b"RIFF", b"RIFX") or body[8:12] != b"WAVE":
        raise AudioDecodeError("not a WAV file: missing RIFF/WAVE header", field="body")
    if body[:4] == b"RIFX":
        raise UnsupportedAudioError("big-endian RIFX WAV is not supported; send little-endian RIFF", field="body")
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(body):
        cid, size = body[pos:pos + 4], struct.unpack("<I", body[pos + 4:pos + 8])[0]
        start, end = pos + 8, pos + 8 + size
        if cid == b"fmt ":
            if size < 16 or end > len(body):
                raise AudioDecodeError("WAV fmt chunk is truncated", field="body")
            tag, ch, rate, _, _, bits = struct.unpack("<HHIIHH", body[start:start + 16])
            if tag == 0xFFFE and size >= 40:  # WAVE_FORMAT_EXTENSIBLE: real tag in the sub-format GUID
                tag = struct.unpack("<H", body[start + 24:start + 26])[0]
            fmt = (tag, ch, rate, bits)
        elif cid == b"data":
            if end > len(body):
                raise AudioDecodeError(
                    f"WAV is truncated: data chunk declares {size} bytes but only {len(body) - start} are present",
                    field="body",
                )
            data = body[start:end]
            if fmt is not None:
                break
        pos = end + (size & 1)
    if fmt is None:
        raise AudioDecodeError("WAV has no fmt chunk", field="body")
    if data is None:
        raise AudioDecodeError("WAV has no data chunk", field="body")
    tag, ch, rate, bits = fmt
    return _WavInfo(tag, ch, rate, bits, data)


def _wav_samples(info: _WavInfo) -> np.ndarray:
    """Interleaved WAV payload -> float32 array shaped (frames, channels)."""
    tag, ch, bits, data = info.format_tag, info.channels, info.bits, info.data
    if ch < 1:
        raise UnsupportedAudioError("WAV declares 0 channels", field="body")
    if ch > 2:
        raise UnsupportedAudioError(f"WAV has {ch} channels; nuqi takes mono or stereo", field="body")
    if tag == 1 and bits == 16:
        x = _frombuffer(data, "<i2", ch, "16-bit PCM WAV").astype(np.float32) / 32768.0
    elif tag == 1 and bits == 8:
        x = (_frombuffer(data, "u1", ch, "8-bit PCM WAV").astype(np.float32) - 128.0) / 128.0
    elif tag == 1 and bits == 24:
        n = len(data) // 3
        if len(data) % (3 * ch):
            raise AudioDecodeError(f"24-bit WAV payload of {len(data)} bytes is not a whole number of frames",
                                   field="body")
        b = np.frombuffer(data, np.uint8).reshape(n, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = (v.astype(np.float32) / float(1 << 23)).reshape(-1, ch)
    elif tag == 1 and bits == 32:
        x = (_frombuffer(data, "<i4", ch, "32-bit PCM WAV").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif tag == 3 and bits in (32, 64):
        x = _frombuffer(data, "<f4" if bits == 32 else "<f8", ch, "float WAV").astype(np.float32)
    elif tag == 7 and bits == 8:
        x = MULAW[_frombuffer(data, "u1", ch, "µ-law WAV")]
    elif tag == 6 and bits == 8:
        x = ALAW[_frombuffer(data, "u1", ch, "A-law WAV")]
    else:
        raise UnsupportedAudioError(f"WAV format tag {tag} with {bits} bits per sample is not supported", field="body")
    return x.reshape(-1, ch)


def _frombuffer(data: bytes, dtype: str, channels: int, what: str) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    if len(data) % (width * channels):
        raise AudioDecodeError(
            f"{what} payload of {len(data)} bytes is not a whole number of {channels}-channel frames "
            f"({width * channels} bytes each)",
            field="body",
        )
    return np.frombuffer(data, dtype)


# ---------------------------------------------------------------------------------------------

def analysis_rate(input_rate: int) -> int:
    """8000 and 16000 stay; other rates resample to 16 kHz (above 16 k) or 8 kHz (below)."""
    if input_rate < MIN_INPUT_RATE or input_rate > MAX_INPUT_RATE:
        raise UnsupportedAudioError(
            f"sample_rate {input_rate} Hz is not supported; send 8000 or 16000 Hz (rates from "
            f"{MIN_INPUT_RATE} to {MAX_INPUT_RATE} Hz are resampled)",
            field="sample_rate",
        )
    return 16000 if input_rate >= 16000 else 8000


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """``x`` (samples, or samples x channels) from ``src`` Hz to ``dst`` Hz as float32 (soxr, high quality)."""
    if src == dst:
        return x
    return soxr.resample(x, src, dst, quality="HQ").astype(np.float32)


def decode_chunk(body: bytes, fmt: ChunkFormat, *, max_seconds: float = 30.0, allow_silence: bool = False,
                 check_clipping: bool = True) -> DecodedChunk:
    """Decode and validate one chunk; raise an :class:`InputError` subclass naming the problem.

    ``allow_silence``: an all-zero chunk (hold, mute) is valid audio instead of an error; ``check_clipping``:
    refuse a chunk whose channel is clipped (off for short streamed frames, where one shout would fail it)."""
    if not body:
        raise InputError("empty chunk: the request body has no audio bytes", field="body")
    encoding = Encoding.parse(fmt.encoding, body)
    if encoding is Encoding.wav:
        info = _parse_wav(body)
        if fmt.sample_rate and fmt.sample_rate != info.sample_rate:
            logger.debug("sample_rate %s overridden by WAV header %s", fmt.sample_rate, info.sample_rate)
        rate = info.sample_rate
        frames = _wav_samples(info)
    else:
        if not fmt.sample_rate:
            raise InputError(f"sample_rate is required for {encoding.value} audio", field="sample_rate")
        rate = int(fmt.sample_rate)
        channels = fmt.channels or (len(fmt.channel_map) if fmt.channel_map else 1)
        if channels not in (1, 2):
            raise UnsupportedAudioError(f"channels={channels}; nuqi takes mono or stereo", field="channels")
        if encoding is Encoding.pcm_s16le:
            frames = _frombuffer(body, "<i2", channels, "s16le PCM").astype(np.float32) / 32768.0
        else:
            table = MULAW if encoding is Encoding.mulaw else ALAW
            frames = table[np.frombuffer(body, np.uint8)]
            if frames.size % channels:
                raise AudioDecodeError(
                    f"{encoding.value} payload of {len(body)} bytes is not a whole number of stereo frames",
                    field="body")
        frames = frames.reshape(-1, channels)

    sr = analysis_rate(rate)
    n_frames, n_channels = frames.shape
    if n_frames == 0:
        raise InputError("empty chunk: the audio has no samples", field="body")
    duration = n_frames / rate
    if duration > max_seconds:
        raise ChunkTooLargeError(
            f"chunk is {duration:.1f} s long; the maximum is {max_seconds:g} s — send shorter chunks",
            field="body", duration_s=round(duration, 3), max_seconds=max_seconds,
        )
    if not np.isfinite(frames).all():
        raise InvalidAudioContentError("audio contains NaN or Inf samples", field="body")

    roles = _roles_for(n_channels, fmt)
    audio: dict[str, np.ndarray] = {}
    peaks = []
    for idx, role in enumerate(roles):
        if role not in ROLES:
            continue
        x = np.ascontiguousarray(frames[:, idx], dtype=np.float32)
        peak = float(np.max(np.abs(x)))
        peaks.append(peak)
        clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
        if check_clipping and clipped > MAX_CLIPPED_FRACTION:
            raise InvalidAudioContentError(
                f"{role} channel is clipped: {clipped:.0%} of samples are at full scale "
                f"(limit {MAX_CLIPPED_FRACTION:.0%}); lower the gain",
                field="body", role=role, clipped_fraction=round(clipped, 3),
            )
        audio[role] = resample(x, rate, sr)
    if not audio:
        raise InputError("channel_map assigns no channel to customer or agent", field="channel_map")
    if not allow_silence and max(peaks) < DIGITAL_SILENCE_PEAK:
        raise InvalidAudioContentError(
            "chunk is pure digital silence on every channel (all samples zero); check the audio source",
            field="body",
        )
    return DecodedChunk(sample_rate=sr, input_rate=rate, duration_s=duration, audio=audio, encoding=encoding.value)


def _roles_for(n_channels: int, fmt: ChunkFormat) -> tuple[str, ...]:
    if n_channels == 1:
        if fmt.channel_map and len(fmt.channel_map) != 1:
            raise InputError(f"channel_map names {len(fmt.channel_map)} channels but the audio is mono",
                             field="channel_map")
        role = fmt.channel_map[0] if fmt.channel_map else fmt.role
        if role not in ROLES:
            raise InputError(f"role {role!r} is not one of customer, agent", field="role")
        return (role,)
    roles = fmt.channel_map or ("agent", "customer")
    if len(roles) != n_channels:
        raise InputError(f"channel_map names {len(roles)} channels but the audio has {n_channels}", field="channel_map")
    return roles
