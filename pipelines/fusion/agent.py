"""QA flags on the agent's own behaviour, judged on agent-specific cues only.

The agent is not judged like the customer: a polite service formula that repeats the customer's words
(「好的，我马上为您登记投诉，两小时内给您回电。」) reads as anger to the text model (it learnt 投诉 as an
angry word), so neither the text model's anger nor the fused anger raises an agent flag.  What counts is
how the agent speaks against the agent's *own* opening baseline, whether the agent talks over the
customer, and what the agent says to the customer (thresholds and phrases in ``rules.yaml`` ``agent``):

  fast      「坐席语速过快」   speech rate >= +speech_rate_pct % vs the agent's opening baseline
  loud      「坐席音量升高」   loudness >= +loudness_db dB vs the opening baseline (a raised voice)
  overtalk  「坐席打断客户」   a transcript turn of the agent that starts while the customer is still
                               speaking and overlaps the customer's turn by >= overtalk_s
  blame     「坐席推诿指责」   a blaming or dismissive phrase (``agent.blame_phrases``: 「说了多少遍」
                               「不归我管」「你去投诉吧」; not after 「不是」: 「这不是您自己的问题」 is fine)
  confront  「坐席语气顶撞」   a raised voice (``loud`` in this window) together with something hostile: a
                               blame phrase, an insult, or an acoustic anger score >= acoustic_anger
  insult    「坐席用语不当」   a lexicon hit in ``agent.bad_categories`` (insults)

The prosody flags (fast, loud) need ``min_seconds`` of flagged agent speech within the last 30 s, so one
noisy 1 s chunk does not flag.  Overtalk is judged on timed transcript turns (audio chunks have no speech
boundaries); it is checked when the agent's turn arrives, against the customer turns known by then.
``agent_anger`` (the fused anger of the agent's windows) is still reported, for information only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pipelines.errors import InputError
from pipelines.fusion.cues import Cues
from pipelines.fusion.fuse import FusedAnger
from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import union_seconds
from pipelines.text.normalize import normalize

WINDOW_S = 30.0
NEGATIONS = ("不是", "并不是", "并非", "不算")  # 「这不是您自己的问题」: a blame phrase after these is no blame


@dataclass
class AgentFlag:
    code: str  # fast | loud | overtalk | blame | confront | insult
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


def blame_phrases(text: str | None, phrases: tuple[str, ...] | list[str]) -> list[str]:
    """The blaming/dismissive ``phrases`` found in ``text`` (normalised: width, case, Traditional, spaces),
    skipping a phrase right after a negation (「不是你自己的问题」)."""
    if not text or not phrases:
        return []
    norm = normalize(text).text
    found: list[str] = []
    for p in phrases:
        start = norm.find(p)
        while start >= 0:
            if not any(norm[max(0, start - len(n)):start] == n for n in NEGATIONS):
                found.append(p)
                break
            start = norm.find(p, start + 1)
    return found


class AgentMonitor:
    """Per-call monitor of the agent; its memory is JSON-serialisable."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or default_rules()
        self._recent: list[list[Any]] = []  # [t_start, t_end, [codes]] of agent windows
        self._customer: list[list[float]] = []  # [t_start, t_end] of recent customer transcript turns
        self.counts: dict[str, int] = {}
        self.peak_anger = 0.0

    def state_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"recent": self._recent, "counts": self.counts, "peak_anger": round(self.peak_anger, 4)}
        if self._customer:  # absent in states stored before overtalk was judged
            d["customer_turns"] = self._customer
        return d

    @classmethod
    def from_state(cls, d: Mapping[str, Any], rules: Rules | None = None) -> "AgentMonitor":
        m = cls(rules)
        m._recent = [[float(a), float(b), list(c)] for a, b, c in d.get("recent", [])]
        m._customer = [[float(a), float(b)] for a, b in d.get("customer_turns", [])]
        m.counts = {str(k): int(v) for k, v in d.get("counts", {}).items()}
        m.peak_anger = float(d.get("peak_anger", 0.0))
        return m

    def note_customer(self, cues: Cues) -> None:
        """Remember a customer transcript turn's span (for overtalk); audio windows carry no turn bounds."""
        if cues.role != "customer" or cues.text is None or cues.t_end <= cues.t_start:
            return
        self._customer.append([round(cues.t_start, 3), round(cues.t_end, 3)])
        horizon = max(e for _, e in self._customer) - WINDOW_S
        self._customer = [s for s in self._customer if s[1] >= horizon]

    def _overtalk_s(self, cues: Cues) -> float:
        """Seconds the agent's turn overlaps a customer turn it started inside (the agent cut in)."""
        if cues.text is None:
            return 0.0
        best = 0.0
        for s, e in self._customer:
            if s < cues.t_start < e:
                best = max(best, min(e, cues.t_end) - cues.t_start)
        return best

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
        raised = loud is not None and loud >= r.agent_loudness_db
        if raised:
            raw["loud"] = (f"坐席音量升高 {loud:.0f} dB", loud)
        bad = [h.term for h in cues.active_hits if h.category in r.agent_bad_categories]
        blame = blame_phrases(cues.text, r.agent_blame_phrases)
        acoustic = cues.acoustic_anger if cues.baseline_ready else None
        hostile = [f"“{x}”" for x in (blame + bad)[:2]]
        if acoustic is not None and acoustic >= r.agent_acoustic_anger:
            hostile.append(f"声音怒气 {acoustic:.2f}")
        t = cues.t_end
        self._recent.append([cues.t_start, t, sorted(raw)])
        self._recent = [e for e in self._recent if e[1] >= t - WINDOW_S]
        flags: list[AgentFlag] = []
        for code, (txt, val) in raw.items():
            secs = union_seconds([e[:2] for e in self._recent if code in e[2]])
            if secs >= r.agent_min_seconds:
                flags.append(AgentFlag(code, txt, val))
        if raised and hostile:  # a raised voice that carries something hostile, not a raised voice alone
            assert loud is not None
            flags.append(AgentFlag("confront", f"坐席语气顶撞（音量升高 {loud:.0f} dB，" + "，".join(hostile) + "）",
                                   loud))
        over = self._overtalk_s(cues)
        if over >= r.agent_overtalk_s:
            flags.append(AgentFlag("overtalk", f"坐席打断客户（抢话 {over:.1f} 秒）", over))
        if blame:
            flags.append(AgentFlag("blame", "坐席推诿指责（" + "、".join(f"“{k}”" for k in blame) + "）", blame[0]))
        if bad:
            flags.append(AgentFlag("insult", "坐席用语不当（" + "、".join(f"“{k}”" for k in bad) + "）", bad[0]))
        for f in flags:
            self.counts[f.code] = self.counts.get(f.code, 0) + 1
        self.peak_anger = max(self.peak_anger, fused.fused)
        return AgentAssessment(agent_anger=fused.fused, flags=flags)
