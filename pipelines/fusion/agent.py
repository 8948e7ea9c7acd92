"""QA flags on the agent's own speech: the same fusion applied to the agent's cues.

Flags (thresholds in ``rules.yaml`` ``agent``), each needing ``min_seconds`` of agent speech within
the last 30 s:
  fast      「坐席语速过快」   speech rate >= +speech_rate_pct % vs the agent's opening baseline
  loud      「坐席音量升高」   loudness >= +loudness_db dB vs the opening baseline
  confront  「坐席语气顶撞」   fused agent anger >= anger together with a raised voice or angry words
  insult    「坐席用语不当（“…”）」 a lexicon hit in ``agent.bad_categories`` (insults)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pipelines.errors import InputError
from pipelines.fusion.cues import Cues
from pipelines.fusion.fuse import FusedAnger
from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import union_seconds

WINDOW_S = 30.0


@dataclass
class AgentFlag:
    code: str  # fast | loud | confront | insult
    text_zh: str
    value: float | str

    def to_dict(self) -> dict[str, Any]:
        v = round(self.value, 3) if isinstance(self.value, float) else self.value
        return {"code": self.code, "text_zh": self.text_zh, "value": v}


@dataclass
class AgentAssessment:
    agent_anger: float
    flags: list[AgentFlag] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"agent_anger": round(self.agent_anger, 4), "flags": [f.to_dict() for f in self.flags]}


class AgentMonitor:
    """Per-call monitor of the agent; its memory is JSON-serialisable."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or default_rules()
        self._recent: list[list[Any]] = []  # [t_start, t_end, [codes]]
        self.counts: dict[str, int] = {}
        self.peak_anger = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"recent": self._recent, "counts": self.counts, "peak_anger": round(self.peak_anger, 4)}

    @classmethod
    def from_state(cls, d: Mapping[str, Any], rules: Rules | None = None) -> "AgentMonitor":
        m = cls(rules)
        m._recent = [[float(a), float(b), list(c)] for a, b, c in d.get("recent", [])]
        m.counts = {str(k): int(v) for k, v in d.get("counts", {}).items()}
        m.peak_anger = float(d.get("peak_anger", 0.0))
        return m

    def update(self, cues: Cues, fused: FusedAnger) -> AgentAssessment:
        if cues.role != "agent":
            raise InputError("AgentMonitor takes agent cues only")
        r = self.rules
        pros = cues.prosody or {}
        rate = pros.get("speech_rate_pct")
        loud = pros.get("loudness_db")
        raw: dict[str, tuple[str, float | str]] = {}
        if rate is not None and rate >= r.agent_rate_pct:
            raw["fast"] = (f"坐席语速过快（比开场快 {rate:.0f}%）", rate)
        if loud is not None and loud >= r.agent_loudness_db:
            raw["loud"] = (f"坐席音量升高 {loud:.0f} dB", loud)
        angry_words = (cues.text_anger or 0.0) >= r.agent_anger or any(
            h.category in r.agent_bad_categories for h in cues.active_hits)
        if fused.fused >= r.agent_anger and ("loud" in raw or angry_words):
            raw["confront"] = (f"坐席语气顶撞（怒气 {fused.fused:.2f}）", fused.fused)
        bad = [h.term for h in cues.active_hits if h.category in r.agent_bad_categories]
        t = cues.t_end
        self._recent.append([cues.t_start, t, sorted(raw)])
        self._recent = [e for e in self._recent if e[1] >= t - WINDOW_S]
        flags: list[AgentFlag] = []
        for code, (txt, val) in raw.items():
            secs = union_seconds([e[:2] for e in self._recent if code in e[2]])
            if secs >= r.agent_min_seconds:
                flags.append(AgentFlag(code, txt, val))
        if bad:
            flags.append(AgentFlag("insult", "坐席用语不当（" + "、".join(f"“{k}”" for k in bad) + "）", bad[0]))
        for f in flags:
            self.counts[f.code] = self.counts.get(f.code, 0) + 1
        self.peak_anger = max(self.peak_anger, fused.fused)
        return AgentAssessment(agent_anger=fused.fused, flags=flags)
