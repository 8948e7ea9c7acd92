"""Conversation metrics from per-chunk speech time (exact arithmetic on hand-built timelines)."""
from __future__ import annotations

import pytest

from pipelines.batch.metrics import call_metrics


def entry(t: float, dur: float = 1.0, **roles: tuple[float, int]) -> dict:
    return {"t_start": t, "t_end": t + dur,
            "roles": {r: {"features": {"speech_s": s, "syllables": n}} for r, (s, n) in roles.items()}}


def test_turn_taking_overtalk_and_silence():
    tl = [
        entry(0, customer=(0.0, 0), agent=(0.8, 4)),  # agent talks, 0.2 s silence
        entry(1, customer=(0.7, 3), agent=(0.6, 2)),  # 1.3 s of speech in 1 s: ≥ 0.3 s overtalk
        entry(2, customer=(1.0, 5), agent=(0.0, 0)),
        entry(3, customer=(0.0, 0), agent=(0.0, 0)),  # silence
    ]
    m = call_metrics(tl)
    assert m.duration_s == 4.0
    assert m.speech_s == {"agent": 1.4, "customer": 1.7}
    assert m.talk_ratio == pytest.approx(1.7 / 1.4, abs=1e-3)
    assert m.overtalk_pct == pytest.approx(100 * 0.3 / 4, abs=0.01)
    assert m.silence_pct == pytest.approx(100 * (0.2 + 1.0) / 4, abs=0.01)
    assert m.speech_rate["customer"] == pytest.approx(8 / 1.7, abs=1e-3)
    assert m.speech_rate["agent"] == pytest.approx(6 / 1.4, abs=1e-3)


def test_mono_call_has_no_ratio_or_overtalk():
    tl = [entry(i, customer=(0.5, 2)) for i in range(4)]
    m = call_metrics(tl, ["customer"])
    assert m.talk_ratio is None and m.overtalk_pct is None
    assert m.silence_pct == pytest.approx(50.0)
    assert m.speech_rate == {"customer": pytest.approx(4.0)}


def test_short_speech_gives_no_rate_and_agent_silence_gives_no_ratio():
    tl = [entry(0, customer=(0.4, 2), agent=(0.0, 0)), entry(1, 0.5, customer=(0.9, 1), agent=(0.0, 0))]
    m = call_metrics(tl)
    assert m.talk_ratio is None  # agent never spoke
    assert m.speech_rate["agent"] is None
    # speech is clipped to the chunk length: the 0.5 s chunk cannot hold 0.9 s of one speaker
    assert m.speech_s["customer"] == pytest.approx(0.9)
    assert m.speech_rate["customer"] is None  # 0.9 s < 1 s of speech
    assert call_metrics([]).silence_pct is None
