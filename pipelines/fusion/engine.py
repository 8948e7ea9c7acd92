"""One call's decision layer: fuse -> stage -> explain -> guidance -> alert (and agent QA, complaint type).

:class:`DecisionModel` holds what is loaded once per process (fusion parameters, rules, guidance);
:class:`CallAnalyzer` is one call's decision layer: stage tracker, agent monitor, alert memory, anger trend,
running statistics and each speaker's recent acoustic windows, all typed, saved with :meth:`CallAnalyzer.state_dict`
and restored with :meth:`DecisionModel.call_from_state` between chunks::

    model = DecisionModel.load(settings.models_dir / "fusion")    # once per process
    call = model.call_from_state(saved)                          # {} for a new call
    r = call.audio_window("customer", 3.0, 4.0, acoustic_anger=0.7, delta=..., speech_s=0.9, baseline_ready=True)
    r = call.text_turn("customer", 2.0, 4.5, text="我要投诉", text_probs=..., keyword_hits=...)
    r.alerts                                                     # CallAlert list (store/deliver them yourself)
    saved = call.state_dict()
    call.view(), call.summary()                                  # live view, end-of-call summary

An audio window carries acoustic cues (acoustic anger, deltas); a final transcript turn carries text cues
(emotion, keywords, repetition) *and* the same speaker's acoustic cues over the turn's time span, so all three
cue families are fused when all three exist; missing ones degrade gracefully.  :meth:`CallAnalyzer.process`
takes ready-made :class:`Cues` (used by the evaluations).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipelines.errors import InputError
from pipelines.fusion.agent import AgentAssessment, AgentMonitor
from pipelines.fusion.alerts import AlertDecision, AlertMemory, AlertPolicy
from pipelines.fusion.call_memory import AcousticHistory, AcousticWindow, AngerTrend, CallAlert, CallStats
from pipelines.fusion.complaint import ComplaintResult, classify_complaint
from pipelines.fusion.cues import Cues
from pipelines.fusion.explain import Explanation
from pipelines.fusion.explain import explain as explain_window
from pipelines.fusion.fuse import FusedAnger, Fuser
from pipelines.fusion.guidance import Guidance, default_guidance
from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import StageState, StageTracker

log = logging.getLogger("nuqi.fusion.engine")

ENGINE_STATE_VERSION = 1
MIN_SPEECH_S = 0.25  # an audio window with less speech than this carries no acoustic evidence
VIEW_TREND_POINTS = 120  # trend points in the live view


@dataclass
class Assessment:
    """The decision layer's verdict on one window."""

    t_start: float
    t_end: float
    role: str
    anger: FusedAnger  # customer anger for customer windows, agent anger for agent windows
    stage: StageState  # the customer's stage after this window (unchanged by agent windows)
    changed: bool
    explanation: Explanation
    guidance: list[str]
    alert: AlertDecision | None = None
    agent: AgentAssessment | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "t_start": round(self.t_start, 3),
            "t_end": round(self.t_end, 3),
            "role": self.role,
            "anger": self.anger.to_dict(),
            "stage": {"level": self.stage.level, "name": self.stage.name, "since": round(self.stage.since, 3)},
            "changed": self.changed,
            "explanation": self.explanation.to_dict(),
            "guidance": list(self.guidance),
            "alert": self.alert.to_dict() if self.alert else None,
            "agent": self.agent.to_dict() if self.agent else None,
        }


