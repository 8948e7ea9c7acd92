"""One call's decision layer on its own (CallAnalyzer via DecisionModel): audio windows, transcript turns,
state round trip, alerts, view and summary.  Real fusion parameters, rules, guidance, text model and lexicon."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipelines.errors import InputError
from pipelines.fusion import CallAlert, CallAnalyzer, DecisionModel
from pipelines.fusion.engine import MIN_SPEECH_S
from pipelines.settings import REPO_ROOT

LOUD = {"speech_rate_pct": 35.0, "f0_st": 3.5, "f0_range_st": 2.0, "loudness_db": 7.0}
DATA = Path(__file__).with_name("data")
CALM = {"speech_rate_pct": 0.0, "f0_st": 0.0, "f0_range_st": 0.0, "loudness_db": 0.0}


@pytest.fixture(scope="module")
def model(models) -> DecisionModel:
    assert isinstance(models.fusion, DecisionModel)
    return models.fusion


def turn(call: CallAnalyzer, models, role: str, t0: float, t1: float, text: str):
    """A final transcript turn scored by the real text model and lexicon."""
    emo = models.text.predict([text])[0]
    lex = models.lexicon.match(text)
    return call.text_turn(role, t0, t1, text=text, text_probs=dict(emo.probs), text_anger=emo.anger,
                          keyword_hits=lex.hits, keyword_score=lex.score, keyword_stage_hint=lex.stage_hint,
                          calming=lex.calming)


def audio(call: CallAnalyzer, role: str, t0: float, anger: float, delta=None, speech_s: float = 0.9):
    return call.audio_window(role, t0, t0 + 1.0, acoustic_anger=anger, delta=delta, speech_s=speech_s,
                             baseline_ready=delta is not None)


def escalate(call: CallAnalyzer, models) -> list:
    """A calm opening, then a loud, angry customer who threatens 12315; the agent stays calm."""
    out = []
    for t in range(0, 10):
        out.append(audio(call, "customer", float(t), 0.1, CALM))
        out.append(audio(call, "agent", float(t), 0.05, CALM))
    out.append(turn(call, models, "customer", 0.5, 9.5, "你好，我想问一下我的订单什么时候到"))
    for t in range(10, 30):
        out.append(audio(call, "customer", float(t), 0.85, LOUD))
    out.append(turn(call, models, "customer", 10.2, 20.0, "我都等了三天了，说了多少遍了，你们这什么破服务"))
    out.append(turn(call, models, "customer", 20.5, 29.8, "再不解决我就打12315投诉你们！"))
    return out


def test_new_call_state_and_view(model):
    call = model.new_call()
    assert call.state_dict() == {"acoustic": {}, "trend": {"customer": [], "agent": []},
                                 "stats": {"customer_max": 0.0, "agent_max": 0.0, "anger_seconds": 0.0, "alerts": 0,
                                           "first_escalation_s": None, "anger_until": 0.0}}
    view = call.view()
    assert view["stage"]["level"] == 0 and view["anger"] == {"fused": None, "agent": None} and view["trend"] == []
    assert model.call_from_state({}).state_dict() == call.state_dict()


def test_window_without_speech_carries_no_evidence(model):
    call = model.new_call()
    r = audio(call, "customer", 0.0, 0.9, LOUD, speech_s=MIN_SPEECH_S / 2)
    assert r.fused is None and r.alerts == [] and r.stage["level"] == 0
    assert r.fields() == {"stage": r.stage}
    assert not call.assessed and "analyzer" not in call.state_dict()
    r = call.audio_window("customer", 1.0, 2.0, acoustic_anger=None, delta=None, speech_s=1.0, baseline_ready=False)
    assert r.fused is None and call.acoustic.windows == {}


def test_text_turn_fuses_the_same_speakers_audio(model, models):
    call = model.new_call()
    for t in range(4):
        audio(call, "customer", float(t), 0.8, LOUD)
    r = turn(call, models, "customer", 0.5, 3.5, "你们这什么破服务")
    assert r.fused is not None and {"acoustic", "text"} <= set(r.fused.available)
    alone = turn(call, models, "customer", 40.0, 43.0, "你们这什么破服务")  # no audio of that span
    assert alone.fused is not None and "acoustic" not in alone.fused.available and "text" in alone.fused.available
    agent = turn(call, models, "agent", 0.5, 3.5, "好的，请您稍等")  # the agent spoke no audio window here
    assert agent.fused is not None and "acoustic" not in agent.fused.available and agent.agent is not None


def test_escalation_raises_each_alert_once(model, models):
    call = model.new_call()
    results = escalate(call, models)
    alerts = [a for r in results for a in r.alerts]
    assert alerts and all(isinstance(a, CallAlert) for a in alerts)
    assert call.stage.level >= 4  # 12315 is an external complaint
    rises = [a for a in alerts if a.kind == "stage_rise"]
    assert len({a.level for a in rises}) == len(rises)  # one alert per stage reached
    assert len({a.dedup_key for a in alerts}) == len(alerts) == call.stats.alerts
    d = alerts[-1].to_dict()
    assert d["dedup_key"] == alerts[-1].dedup_key and d["stage"]["level"] == alerts[-1].level
    assert CallAlert.from_dict(json.loads(json.dumps(d, ensure_ascii=False))).to_dict() == d
    # the same threat again at the same stage: no new stage_rise alert
    again = turn(call, models, "customer", 30.5, 34.0, "再不解决我就打12315投诉你们！")
    assert not [a for a in again.alerts if a.kind == "stage_rise" and a.level <= call.stage.level]


def test_state_round_trip_continues_identically(model, models):
    call = model.new_call()
    escalate(call, models)
    saved = json.loads(json.dumps(call.state_dict(), ensure_ascii=False))  # as a store keeps it
    assert set(saved) == {"acoustic", "trend", "stats", "analyzer", "stage"}
    assert saved["stage"] == saved["analyzer"]["tracker"]["stage"]
    restored = model.call_from_state(saved)
    assert restored.state_dict() == saved
    assert restored.view() == call.view() and restored.summary() == call.summary()
    # the next window gives the same verdict on both
    nxt = [turn(c, models, "customer", 35.0, 38.0, "好的，谢谢你，问题解决了") for c in (call, restored)]
    assert nxt[0].fields() == nxt[1].fields() and nxt[0].fused.to_dict() == nxt[1].fused.to_dict()
    assert restored.state_dict() == json.loads(json.dumps(call.state_dict(), ensure_ascii=False))


def test_unknown_state_version_is_refused(model, models):
    call = model.new_call()
    audio(call, "customer", 0.0, 0.5, CALM)
    saved = call.state_dict()
    saved["analyzer"]["version"] = 99
    with pytest.raises(InputError, match="call-state version"):
        model.call_from_state(saved)


def test_summary_and_view(model, models):
    call = model.new_call()
    results = escalate(call, models)
    s = call.summary()
    assert s["peak_stage"] == call.stage.max_level >= 4
    assert s["peak_stage_name"] == model.rules.name(s["peak_stage"])
    assert s["alert_count"] == sum(len(r.alerts) for r in results) > 0
    assert s["time_to_first_escalation_s"] is not None and s["time_to_first_escalation_s"] >= 10.0
    assert s["max_anger_customer"] > s["agent_max_anger"]
    assert 0.0 < s["anger_seconds_customer"] <= 30.0  # union of angry spans: audio and turns count once
    assert s["complaint"]["type"] != "无投诉"
    view = call.view()
    assert view["stage"] == s["stage"] and view["trend"][-1][0] == pytest.approx(29.8)
    assert view["anger"]["fused"] == call.trend.last("customer")

    calm = model.new_call()
    for t in range(20):
        audio(calm, "customer", float(t), 0.05, CALM)
    turn(calm, models, "customer", 0.5, 19.0, "好的，谢谢你，问题解决了")
    cs = calm.summary()
    assert cs["peak_stage"] == 0 and cs["alert_count"] == 0 and cs["time_to_first_escalation_s"] is None


def test_a_call_stored_by_the_previous_engine_loads_and_continues_identically(model):
    """``data/fusion_state_v1.json``: a call's stored decision-layer state written by the previous engine
    (pipelines.escalation.FusionEngine, commit 440424d) on the sample escalating call, and what that engine
    returned for the next transcript turn (its text cues recorded too) and audio window.  The merged class must
    load it unchanged and, with the same fusion parameters, rules and guidance, give the same verdicts; after a
    refit of those only the shape of the verdicts is compared (no pinned scores)."""
    doc = json.loads((DATA / "fusion_state_v1.json").read_text(encoding="utf-8"))
    same_artifacts = all(hashlib.sha256((REPO_ROOT / k).read_bytes()).hexdigest() == v
                         for k, v in doc["artifacts"].items())

    def check(got: dict, expected: dict) -> None:
        if same_artifacts:
            assert got == expected
        else:
            assert set(got) == set(expected) and set(got["stage"]) == set(expected["stage"])

    call = model.call_from_state(doc["state"])
    assert call.state_dict() == doc["state"]
    t = doc["turn"]
    r = call.text_turn(t["role"], t["t_start"], t["t_end"], text=t["text"], text_probs=t["probs"],
                       text_anger=t["anger"], keyword_hits=t["keywords"], keyword_score=t["keyword_score"],
                       keyword_stage_hint=t["keyword_stage_hint"], calming=t["calming"])
    expected = dict(doc["turn_result"])
    expected_alerts = expected.pop("_alerts")
    check({"fused": r.fused.to_dict(), **r.fields()}, expected)
    assert r.stage["level"] >= doc["state"]["stage"]["level"]  # 我要投诉 / 12315 never lowers the stage
    if same_artifacts:
        assert [x.to_dict() for x in r.alerts] == expected_alerts
    a = doc["audio"]
    r = call.audio_window(a["role"], a["t_start"], a["t_end"], acoustic_anger=a["acoustic_anger"], delta=a["delta"],
                          speech_s=a["speech_s"], baseline_ready=a["baseline_ready"])
    expected = dict(doc["audio_result"])
    expected_alerts = expected.pop("_alerts")
    check({"fused": r.fused.to_dict(), **r.fields()}, expected)
    if same_artifacts:
        assert [x.to_dict() for x in r.alerts] == expected_alerts
        assert json.loads(json.dumps(call.state_dict(), ensure_ascii=False)) == doc["state_after"]
        assert call.view() == doc["view_after"] and call.summary() == doc["summary_after"]
    assert set(call.state_dict()) == set(doc["state_after"])
