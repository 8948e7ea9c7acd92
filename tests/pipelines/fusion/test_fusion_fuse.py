from __future__ import annotations

import json
import math

import pytest
from helpers_fusion import win

from pipelines.errors import InputError, ModelNotAvailableError
from pipelines.fusion.cues import Cues
from pipelines.fusion.fuse import Fuser, FusionParams, sigmoid
from pipelines.text.lexicon import KeywordHit

LOUD = {"speech_rate_pct": 38.0, "f0_st": 4.2, "f0_range_st": 3.0, "loudness_db": 6.0}
CALM = {"speech_rate_pct": 0.0, "f0_st": 0.0, "f0_range_st": 0.0, "loudness_db": 0.0}


def test_no_cues_gives_prior(fuser):
    r = fuser.fuse(win(0, 2))
    assert r.available == []
    assert r.fused == pytest.approx(fuser.params.prior_rate)


def test_single_group_passes_its_calibrated_score_through(fuser):
    """Renormalisation: with one cue group the fused score IS that group's calibrated probability."""
    for c in (win(0, 2, text_anger=0.8), win(0, 2, acoustic_anger=0.8),
              win(0, 2, delta=LOUD, baseline_ready=True),
              win(0, 2, keyword_hits=[KeywordHit("投诉", "complaint_intent", 1.0, 5)])):
        r = fuser.fuse(c)
        assert len(r.available) == 1
        g = r.groups[r.available[0]]
        assert r.fused == pytest.approx(g.prob, abs=1e-9)


def test_audio_only_call(fuser):
    calm = fuser.fuse(win(0, 2, acoustic_anger=0.1, delta=CALM, baseline_ready=True))
    loud = fuser.fuse(win(0, 2, acoustic_anger=0.9, delta=LOUD, baseline_ready=True))
    # the relative acoustic model cannot learn rate/loudness, so prosody is pooled next to it
    # unless params.json discounts it
    expected = ["acoustic"] if fuser.params.weight("prosody", {"acoustic"}) == 0 else ["acoustic", "prosody"]
    assert calm.available == expected
    assert 0.0 <= calm.fused < loud.fused <= 1.0
    # loud != angry: acoustic evidence alone stays short of certainty
    assert loud.fused < 0.9


def test_pre_baseline_acoustic_is_weaker(fuser):
    pre = fuser.fuse(win(0, 2, acoustic_anger=0.9)).fused
    post = fuser.fuse(win(0, 2, acoustic_anger=0.9, baseline_ready=True)).fused
    assert fuser.params.prior_rate < pre < post


def test_audio_is_trusted_no_more_than_text(fuser):
    """Calibration consistency: the same probability from the acoustic model never outweighs the text model."""
    for p in (0.6, 0.9, 0.99):
        a = fuser.fuse(win(0, 2, acoustic_anger=p, baseline_ready=True)).fused
        t = fuser.fuse(win(0, 2, text_anger=p)).fused
        assert a <= t + 1e-9


def test_prosody_used_when_acoustic_model_missing(fuser):
    calm = fuser.fuse(win(0, 2, delta=CALM, baseline_ready=True))
    loud = fuser.fuse(win(0, 2, delta=LOUD, baseline_ready=True))
    assert loud.available == ["prosody"]
    assert loud.fused > calm.fused
    # the baseline is not ready: deltas are ignored
    assert fuser.fuse(win(0, 2, delta=LOUD, baseline_ready=False)).available == []


def test_text_only_call_is_monotone(fuser):
    ps = [fuser.fuse(win(0, 2, text_anger=a)).fused for a in (0.02, 0.2, 0.5, 0.8, 0.98)]
    assert ps == sorted(ps)
    assert all(0 <= p <= 1 for p in ps)


def test_text_probs_give_text_anger():
    c = win(0, 1, text_probs={"angry": 0.7, "neutral": 0.2, "sad": 0.1})
    assert c.text_anger == pytest.approx(0.7)


def test_agreeing_cues_are_stronger_than_each_alone(fuser):
    t = fuser.fuse(win(0, 2, text_anger=0.9)).fused
    a = fuser.fuse(win(0, 2, acoustic_anger=0.9)).fused
    both = fuser.fuse(win(0, 2, text_anger=0.9, acoustic_anger=0.9)).fused
    assert both > max(t, a) * 0.999


