from __future__ import annotations

import json

import pytest
from helpers_fusion import fused_of, win

from pipelines.errors import InputError
from pipelines.fusion.stage import StageState, StageTracker, text_similarity, zh_ordinal
from pipelines.text.lexicon import KeywordHit


def feed(tr: StageTracker, t0: float, dur: float, p: float, **kw):
    return tr.update(win(t0, t0 + dur, **kw), fused_of(p))


def test_starts_calm(rules):
    tr = StageTracker(rules)
    assert tr.state.level == 0 and tr.state.name == "平静" and tr.state.history == []


def test_one_loud_second_does_not_raise(rules):
    tr = StageTracker(rules)
    u = feed(tr, 0.0, 1.0, 0.97)
    assert u.state.level == 0 and not u.changed
    # calm speech afterwards: still nothing
    for i in range(5):
        feed(tr, 1.5 + 2 * i, 2.0, 0.05)
    assert tr.state.level == 0


def test_persistent_anger_raises_step_by_step(rules):
    tr = StageTracker(rules)
    levels = [feed(tr, 2.0 * i, 2.0, 0.9).state.level for i in range(4)]
    assert levels[0] <= 1  # one 2-s window: at most 潜在不满
    assert levels[-1] == 3  # sustained anger reaches 显化抱怨
    assert levels == sorted(levels)
    assert tr.state.history[-1].reason  # every transition names a reason
    # anger alone never claims a complaint (stages 4-6 need words or long sustained fury)
    high = (rules.rise[3] + rules.sustained4_threshold) / 2
    for i in range(4, 30):
        feed(tr, 2.0 * i, 2.0, high)
    assert tr.state.level == 3


def test_sustained_fury_reaches_potential_complaint(rules):
    tr = StageTracker(rules)
    thr = rules.sustained4_threshold
    secs = rules.sustained4_seconds
    t = 0.0
    while t < secs + 4:
        feed(tr, t, 2.0, min(0.99, thr + 0.1))
        t += 2.0
    assert tr.state.level == 4


def test_hysteresis_band_holds_the_stage(rules):
    tr = StageTracker(rules)
    for i in range(4):
        feed(tr, 2.0 * i, 2.0, 0.9)
    assert tr.state.level == 3
    band = (rules.fall[3] + rules.rise[3]) / 2  # below the rise threshold, above the fall threshold
    t = 8.0
    for _ in range(20):  # 40 s in the band: no decay
        feed(tr, t, 2.0, band)
        t += 2.0
    assert tr.state.level == 3


def test_decay_after_calm_speech(rules):
    tr = StageTracker(rules)
    for i in range(4):
        feed(tr, 2.0 * i, 2.0, 0.9)
    assert tr.state.level == 3
    t = 8.0
    needed = rules.decay_seconds[3]
    calm = 0.0
    while calm < needed - 2.0:
        feed(tr, t, 2.0, 0.05)
        t += 2.0
        calm += 2.0
    assert tr.state.level == 3  # not yet
    u = feed(tr, t, 2.0, 0.05)
    assert u.changed and u.state.level == 2 and "平静" in u.reason
    # keeps stepping down with more calm speech
    for _ in range(40):
        t += 2.0
        feed(tr, t, 2.0, 0.05)
    assert tr.state.level == 0


def test_calming_words_decay_faster(rules):
    def run(calming: bool) -> int:
        tr = StageTracker(rules)
        for i in range(4):
            feed(tr, 2.0 * i, 2.0, 0.9)
        t, n = 8.0, 0
        while tr.state.level == 3:
            feed(tr, t, 2.0, 0.1, calming=calming)
            t += 2.0
            n += 1
        return n

    assert run(True) < run(False)


def test_external_threat_jumps_immediately(rules):
    tr = StageTracker(rules)
    u = feed(tr, 0.0, 1.5, 0.4, text="再不处理我就打12315",
             keyword_hits=[KeywordHit("12315", "external_escalation", 1.0, 6)])
    assert u.changed and u.state.level == 6 and u.state.name == "投诉升级"
    assert "12315" in u.reason


def test_complaint_intent_and_floor(rules):
    tr = StageTracker(rules)
    u = feed(tr, 0.0, 2.0, 0.5, keyword_hits=[{"term": "投诉", "category": "complaint_intent", "stage_hint": 5}])
    assert u.state.level == 5
    t = 2.0
    for _ in range(200):  # a long calm tail never erases a lodged complaint
        feed(tr, t, 2.0, 0.02, calming=True)
        t += 2.0
    assert tr.state.level == rules.floor_after[5]


def test_negated_complaint_does_not_jump(rules):
    tr = StageTracker(rules)
    u = feed(tr, 0.0, 2.0, 0.1, text="我不是要投诉",
             keyword_hits=[KeywordHit("投诉", "complaint_intent", 1.0, 5, negated=True)])
    assert u.state.level == 0


def test_weak_keyword_hints_need_persistence(rules):
    tr = StageTracker(rules)
    u = feed(tr, 0.0, 1.0, 0.1, keyword_hits=[KeywordHit("怎么回事", "dissatisfaction", 0.5, 2)])
    assert u.state.level < 2


