"""SpeakerStream: chunk-split invariance, JSON state round-trip, silence, input checks."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers_audio import at_rate, emodb, stream

from pipelines.audio.stream import ChunkFeatures, SpeakerStream
from pipelines.errors import UnsupportedAudioError

NAMES = ["03a01Wa", "03a02Nc", "08a01Fd", "09b02Wd", "11a04Nd"]


def _signal(data_dir, sr):
    return np.concatenate([at_rate(emodb(data_dir, n), sr) for n in NAMES])


def _totals(fs: list[ChunkFeatures]) -> dict:
    return {
        "syllables": sum(f.syllables for f in fs),
        "speech_s": round(sum(f.speech_s for f in fs), 6),
        "voiced_s": round(sum(f.voiced_s for f in fs), 6),
        "frames": sum(f.n_frames for f in fs),
    }


@pytest.mark.parametrize("sr", [8000, 16000])
def test_chunk_split_invariance(data_dir, sr):
    x = _signal(data_dir, sr)
    whole = stream(x, sr, chunk_s=len(x) / sr)
    one = stream(x, sr, 1.0)
    odd = stream(x, sr, 0.37)
    assert _totals(one) == _totals(odd) == _totals(whole)
    assert _totals(one)["syllables"] > 20
    # the rate window ends at the same sample -> same final speaking rate
    assert one[-1].speech_rate == pytest.approx(odd[-1].speech_rate, abs=1e-12)
    # speech-weighted mean F0 over the call is the same however it is chunked
    def wf0(fs):
        v = [(f.f0_median_hz, f.voiced_s) for f in fs if f.f0_median_hz]
        return sum(a * b for a, b in v) / sum(b for _, b in v)
    assert wf0(one) == pytest.approx(wf0(odd), rel=0.05)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_state_roundtrip_midstream_identical(data_dir, sr):
    x = _signal(data_dir, sr)
    n = int(0.37 * sr)
    pieces = [x[i : i + n] for i in range(0, len(x), n)]
    a = SpeakerStream(sr)
    ref = [a.process(p).to_dict() for p in pieces]
    b = SpeakerStream(sr)
    out = []
    for i, p in enumerate(pieces):
        if i in (3, 11, 17):  # persist + resume "on another worker"
            b = SpeakerStream.from_state(json.loads(json.dumps(b.state_dict())))
        out.append(b.process(p).to_dict())
    assert out == ref


def test_features_are_sane(data_dir):
    fs = stream(at_rate(emodb(data_dir, "03a01Wa"), 8000), 8000)
    f = fs[0]
    json.dumps(f.to_dict())
    assert ChunkFeatures.from_dict(f.to_dict()) == f
    assert 0.5 < f.speech_s <= 1.0
    assert 80 < f.f0_median_hz < 350  # adult male, angry
    assert 0 < f.f0_range_st < 24
    assert -45 < f.loudness_db < 0
    assert 0 < f.hf_ratio < 1 and -30 < f.spectral_tilt_db < 10
    assert 0 < f.voiced_ratio <= 1


@pytest.mark.parametrize("sr", [8000, 16000])
def test_silence_and_noise_give_no_speech(sr):
    rng = np.random.default_rng(0)
    for x in (np.zeros(3 * sr), 1e-4 * rng.standard_normal(3 * sr)):
        fs = stream(x, sr)
        for f in fs:
            assert f.speech_rate is None and f.f0_median_hz is None and f.loudness_db is None
            assert f.syllables == 0 and f.speech_s == 0.0


def test_tiny_chunks_and_bad_rate():
    s = SpeakerStream(8000)
    f = s.process(np.zeros(10))
    assert f.n_frames == 0 and f.speech_rate is None
    assert s.process(np.zeros(0)).duration_s == 0.0
    with pytest.raises(UnsupportedAudioError):
        SpeakerStream(44100)
