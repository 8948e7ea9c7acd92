"""SpeakerBaseline: readiness after ~15 s of speech and correctly signed deltas."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import soxr
from helpers_audio import at_rate, stream

from pipelines.audio.baseline import SpeakerBaseline
from pipelines.audio.stream import SpeakerStream


def _tw_female_natural(data_dir, seconds=40.0):
    root = data_dir / "speech" / "tw-mandarin-valence" / "wav" / "Natural"
    xs, tot = [], 0
    for i in range(1, 200):
        p = root / f"Nat_Female-{i}.wav"
        if not p.exists():
            continue
        x, sr = sf.read(p, dtype="float64")
        xs.append(x)
        tot += len(x) / sr
        if tot >= seconds:
            break
    return np.concatenate(xs)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_baseline_ready_and_deltas_signed(data_dir, sr):
    x16 = _tw_female_natural(data_dir)
    calm, probe16 = x16[: int(30 * 16000)], x16[int(30 * 16000) :]
    s = SpeakerStream(sr)
    b = SpeakerBaseline(baseline_seconds=15.0)
    speech = 0.0
    for f in stream(at_rate(calm, sr), sr, s=s):
        was_ready = b.ready
        b.update(f)
        speech += f.speech_s
        if not was_ready and b.ready:
            assert 15.0 <= speech < 16.5
        assert b.delta(f) is None or b.ready
    assert b.ready and 15.0 <= b.progress_s < 16.5
    assert 130 < b.stats["f0_median_hz"] < 400

    # the same speaker, unmodified vs sped up 19 % (+3 semitones, resampling) and +6 dB
    b = SpeakerBaseline.from_state(json.loads(json.dumps(b.state_dict())))
    fast16 = 2.0 * soxr.resample(probe16, 16000, int(16000 / 1.19))
    st_plain = SpeakerStream.from_state(s.state_dict())
    st_mod = SpeakerStream.from_state(s.state_dict())

    def agg(fs):  # mean over chunks of the per-chunk deltas
        ds = [b.delta(f) for f in fs if f.speech_s > 0.3]
        ds = [d for d in ds if d is not None]
        med = lambda k: float(np.mean([getattr(d, k) for d in ds if getattr(d, k) is not None]))  # noqa: E731
        return {k: med(k) for k in ("speech_rate_pct", "f0_st", "loudness_db", "hf_ratio_db")}

    plain = agg(stream(at_rate(probe16, sr), sr, s=st_plain))
    mod = agg(stream(at_rate(fast16, sr), sr, s=st_mod))
    # TW "Nat_Female" clips are several speakers, so the plain probe is only roughly at baseline
    assert abs(plain["loudness_db"]) < 4 and abs(plain["f0_st"]) < 4
    assert mod["loudness_db"] - plain["loudness_db"] == pytest.approx(6.0, abs=2.0)
    assert mod["f0_st"] - plain["f0_st"] == pytest.approx(3.0, abs=1.2)
    # resampling shortens pauses *and* syllables; merged dips cost some nuclei, so the measured
    # speed-up is ~10-13 % for the true 19 %
    assert mod["speech_rate_pct"] > plain["speech_rate_pct"] + 5


def test_baseline_ignores_silence_and_freezes(data_dir):
    s = SpeakerStream(8000)
    b = SpeakerBaseline(baseline_seconds=2.0)
    for f in stream(np.zeros(5 * 8000), 8000, s=s):
        b.update(f)
    assert not b.ready and b.progress_s == 0.0
    x = at_rate(_tw_female_natural(data_dir, 8.0), 8000)
    for f in stream(x, 8000, s=s):
        b.update(f)
    assert b.ready
    frozen = dict(b.stats)
    b.update(stream(x, 8000)[1])
    assert b.stats == frozen
