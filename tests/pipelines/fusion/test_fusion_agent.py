from __future__ import annotations

import json

import pytest
from helpers_fusion import fused_of, win

from pipelines.errors import InputError
from pipelines.fusion.agent import AgentMonitor

CALM = {"speech_rate_pct": 3.0, "loudness_db": 0.5}
HOT = {"speech_rate_pct": 35.0, "loudness_db": 8.0}


def test_agent_anger_uses_the_same_fusion(fuser, rules):
    m = AgentMonitor(rules)
    c = win(0, 3, role="agent", text_anger=0.8, acoustic_anger=0.8, delta=HOT, baseline_ready=True)
    a = m.update(c, fuser.fuse(c))
    cust = win(0, 3, role="customer", text_anger=0.8, acoustic_anger=0.8, delta=HOT, baseline_ready=True)
    assert a.agent_anger == pytest.approx(fuser.fuse(cust).fused)
    assert {"fast", "loud"} <= {f.code for f in a.flags}
    texts = " ".join(f.text_zh for f in a.flags)
    assert "坐席语速过快（比开场快 35%）" in texts and "坐席音量升高 8 dB" in texts


def test_confrontation_flag_follows_the_threshold(rules):
    c = win(0, 3, role="agent", text_anger=0.8, delta=HOT, baseline_ready=True)
    hot = AgentMonitor(rules).update(c, fused_of(min(0.99, rules.agent_anger + 0.05)))
    assert "confront" in {f.code for f in hot.flags}
    assert any("顶撞" in f.text_zh for f in hot.flags)
    cool = AgentMonitor(rules).update(c, fused_of(rules.agent_anger - 0.05))
    assert "confront" not in {f.code for f in cool.flags}


def test_calm_agent_and_short_blips(fuser, rules):
    m = AgentMonitor(rules)
    c = win(0, 3, role="agent", text_anger=0.02, delta=CALM, baseline_ready=True)
    assert m.update(c, fuser.fuse(c)).flags == []
    blip = win(3, 3 + rules.agent_min_seconds / 2, role="agent", delta=HOT, baseline_ready=True)
    assert m.update(blip, fuser.fuse(blip)).flags == []  # too short to flag
    d = json.loads(json.dumps(m.state_dict()))
    assert AgentMonitor.from_state(d, rules).state_dict() == m.state_dict()


def test_customer_cues_refused(fuser, rules):
    with pytest.raises(InputError):
        AgentMonitor(rules).update(win(0, 1), fuser.fuse(win(0, 1)))
