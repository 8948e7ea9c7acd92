from __future__ import annotations

import pytest
from helpers_fusion import win

from pipelines.errors import InputError
from pipelines.fusion.explain import explain
from pipelines.fusion.guidance import Guidance
from pipelines.fusion.stage import StageTracker
from pipelines.text.lexicon import KeywordHit

LOUD = {"speech_rate_pct": 38.0, "f0_st": 4.2, "loudness_db": 6.0}


def test_explanation_names_the_numbers(fuser):
    c = win(0, 3, text_anger=0.82, delta=LOUD, baseline_ready=True,
            keyword_hits=[KeywordHit("12315", "external_escalation", 1.0, 6)])
    e = explain(c, fuser.fuse(c), top_k=10)
    texts = [x.text_zh for x in e.cues]
    assert "语速比开场快 38%" in texts
    assert "音调升高 4.2 个半音" in texts
    assert "音量提高 6 dB" in texts
    assert "提到“12315”" in texts
    assert "文本情绪：愤怒 0.82" in texts
    assert all(x.text_zh in e.text for x in e.cues)
    assert e.text.startswith("怒气 ")
    weights = [x.weight for x in e.cues]
    assert weights == sorted(weights, reverse=True)
    d = e.to_dict()
    assert {"kind", "value", "text_zh", "weight"} <= set(d["cues"][0])


def test_explanation_with_acoustic_model_keeps_prosody_cues(fuser):
    c = win(0, 3, acoustic_anger=0.85, delta=LOUD, baseline_ready=True)
    e = explain(c, fuser.fuse(c), top_k=10)
    kinds = {x.kind for x in e.cues}
    assert {"acoustic", "speech_rate", "pitch", "loudness"} <= kinds
    assert "声音怒气 0.85" in e.text


def test_explanation_of_repetition_and_stage_change(rules, fuser):
    tr = StageTracker(rules)
    t = 0.0
    for _ in range(3):
        c = win(t, t + 2.5, text_anger=0.3, text="我的退款到底什么时候到账")
        u = tr.update(c, fuser.fuse(c))
        t += 3.0
    e = explain(c, fuser.fuse(c), u)
    assert "第三次重复同一诉求" in e.text
    assert "阶段升至显化抱怨" in e.text


def test_calm_window_has_short_explanation(fuser):
    c = win(0, 2, text_anger=0.02, delta={"speech_rate_pct": 2.0, "f0_st": 0.1, "loudness_db": 0.5},
            baseline_ready=True)
    e = explain(c, fuser.fuse(c))
    assert e.cues == [] and e.text.startswith("怒气 0.")


def test_guidance_per_stage():
    g = Guidance.load()
    seen = set()
    for lvl in range(7):
        lines = g.choose(lvl, max_lines=3)
        assert 1 <= len(lines) <= 3
        assert all(len(x) <= 40 for x in lines)  # readable in ~2 s
        seen.add(tuple(lines))
    assert len(seen) == 7  # every stage has its own advice
    assert any("主管" in x for x in g.choose(5))
    assert not any("主管介入" in x for x in g.choose(2))


def test_guidance_follows_dominant_cue_and_threats():
    g = Guidance.load()
    assert any("重复" in x for x in g.choose(3, ["repetition", "loudness"]))
    ext = g.choose(2, ["external", "loudness"])
    assert "主管" in ext[0] and any("外部" in x for x in ext)
    assert any("别让客户等" in x for x in g.choose(2, ["killer_wait"]))
    assert g.choose(2, ["killer_wait"])[-1] in g.stages[2]  # stage advice still shown
    assert len(g.apology) >= 2
    assert g.agent_lines(["fast", "unknown"]) == [g.agent_flags["fast"]]


def test_guidance_file_must_cover_all_stages(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("stages: {0: [a]}\nsupervisor: {min_level: 5, line: x}\n", encoding="utf-8")
    with pytest.raises(InputError):
        Guidance.load(p)


def test_keyword_cue_kinds(fuser):
    c = win(0, 2, text_anger=0.5, keyword_hits=[
        KeywordHit("12315", "external_escalation", 0.85, 6),
        KeywordHit("等了半天", "repetition_waiting", 0.4, 2, killer="wait"),
        KeywordHit("赔偿", "demands", 0.6, 4), KeywordHit("工号", "complaint_intent", 0.6, 4)])
    kinds = {x.kind for x in explain(c, fuser.fuse(c), top_k=10).cues}
    assert {"external", "killer_wait", "demand", "complaint"} <= kinds