def test_repetition_counting_by_text(rules):
    tr = StageTracker(rules)
    ups = []
    t = 0.0
    mild = (rules.weak_min_anger + rules.rise[1]) / 2  # some displeasure, no stage support by itself
    for text in ("我的退款到底什么时候到账", "好的", "那我的退款到底什么时候到账啊", "嗯嗯",
                 "我就问我的退款到底什么时候到账"):
        ups.append(feed(tr, t, 2.5, mild, text=text))
        t += 3.0
    assert [u.repetition for u in ups if u.repetition] == [1, 2, 3]
    assert ups[-1].state.level >= rules.rep_floors[3]
    assert "第三次重复同一诉求" in ups[-1].reason


def test_repetition_by_keyword_category_and_resend(rules):
    tr = StageTracker(rules)
    hit = KeywordHit("退款", "demands", 0.35, 2)
    mild = (rules.weak_min_anger + rules.rise[1]) / 2
    a = feed(tr, 0.0, 2.0, mild, text="退款", keyword_hits=[hit])
    again = tr.update(win(0.0, 2.0, text="退款", keyword_hits=[hit]), fused_of(mild))  # same turn re-sent
    b = feed(tr, 5.0, 2.0, mild, text="钱什么时候退给我", keyword_hits=[hit])
    assert (a.repetition, again.repetition, b.repetition) == (1, 0, 2)
    # short fillers never count as repeated demands
    tr2 = StageTracker(rules)
    assert max(feed(tr2, 2.0 * i, 1.0, 0.1, text="好的").repetition for i in range(5)) == 0


def test_state_round_trip(rules):
    tr = StageTracker(rules)
    for i in range(3):
        feed(tr, 2.0 * i, 2.0, 0.9, text=f"为什么还没有处理我的问题{i}")
    d = json.loads(json.dumps(tr.state_dict(), ensure_ascii=False))
    tr2 = StageTracker.from_state(d, rules)
    assert tr2.state_dict() == tr.state_dict()
    # both continue identically
    u1 = feed(tr, 6.0, 2.0, 0.9)
    u2 = feed(tr2, 6.0, 2.0, 0.9)
    assert u1.state.state_dict() == u2.state.state_dict()
    s = StageState.from_state(u1.state.state_dict())
    assert s == u1.state
    with pytest.raises(InputError):
        StageTracker.from_state({**d, "version": 99}, rules)


def test_agent_windows_are_refused(rules):
    with pytest.raises(InputError):
        StageTracker(rules).update(win(0, 1, role="agent"), fused_of(0.5))


def test_helpers():
    assert zh_ordinal(3) == "第三次" and zh_ordinal(12) == "第 12 次"
    assert text_similarity("退款什么时候到账", "退款什么时候到账啊") > 0.8
    assert text_similarity("退款什么时候到账", "今天天气很好") < 0.2


def test_ambiguous_strong_hint_needs_angry_context(rules):
    weak = KeywordHit("网上", "external_escalation", 0.55, 6)
    tr = StageTracker(rules)
    assert feed(tr, 0.0, 2.0, 0.1, text="我在网上买的", keyword_hits=[weak]).state.level == 0
    tr = StageTracker(rules)
    assert feed(tr, 0.0, 2.0, 0.8, text="我要发到网上", keyword_hits=[weak]).state.level == 6


def test_conditional_threat_hint_is_respected(rules):
    # the lexicon lowers 「再不解决我就打12315」 to stage 5: the tracker follows the hint it is given
    tr = StageTracker(rules)
    calm = rules.weak_min_anger / 2
    u = feed(tr, 0.0, 2.0, calm, keyword_hits=[KeywordHit("12315", "external_escalation", 0.595, 5, hypothetical=True)])
    assert u.state.level == 5


def test_weak_keywords_lift_one_stage_above_anger(rules):
    hit = KeywordHit("太慢了", "dissatisfaction", 0.45, 3)
    tr = StageTracker(rules)
    mild = (rules.weak_min_anger + rules.rise[1]) / 2  # some anger, below stage 1 by itself
    for i in range(6):
        feed(tr, 3.0 * i, 3.0, mild, keyword_hits=[hit])
    assert tr.state.level == 1 and "不满用语" in tr.state.history[0].reason
    # a calm request with a demand word is not dissatisfaction
    tr = StageTracker(rules)
    for i in range(6):
        feed(tr, 3.0 * i, 3.0, rules.weak_min_anger / 2, keyword_hits=[KeywordHit("退款", "demands", 0.35, 2)])
    assert tr.state.level == 0


def test_audio_chunk_and_its_turn_do_not_count_twice(rules):
    """The live service feeds audio chunks and, later, the transcript turn over the same speech."""
    tr = StageTracker(rules)
    dur = max(rules.persist_seconds[3], 1.0)
    hot = 0.97
    feed(tr, 0.0, dur, hot)  # audio chunk
    u = feed(tr, 0.0, dur, hot, text="你们到底怎么回事")  # the transcript turn of the same speech
    assert u.state.level < 3 or rules.persist_windows[3] <= 1
    # calm speech: an overlapping chunk + turn counts its seconds once toward decay
    tr = StageTracker(rules)
    for i in range(6):
        feed(tr, 2.0 * i, 2.0, hot, text=f"第{i}句")
    assert tr.state.level == 3
    t = 12.0
    calm = rules.fall[1] / 2
    u1 = feed(tr, t, 2.0, calm)
    u2 = feed(tr, t, 2.0, calm, text="好")
    assert u2.calm_seconds == pytest.approx(u1.calm_seconds)


def test_union_seconds():
    from pipelines.fusion.stage import union_seconds

    assert union_seconds([[0, 2], [1, 3], [5, 6]]) == pytest.approx(4.0)
    assert union_seconds([]) == 0.0