def test_loud_but_neutral_words_stay_low(fuser):
    r = fuser.fuse(win(0, 2, text_anger=0.03, acoustic_anger=0.9, delta=LOUD, baseline_ready=True))
    assert r.fused < 0.5


def test_external_keyword_is_strong_evidence(fuser):
    r = fuser.fuse(win(0, 2, keyword_hits=[KeywordHit("12315", "external_escalation", 1.0, 6)]))
    assert r.fused > 0.5
    assert r.dominant == "keyword"


def test_negated_hits_carry_no_evidence(fuser):
    r = fuser.fuse(win(0, 2, keyword_hits=[KeywordHit("投诉", "complaint_intent", 1.0, 5, negated=True)]))
    assert r.available == []


def test_params_round_trip(tmp_path, fuser):
    p = tmp_path / "params.json"
    fuser.params.save(p)
    again = Fuser(FusionParams.load(p))
    c = win(0, 2, text_anger=0.6, acoustic_anger=0.7, keyword_hits=[KeywordHit("太慢", "dissatisfaction", 0.5, 1)])
    assert again.fuse(c).fused == pytest.approx(fuser.fuse(c).fused)
    d = json.loads(p.read_text(encoding="utf-8"))
    assert set(d["groups"]) == {"acoustic", "prosody", "text", "keyword"}


def test_missing_or_bad_params(tmp_path):
    with pytest.raises(ModelNotAvailableError):
        FusionParams.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"groups": {}}', encoding="utf-8")
    with pytest.raises(ModelNotAvailableError):
        FusionParams.load(bad)


def test_cue_validation():
    with pytest.raises(InputError):
        Cues(2.0, 1.0)
    with pytest.raises(InputError):
        Cues(0, 1, role="boss")
    with pytest.raises(InputError):
        Cues(0, 1, text_anger=1.7)
    c = Cues(0, 1, acoustic_anger=float("nan"), delta={"loudness_db": float("inf"), "f0_st": 2.0})
    assert c.acoustic_anger is None and c.delta == {"f0_st": 2.0}


def test_from_parts_duck_typing():
    class Delta:  # shaped like pipelines.audio.baseline.FeatureDelta
        speech_rate_pct = 20.0
        f0_st = 2.0
        f0_range_st = None
        loudness_db = 4.0

    class Emo:
        probs = {"angry": 0.6, "neutral": 0.4}
        anger = 0.6

    class Lex:
        hits = [{"term": "投诉", "category": "complaint_intent", "weight": 1.0, "stage_hint": 5, "negated": False}]
        score = 1.0
        stage_hint = 5
        calming = False

    c = Cues.from_parts(0, 2, "customer", acoustic_anger=0.5, delta=Delta(), baseline_ready=True,
                        emotion=Emo(), lexicon=Lex(), text="我要投诉")
    assert c.prosody == {"speech_rate_pct": 20.0, "f0_st": 2.0, "loudness_db": 4.0}
    assert c.text_anger == 0.6 and c.keyword_stage_hint == 5 and c.active_hits[0].term == "投诉"
    assert math.isclose(sigmoid(0.0), 0.5)


def test_text_already_calibrated_passes_through(fuser):
    """Dialogue-context mode (pipelines/text/context.py): the text anger is a calibrated P(anger) of real dialogue,
    so the text group takes it as is instead of the utterance model's calibration."""
    probs = {"angry": 0.6, "happy": 0.1, "neutral": 0.2, "sad": 0.05, "fear": 0.03, "surprise": 0.02}
    ctx = fuser.fuse(Cues(t_start=0, t_end=2, text_probs=probs, text_calibrated=True))
    utt = fuser.fuse(Cues(t_start=0, t_end=2, text_probs=probs))
    assert ctx.fused == pytest.approx(0.6, abs=1e-9) and ctx.groups["text"].prob == pytest.approx(0.6)
    assert utt.fused != pytest.approx(0.6, abs=1e-3)  # the utterance model's score is recalibrated
    hit = KeywordHit(term="投诉", category="complaint_intent", weight=0.8, stage_hint=4)
    both = fuser.fuse(Cues(t_start=0, t_end=2, text_probs=probs, text_calibrated=True, keyword_hits=[hit],
                           keyword_score=0.8, keyword_stage_hint=4))
    assert set(both.available) == {"text", "keyword"} and both.fused > 0.6
