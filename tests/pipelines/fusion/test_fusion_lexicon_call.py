"""A scripted Mandarin call through the real lexicon and the whole decision layer (text cues only)."""
from __future__ import annotations

import pytest

from pipelines.fusion.cues import Cues
from pipelines.fusion.engine import CallAnalyzer

lexicon_mod = pytest.importorskip("pipelines.text.lexicon")


@pytest.fixture(scope="module")
def lexicon():
    return lexicon_mod.KeywordLexicon.load()


def customer(lexicon, t0: float, text: str) -> Cues:
    dur = max(1.0, len(text) / 4.0)
    return Cues.from_parts(t0, t0 + dur, "customer", lexicon=lexicon.match(text), text=text)


def test_scripted_call(lexicon, fuser):
    call = CallAnalyzer(fuser)
    script = [
        "你好，我想查一下我的退款",
        "我都打了三次电话了，退款到底什么时候到账",
        "我说了多少遍了，退款到底什么时候到账",
        "你们这什么破服务，我要投诉你们",
        "再不给我解决我就去12315投诉",
    ]
    t, out = 0.0, []
    for text in script:
        c = customer(lexicon, t, text)
        out.append(call.process(c))
        t = c.t_end + 2.0
    levels = [a.stage.level for a in out]
    assert levels == sorted(levels)
    assert levels[0] <= 1
    assert "第三次重复同一诉求" in out[2].explanation.text
    assert levels[2] >= 3
    assert levels[3] == 5 and "我要投诉你们" in out[3].explanation.text
    # the conditional 12315 threat keeps stage 5 (the lexicon lowers conditional hints by one) but the
    # guidance brings in the supervisor and names the external threat
    assert any("主管" in g for g in out[4].guidance)
    assert any("外部" in g for g in out[4].guidance)
    alerts = [a.alert for a in out if a.alert]
    assert [a.level for a in alerts if a.kind == "stage_rise"] == sorted({a.level for a in alerts if a.kind == "stage_rise"})
    # the customer calms down: stage steps down but the lodged complaint stays >= 潜在投诉
    for text in ["好的，谢谢你", "明白了，那就好", "好的，谢谢你，问题解决了"] * 6:
        c = customer(lexicon, t, text)
        call.process(c)
        t = c.t_end + 1.0
    assert call.stage.level == 4
    res = call.finish()
    # a (conditional) threat to go to 12315 makes it an escalated complaint
    assert res.type == "升级投诉" and res.max_level == 5 and "12315" in res.reason


def test_negated_and_calm(lexicon, fuser):
    call = CallAnalyzer(fuser)
    a = call.process(customer(lexicon, 0.0, "我不是要投诉，就是问问"))
    assert a.stage.level == 0 and a.alert is None