@dataclass
class WindowResult:
    """What one audio window or transcript turn did to the call.

    ``fused`` is None when the window carried no evidence (too little speech, no acoustic score): the call's
    stage stands and only ``stage`` is reported.
    """

    stage: dict[str, Any]  # the call's stage after the window (StageState.state_dict(): with its history)
    fused: FusedAnger | None = None
    explanation: Explanation | None = None
    guidance: list[str] = field(default_factory=list)
    agent: AgentAssessment | None = None
    alerts: list[CallAlert] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The JSON fields this result adds to a timeline entry or utterance (besides the fused anger)."""
        if self.fused is None:
            return {"stage": self.stage}
        assert self.explanation is not None
        out: dict[str, Any] = {"stage": self.stage, "explanation": self.explanation.to_dict(),
                               "guidance": self.guidance}
        if self.agent is not None:
            out["agent"] = self.agent.to_dict()
        return out


class CallAnalyzer:
    """One call's decision layer (not thread-safe; one per call, rebuilt from its saved state per chunk)."""

    def __init__(self, fuser: Fuser, rules: Rules | None = None, guidance: Guidance | None = None) -> None:
        self.fuser = fuser
        self.rules = rules or default_rules()
        self.guidance = guidance or default_guidance()
        self.tracker = StageTracker(self.rules)
        self.agent = AgentMonitor(self.rules)
        self.alerts = AlertPolicy(self.rules)
        self.alert_memory = AlertMemory()
        self.trend = AngerTrend()
        self.stats = CallStats()
        self.acoustic = AcousticHistory()
        self.assessed = False  # whether any window has been fused yet (a new call has no stage to report)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (the shape stored in ``CallState.fusion``)."""
        d: dict[str, Any] = {
            "acoustic": self.acoustic.state_dict(),
            "trend": self.trend.state_dict(),
            "stats": self.stats.state_dict(),
        }
        if self.assessed:
            d["analyzer"] = {
                "version": ENGINE_STATE_VERSION,
                "tracker": self.tracker.state_dict(),
                "agent": self.agent.state_dict(),
                "alerts": self.alert_memory.state_dict(),
            }
            d["stage"] = self.stage.state_dict()  # derived, kept for readers of the stored state
        return d

    @classmethod
    def from_state(cls, fuser: Fuser, d: Mapping[str, Any] | None, rules: Rules | None = None,
                   guidance: Guidance | None = None) -> "CallAnalyzer":
        """Inverse of :meth:`state_dict`; an empty or missing state is a new call."""
        c = cls(fuser, rules, guidance)
        if not d:
            return c
        c.acoustic = AcousticHistory.from_state(d.get("acoustic"))
        c.trend = AngerTrend.from_state(d.get("trend"))
        c.stats = CallStats.from_state(d.get("stats"))
        inner = d.get("analyzer")
        if inner:
            if int(inner.get("version", 0)) != ENGINE_STATE_VERSION:
                raise InputError(f"unsupported call-state version {inner.get('version')!r}")
            c.tracker = StageTracker.from_state(inner["tracker"], c.rules)
            c.agent = AgentMonitor.from_state(inner.get("agent", {}), c.rules)
            c.alert_memory = AlertMemory.from_state(inner.get("alerts", {}))
            c.assessed = True
        return c

    @property
    def stage(self) -> StageState:
        return self.tracker.state

    # ------------------------------------------------------------------ steps
    def process(self, cues: Cues) -> Assessment:
        """Fuse one window's cues and advance the stage, the agent monitor and the alert memory."""
        self.assessed = True
        fused = self.fuser.fuse(cues)
        if cues.role == "agent":
            ag = self.agent.update(cues, fused)
            lines = self.guidance.agent_lines([f.code for f in ag.flags])
            text = "；".join(f.text_zh for f in ag.flags)
            expl = Explanation(cues=[], text=f"坐席怒气 {fused.fused:.2f}" + (f"。{text}。" if text else "。"))
            return Assessment(cues.t_start, cues.t_end, "agent", fused, self.tracker.state.copy(), False,
                              expl, lines, None, ag)
        self.agent.note_customer(cues)  # the customer's turn spans (overtalk)
        upd = self.tracker.update(cues, fused)
        expl = explain_window(cues, fused, upd, rules=self.rules)
        lines = self.guidance.choose(upd.state.level, [c.kind for c in expl.cues], self.rules.guidance_lines)
        alert = self.alerts.decide(upd, fused.fused, cues.t_start, cues.t_end, self.alert_memory, expl, lines)
        return Assessment(cues.t_start, cues.t_end, "customer", fused, upd.state, upd.changed, expl, lines,
                          alert, None)

    def _assess(self, cues: Cues) -> WindowResult:
        """:meth:`process` plus the call's trend, statistics and alert bookkeeping."""
        a = self.process(cues)
        fused = float(a.anger.fused)
        self.trend.add(cues.role, cues.t_end, fused)
        self.stats.raise_max(cues.role, fused)
        if cues.role == "customer":
            if fused >= self.rules.anger_seconds_threshold:
                self.stats.count_angry(cues.t_start, cues.t_end)
            if a.stage.level >= 1 and self.stats.first_escalation_s is None:
                self.stats.first_escalation_s = round(a.stage.since, 3)
        stage = self.stage.state_dict()
        alerts = []
        if a.alert is not None:
            self.stats.alerts += 1
            alerts.append(CallAlert(a.alert, stage))
        return WindowResult(stage=stage, fused=a.anger, explanation=a.explanation, guidance=a.guidance,
                            agent=a.agent, alerts=alerts)

    def _calm_stage(self) -> dict[str, Any]:
        return {"level": 0, "name": self.rules.name(0), "since": 0.0, "history": []}

    def audio_window(self, role: str, t_start: float, t_end: float, *, acoustic_anger: float | None,
                     delta: dict[str, Any] | None, speech_s: float, baseline_ready: bool) -> WindowResult:
        """Fuse one chunk's acoustic cues of one role (no evidence when the role was hardly speaking)."""
        if speech_s < MIN_SPEECH_S or acoustic_anger is None:  # the call's stage stands
            return WindowResult(stage=self.stage.state_dict() if self.assessed else self._calm_stage())
        self.acoustic.add(role, AcousticWindow(round(t_start, 3), round(t_end, 3), acoustic_anger, delta,
                                               speech_s, baseline_ready))
        cues = Cues.from_parts(t_start, t_end, role, acoustic_anger=acoustic_anger, delta=delta,
                               baseline_ready=baseline_ready)
        return self._assess(cues)

    def text_turn(self, role: str, t_start: float, t_end: float, *, text: str | None = None,
                  text_probs: dict[str, float] | None = None, text_anger: float | None = None,
                  text_calibrated: bool = False, keyword_hits: Sequence[Any] = (), keyword_score: float | None = None,
                  keyword_stage_hint: int = 0, calming: bool = False) -> WindowResult:
        """Fuse a final transcript turn with the same speaker's acoustic cues over the turn."""
        acoustic, delta, ready = self.acoustic.over(role, t_start, t_end)
        cues = Cues(t_start=t_start, t_end=max(t_end, t_start), role=role, acoustic_anger=acoustic, delta=delta,
                    baseline_ready=ready, text_probs=text_probs, text_anger=text_anger,
                    text_calibrated=text_calibrated, keyword_hits=list(keyword_hits), keyword_score=keyword_score,
                    keyword_stage_hint=keyword_stage_hint, calming=calming, text=text)
        return self._assess(cues)

    def finish(self, end_t: float | None = None) -> ComplaintResult:
        return classify_complaint(self.tracker.state, self.tracker.stats, end_t, self.rules)

    # ------------------------------------------------------------------ views
    def anger(self) -> dict[str, float | None]:
        """The latest fused anger: ``fused`` of the customer, ``agent`` of the agent (None before any)."""
        return {"fused": self.trend.last("customer"), "agent": self.trend.last("agent")}

    def view(self) -> dict[str, Any]:
        """The live view: stage, last fused anger per role, the customer's recent trend."""
        return {
            "stage": self.stage.state_dict(),
            "anger": self.anger(),
            "trend": self.trend.recent("customer", VIEW_TREND_POINTS),
        }

    def summary(self) -> dict[str, Any]:
        """The decision layer's part of the end-of-call summary."""
        complaint = self.finish()
        st = self.stage
        return {
            "peak_stage": st.max_level,
            "peak_stage_name": self.rules.name(st.max_level),
            "stage": st.state_dict(),
            "complaint": complaint.to_dict(),
            "time_to_first_escalation_s": self.stats.first_escalation_s,
            "max_anger_customer": round(self.stats.customer_max, 4),
            "agent_max_anger": round(self.stats.agent_max, 4),
            "anger_seconds_customer": round(self.stats.anger_seconds, 2),
            "alert_count": self.stats.alerts,
        }


@dataclass(frozen=True)
class DecisionModel:
    """The load-once part of the decision layer (fusion parameters, rules, guidance)."""

    fuser: Fuser
    rules: Rules
    guidance: Guidance

    @classmethod
    def load(cls, model_dir: Path, rules: Rules | None = None, guidance: Guidance | None = None) -> "DecisionModel":
        """``model_dir``: the folder of the fusion ``params.json`` (``settings.models_dir / "fusion"``)."""
        return cls(Fuser.load(Path(model_dir) / "params.json"), rules or default_rules(),
                   guidance or default_guidance())

    def new_call(self) -> CallAnalyzer:
        return CallAnalyzer(self.fuser, self.rules, self.guidance)

    def call_from_state(self, state: Mapping[str, Any] | None) -> CallAnalyzer:
        return CallAnalyzer.from_state(self.fuser, state, self.rules, self.guidance)
