from __future__ import annotations

import json

from helpers_fusion import fused_of, win

from pipelines.fusion.complaint import classify_complaint
from pipelines.fusion.engine import CallAnalyzer
from pipelines.fusion.stage import StageTracker
from pipelines.text.lexicon import KeywordHit

LOUD = {"speech_rate_pct": 40.0, "f0_st": 4.0, "loudness_db": 8.0}


def run(rules, steps):
    tr = StageTracker(rules)
    t = 0.0
    for p, kw in steps:
        tr.update(win(t, t + 2.0, **kw), fused_of(p))
        t += 2.5
    return tr, t


def test_no_complaint(rules):
    tr, t = run(rules, [(0.9, {})] * 4)
    res = classify_complaint(tr.state, tr.stats, t, rules)
    assert res.type == "无投诉" and res.max_level == 3 and "显化抱怨" in res.reason


def test_ordinary_complaint(rules):
    tr, t = run(rules, [(0.6, {"keyword_hits": [KeywordHit("投诉", "complaint_intent", 1.0, 5)]})]
                + [(0.05, {"calming": True})] * 30)
    res = classify_complaint(tr.state, tr.stats, t, rules)
    assert res.type == "普通投诉" and res.max_level == 5
    assert tr.state.level < 5 and "缓解" in res.reason and f"结束时为「{tr.state.name}」" in res.reason


def test_ordinary_complaint_reason_does_not_contradict_itself(rules):
    """Issue 17 item 19: 「达到投诉，通话中得到缓解（结束时：投诉）」: no relief when the call ends where it peaked."""
    tr, t = run(rules, [(0.6, {"keyword_hits": [KeywordHit("投诉", "complaint_intent", 1.0, 5)]})])
    res = classify_complaint(tr.state, tr.stats, t, rules)
    assert res.type == "普通投诉" and tr.state.level == 5
    assert "缓解" in res.reason and "未见缓解" in res.reason and "得到缓解" not in res.reason
    # the stage is named as a stage, never bare next to the type
    assert "阶段达到「投诉」" in res.reason


def test_escalated_complaint(rules):
    tr, t = run(rules, [(0.6, {"keyword_hits": [KeywordHit("媒体曝光", "external_escalation", 1.0, 6)]})])
    res = classify_complaint(tr.state, tr.stats, t, rules)
    assert res.type == "升级投诉" and "媒体曝光" in res.reason


def test_major_complaint(rules):
    tr, t = run(rules, [(0.6, {"keyword_hits": [KeywordHit("投诉", "complaint_intent", 1.0, 5),
                                               KeywordHit("赔偿", "demands", 0.6, 4)]})])
    assert classify_complaint(tr.state, tr.stats, t, rules).type == "重大投诉"


def test_difficult_complaint(rules):
    steps = [(0.6, {"keyword_hits": [KeywordHit("投诉", "complaint_intent", 1.0, 5)]})]
    steps += [(0.5, {"text": "我的退款到底什么时候到账"})] * 3
    tr, t = run(rules, steps)
    res = classify_complaint(tr.state, tr.stats, t, rules)
    assert res.type == "疑难投诉" and "重复" in res.reason


def test_engine_end_to_end(fuser):
    call = CallAnalyzer(fuser)
    out = [call.process(win(0, 3, text_anger=0.05, text="你好，我想问一下我的订单"))]
    out.append(call.process(win(2, 5, role="agent", text_anger=0.02,
                                delta={"speech_rate_pct": 55.0, "loudness_db": 9.0}, baseline_ready=True,
                                text="你有病吧",
                                keyword_hits=[KeywordHit("你有病", "insults", 0.7, 3)])))
    t = 5.0
    for _ in range(4):
        out.append(call.process(win(t, t + 3, text_anger=0.9, acoustic_anger=0.85, delta=LOUD, baseline_ready=True,
                                    text="你们这是什么服务态度")))
        t += 3
    state = json.loads(json.dumps(call.state_dict(), ensure_ascii=False))
    call = CallAnalyzer.from_state(fuser, state)
    out.append(call.process(win(t, t + 2, text_anger=0.7, text="我要打12315投诉你们",
                                keyword_hits=[KeywordHit("12315", "external_escalation", 1.0, 6)])))
    ag = out[1].agent
    assert ag is not None and {f.code for f in ag.flags} >= {"fast", "loud", "insult", "confront"}
    assert out[1].guidance and out[1].stage.level == 0
    assert out[0].alert is None
    alerts = [a.alert for a in out if a.alert]
    assert alerts and alerts[-1].level == 6 and any("主管" in g for g in alerts[-1].guidance)
    assert out[-1].stage.name == "投诉升级"
    assert call.finish().type == "升级投诉"
    json.dumps([a.to_dict() for a in out], ensure_ascii=False)
