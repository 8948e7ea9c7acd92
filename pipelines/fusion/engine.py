"""One call's decision layer: fuse -> stage -> explain -> guidance -> alert (and agent QA, complaint type).

Usage (per call; the whole memory round-trips through JSON between chunks)::

    fuser = Fuser.load()                       # once per process (reads models/fusion/params.json)
    call = CallAnalyzer(fuser)                 # or CallAnalyzer.from_state(fuser, saved_dict)
    a = call.process(cues)                     # one Cues per window/turn, customer or agent
    a.alert                                    # AlertDecision or None (store/deliver it yourself)
    saved_dict = call.state_dict()
    result = call.finish()                     # ComplaintResult at call end
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from pipelines.errors import InputError
from pipelines.fusion.agent import AgentAssessment, AgentMonitor
from pipelines.fusion.alerts import AlertDecision, AlertMemory, AlertPolicy
from pipelines.fusion.complaint import ComplaintResult, classify_complaint
from pipelines.fusion.cues import Cues
from pipelines.fusion.explain import Explanation, explain
from pipelines.fusion.fuse import FusedAnger, Fuser
from pipelines.fusion.guidance import Guidance, default_guidance
from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import StageState, StageTracker

log = logging.getLogger("nuqi.fusion.engine")

ENGINE_STATE_VERSION = 1


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


class CallAnalyzer:
    def __init__(self, fuser: Fuser, rules: Rules | None = None, guidance: Guidance | None = None) -> None:
        self.fuser = fuser
        self.rules = rules or default_rules()
        self.guidance = guidance or default_guidance()
        self.tracker = StageTracker(self.rules)
        self.agent = AgentMonitor(self.rules)
        self.alerts = AlertPolicy(self.rules)
        self.alert_memory = AlertMemory()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": ENGINE_STATE_VERSION,
            "tracker": self.tracker.state_dict(),
            "agent": self.agent.state_dict(),
            "alerts": self.alert_memory.state_dict(),
        }

    @classmethod
    def from_state(cls, fuser: Fuser, d: Mapping[str, Any], rules: Rules | None = None,
                   guidance: Guidance | None = None) -> "CallAnalyzer":
        if int(d.get("version", 0)) != ENGINE_STATE_VERSION:
            raise InputError(f"unsupported call-state version {d.get('version')!r}")
        c = cls(fuser, rules, guidance)
        c.tracker = StageTracker.from_state(d["tracker"], c.rules)
        c.agent = AgentMonitor.from_state(d.get("agent", {}), c.rules)
        c.alert_memory = AlertMemory.from_state(d.get("alerts", {}))
        return c

    @property
    def stage(self) -> StageState:
        return self.tracker.state

    # ------------------------------------------------------------------ steps
    def process(self, cues: Cues) -> Assessment:
        fused = self.fuser.fuse(cues)
        if cues.role == "agent":
            ag = self.agent.update(cues, fused)
            lines = self.guidance.agent_lines([f.code for f in ag.flags])
            text = "；".join(f.text_zh for f in ag.flags)
            expl = Explanation(cues=[], text=f"坐席怒气 {fused.fused:.2f}" + (f"。{text}。" if text else "。"))
            return Assessment(cues.t_start, cues.t_end, "agent", fused, self.tracker.state.copy(), False,
                              expl, lines, None, ag)
        upd = self.tracker.update(cues, fused)
        expl = explain(cues, fused, upd, rules=self.rules)
        lines = self.guidance.choose(upd.state.level, [c.kind for c in expl.cues], self.rules.guidance_lines)
        alert = self.alerts.decide(upd, fused.fused, cues.t_start, cues.t_end, self.alert_memory, expl, lines)
        return Assessment(cues.t_start, cues.t_end, "customer", fused, upd.state, upd.changed, expl, lines,
                          alert, None)

    def finish(self, end_t: float | None = None) -> ComplaintResult:
        return classify_complaint(self.tracker.state, self.tracker.stats, end_t, self.rules)
