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


def test_guidance_fits_the_stage_at_calm(fuser, rules):
    """Issue 17 item 17: a calm call (stage 0) whose fused anger sits at 0.12-0.23 with an acoustic score >= 0.3
    carried 「客户情绪激动：先安抚情绪，再谈处理方案」 next to 平静."""
    from pipelines.fusion.engine import CallAnalyzer

    g = Guidance.load()
    agitated = [x for k in ("acoustic", "pitch", "pitch_range", "text_emotion", "loudness", "speech_rate")
                for x in g.cues[k]]
    for a in (0.3, 0.4, 0.6, 0.9):
        call = CallAnalyzer(fuser, rules, g)
        r = call.audio_window("customer", 0, 1, acoustic_anger=a, speech_s=0.9, baseline_ready=True,
                              delta={"speech_rate_pct": 12.0, "f0_st": 1.5, "loudness_db": 3.5})
        assert r.stage["level"] == 0 and r.fused is not None
        assert not set(r.guidance) & set(agitated), (a, r.fused.fused, r.guidance)
        assert r.guidance == g.stages[0][:len(r.guidance)]
    assert g.choose(0, ["acoustic"]) == g.stages[0][:3]
    # once the stage has risen, the cue's line is back
    assert g.cues["acoustic"][0] in g.choose(2, ["acoustic"])
    assert g.cues["loudness"][0] in g.choose(1, ["loudness"])
    # what the customer said still gets its line at any stage
    assert any("别让客户等" in x for x in g.choose(0, ["killer_wait"]))


def test_guidance_cue_min_level_is_checked(tmp_path):
    from pipelines.fusion.guidance import GUIDANCE_PATH

    bad = GUIDANCE_PATH.read_text(encoding="utf-8").replace("  acoustic: 2\n", "  acoustic: 9\n")
    p = tmp_path / "g.yaml"
    p.write_text(bad, encoding="utf-8")
    with pytest.raises(InputError, match="cue_min_level"):
        Guidance.load(p)
