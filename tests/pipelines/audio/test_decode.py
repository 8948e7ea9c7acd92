"""Chunk decoding: every supported encoding round-trips, every bad input is named precisely."""
from __future__ import annotations

import audioop  # stdlib in 3.11: an independent G.711 reference
import struct
import warnings

import numpy as np
import pytest

from pipelines.audio.decode import ChunkFormat, decode_chunk, parse_channel_map
from pipelines.errors import (
    AudioDecodeError,
    ChunkTooLargeError,
    InputError,
    InvalidAudioContentError,
    UnsupportedAudioError,
)
from tests.conftest import SAMPLE_AUDIO, read_wav, wav_bytes

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def speech8k() -> np.ndarray:
    x, sr = read_wav(SAMPLE_AUDIO / "call_escalating_8k.wav")
    assert sr == 8000
    return x[: 8000 * 2]


def test_stereo_wav_default_map_agent_left_customer_right(speech8k):
    chunk = decode_chunk(wav_bytes(speech8k, 8000, 2), ChunkFormat())
    assert chunk.sample_rate == 8000 and set(chunk.audio) == {"agent", "customer"}
    np.testing.assert_allclose(chunk.audio["agent"], speech8k[:, 0], atol=1 / 32767)
    np.testing.assert_allclose(chunk.audio["customer"], speech8k[:, 1], atol=1 / 32767)


def test_raw_pcm_mono_with_role():
    x = (0.3 * np.sin(np.arange(8000) * 2 * np.pi * 200 / 8000)).astype(np.float32)
    body = (x * 32767).astype("<i2").tobytes()
    chunk = decode_chunk(body, ChunkFormat(encoding="pcm_s16le", sample_rate=8000, role="agent"))
    assert list(chunk.audio) == ["agent"] and chunk.duration_s == pytest.approx(1.0)


@pytest.mark.parametrize("enc,ref", [("mulaw", audioop.lin2ulaw), ("alaw", audioop.lin2alaw)])
def test_g711_matches_reference(enc, ref):
    x = (0.5 * np.sin(np.arange(8000) * 2 * np.pi * 300 / 8000) * 32767).astype("<i2")
    body = ref(x.tobytes(), 2)
    chunk = decode_chunk(body, ChunkFormat(encoding=enc, sample_rate=8000))
    back = {"mulaw": audioop.ulaw2lin, "alaw": audioop.alaw2lin}[enc](body, 2)
    np.testing.assert_allclose(chunk.audio["customer"], np.frombuffer(back, "<i2") / 32768.0, atol=1e-6)


def test_other_rates_are_resampled():
    sr = 44100
    x = (0.3 * np.sin(np.arange(sr) * 2 * np.pi * 220 / sr)).astype(np.float32)
    chunk = decode_chunk(wav_bytes(x, sr), ChunkFormat())
    assert chunk.sample_rate == 16000 and chunk.input_rate == sr
    assert len(chunk.audio["customer"]) == pytest.approx(16000, abs=2)


@pytest.mark.parametrize("body,fmt,exc,words", [
    (b"", ChunkFormat(), InputError, "empty"),
    (b"\x01\x02\x03", ChunkFormat(encoding="pcm_s16le", sample_rate=8000), AudioDecodeError, "whole number"),
    (b"RIFF\x00\x00\x00\x00WAVEjunk", ChunkFormat(), AudioDecodeError, "fmt"),
    (b"\x00\x01" * 800, ChunkFormat(encoding="opus", sample_rate=8000), UnsupportedAudioError, "encoding"),
    (b"\x00\x01" * 800, ChunkFormat(encoding="pcm_s16le", sample_rate=4000), UnsupportedAudioError, "sample_rate"),
    (b"\x00\x01" * 800, ChunkFormat(encoding="pcm_s16le"), InputError, "sample_rate is required"),
])
def test_bad_input_is_named(body, fmt, exc, words):
    with pytest.raises(exc) as err:
        decode_chunk(body, fmt)
    assert words in err.value.message


def test_truncated_wav(speech8k):
    body = wav_bytes(speech8k[:, 1], 8000)
    with pytest.raises(AudioDecodeError, match="truncated"):
        decode_chunk(body[: len(body) // 2], ChunkFormat())


def test_too_long_chunk_is_413_class():
    body = np.zeros(8000 * 31, "<i2")
    body[::7] = 1000
    with pytest.raises(ChunkTooLargeError, match="31.0 s"):
        decode_chunk(body.tobytes(), ChunkFormat(encoding="pcm_s16le", sample_rate=8000))


def test_nan_in_float_wav():
    data = np.full(800, np.nan, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    body = b"RIFF" + struct.pack("<I", 4 + 24 + 8 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    with pytest.raises(InvalidAudioContentError, match="NaN"):
        decode_chunk(body, ChunkFormat())


def test_pure_silence_and_clipping():
    with pytest.raises(InvalidAudioContentError, match="silence"):
        decode_chunk(bytes(16000), ChunkFormat(encoding="pcm_s16le", sample_rate=8000))
    square = np.where(np.sin(np.arange(8000) / 3) > 0, 32767, -32768).astype("<i2")
    with pytest.raises(InvalidAudioContentError, match="clipped"):
        decode_chunk(square.tobytes(), ChunkFormat(encoding="pcm_s16le", sample_rate=8000))


def test_silent_customer_with_speaking_agent_is_fine(speech8k):
    x = speech8k.copy()
    x[:, 1] = 0.0
    chunk = decode_chunk(wav_bytes(x, 8000, 2), ChunkFormat())
    assert np.all(chunk.audio["customer"] == 0)


def test_channel_map_forms():
    assert parse_channel_map("customer,agent") == ("customer", "agent")
    assert parse_channel_map("customer=left,agent=right") == ("customer", "agent")
    assert parse_channel_map("agent:1,customer:0") == ("customer", "agent")
    with pytest.raises(InputError, match="twice"):
        parse_channel_map("agent,agent")
    with pytest.raises(InputError, match="not one of"):
        parse_channel_map("boss,agent")
