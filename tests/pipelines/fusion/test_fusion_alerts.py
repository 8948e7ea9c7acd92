from __future__ import annotations

import json

from helpers_fusion import fused_of, win

from pipelines.fusion.alerts import AlertMemory, AlertPolicy
from pipelines.fusion.explain import explain
from pipelines.fusion.stage import StageTracker


class Call:
    """Tracker + alert policy driven with chosen fused values."""

    def __init__(self, rules):
        self.tr = StageTracker(rules)
        self.pol = AlertPolicy(rules)
        self.mem = AlertMemory()
        self.alerts = []

    def step(self, t0, dur, p, **kw):
        c = win(t0, t0 + dur, **kw)
        f = fused_of(p)
        u = self.tr.update(c, f)
        a = self.pol.decide(u, p, c.t_start, c.t_end, self.mem, explain(c, f, u), ["先处理心情"])
        if a:
            self.alerts.append(a)
        return a


def test_no_alert_below_min_level(rules):
    call = Call(rules)
    p1 = (rules.rise[1] + rules.rise[2]) / 2
    call.step(0, 2, p1)
    call.step(2, 2, p1)
    assert call.tr.state.level == 1 and call.alerts == []


def test_stage_rise_alert_and_dedup(rules):
    call = Call(rules)
    t = 0.0
    for _ in range(4):
        call.step(t, 2, 0.9)
        t += 2
    rises = [a for a in call.alerts if a.kind == "stage_rise"]
    assert rises and rises[-1].level == 3 and rises[-1].stage_name == "显化抱怨"
    assert rises[-1].severity == rules.severity[3]
    assert rises[-1].guidance == ["先处理心情"] and rises[-1].explanation.startswith("怒气")
    n3 = sum(1 for a in rises if a.level == 3)
    # drop one stage and rise again quickly: deduplicated (cool-down not over)
    while call.tr.state.level == 3:
        call.step(t, 2, 0.05)
        t += 2
    for _ in range(3):
        call.step(t, 2, 0.9)
        t += 2
    assert call.tr.state.level == 3
    assert sum(1 for a in call.alerts if a.kind == "stage_rise" and a.level == 3) == n3
    # after the cool-down, a new drop and rise alerts again
    t += rules.alert_cooldown_s
    while call.tr.state.level == 3:
        call.step(t, 2, 0.05)
        t += 2
    for _ in range(3):
        call.step(t, 2, 0.9)
        t += 2
    assert sum(1 for a in call.alerts if a.kind == "stage_rise" and a.level == 3) == n3 + 1


def test_keyword_jump_alerts_once(rules):
    call = Call(rules)
    hit = {"term": "12315", "category": "external_escalation", "stage_hint": 6}
    call.step(0, 2, 0.6, keyword_hits=[hit])
    call.step(3, 2, 0.6, keyword_hits=[hit])
    six = [a for a in call.alerts if a.kind == "stage_rise"]
    assert len(six) == 1 and six[0].level == 6 and six[0].severity == "critical"
    assert "12315" in six[0].explanation


def test_sustained_anger_alert(rules):
    call = Call(rules)
    t = 0.0
    for _ in range(6):
        call.step(t, 2, 0.9)
        t += 2
    kinds = [a.kind for a in call.alerts]
    assert "sustained_anger" in kinds
    sus = [a for a in call.alerts if a.kind == "sustained_anger"]
    assert len(sus) == 1 and "持续" in sus[0].explanation
    # one loud window is not sustained
    call2 = Call(rules)
    call2.step(0, 1, 0.99)
    assert call2.alerts == []


def test_alert_memory_round_trip(rules):
    call = Call(rules)
    for i in range(4):
        call.step(2.0 * i, 2, 0.9)
    d = json.loads(json.dumps(call.mem.state_dict()))
    assert AlertMemory.from_state(d).state_dict() == call.mem.state_dict()
    assert json.loads(json.dumps(call.alerts[0].to_dict(), ensure_ascii=False))["stage_name"]
