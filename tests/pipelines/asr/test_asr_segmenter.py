"""UtteranceSegmenter on the committed call's customer leg, framed like live audio (20 ms frames → 1 s windows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines.asr.segmenter import SegmenterConfig, UtteranceSegmenter
from pipelines.errors import InputError

pytest.importorskip("faster_whisper", reason="faster-whisper not installed (pip install 'nuqi[asr]')")
REPO = Path(__file__).resolve().parents[3]
CALL = REPO / "sample_audio" / "call_escalating_8k.wav"


def test_each_customer_turn_becomes_one_utterance_when_it_ends(customer_windows, customer_turns) -> None:
    seg = UtteranceSegmenter("call-1", "customer")
    emitted = []  # (utterance, call-clock end of the window that produced it)
    for w in customer_windows:
        emitted += [(u, w.t_end) for u in seg.push_window(w)]
    turns = customer_turns
    assert len(emitted) == len(turns)
    for (u, seen_at), turn in zip(emitted, turns, strict=True):
        assert u.call_id == "call-1" and u.role == "customer" and u.sample_rate == 16000
        assert u.samples.dtype == np.float32 and u.samples.size == round((u.t_end - u.t_start) * 16000)
        # the utterance covers the turn (within the VAD's 32 ms frames and its pad) ...
        assert u.t_start <= turn["start"] + 0.1 and u.t_end >= turn["end"] - 0.1
        assert abs(u.speech_end - turn["end"]) < 0.35
        # ... and is handed out within the end silence + one window after the speech ends
        assert seen_at - turn["end"] <= 0.6 + 1.0 + 0.1
    assert [u.seq for u, _ in emitted] == list(range(len(turns)))


def test_silent_leg_stays_bounded_and_emits_nothing() -> None:
    seg = UtteranceSegmenter("call-2", "customer")
    rng = np.random.default_rng(0)
    for k in range(30):
        assert seg.push((rng.standard_normal(8000) * 1e-4).astype(np.float32), 8000, float(k)) == []
        assert seg.pending_s <= seg.config.speech_pad_ms / 1000 + 0.01  # only the pad is kept
    assert seg.flush() == []


def test_long_monologue_is_cut_and_flush_returns_the_rest(customer_turns) -> None:
    """Three customer turns glued without pauses (> max_utterance_s) are cut, then flushed at the end."""
    audio, rate = sf.read(CALL, dtype="float32")
    turns = customer_turns[:3]
    speech = np.concatenate([audio[int(t["start"] * rate):int(t["end"] * rate), 1] for t in turns])
    seg = UtteranceSegmenter("call-3", "customer", SegmenterConfig(max_utterance_s=8.0))
    out = []
    for k in range(0, speech.size, rate):
        out += seg.push(speech[k:k + rate], rate, k / rate)
    assert out and all(u.duration_s <= 8.0 + 0.5 for u in out)
    rest = seg.flush()
    total = sum(u.duration_s for u in out + rest)
    assert total >= 0.9 * speech.size / rate


def test_gap_in_the_leg_ends_the_pending_utterance(customer_turns) -> None:
    audio, rate = sf.read(CALL, dtype="float32")
    t = customer_turns[0]
    speech = audio[int(t["start"] * rate):int(t["end"] * rate), 1]
    seg = UtteranceSegmenter("call-4", "customer")
    assert seg.push(speech[:2 * rate], rate, 10.0) == []  # speech still going on
    out = seg.push(np.zeros(rate, np.float32), rate, 30.0)  # 18 s later: the first piece is over
    assert len(out) == 1 and out[0].t_start >= 10.0 - 1e-6 and out[0].t_end <= 12.0 + 1e-6


def test_window_of_another_leg_is_refused(agent_windows) -> None:
    seg = UtteranceSegmenter("call-5", "customer")
    w = agent_windows[0]
    with pytest.raises(InputError, match="agent"):
        seg.push_window(w)
