"""The call's decision layer as the live session uses it: cues → fusion/stage → alert.

:class:`FusionEngine` is loaded once (fusion parameters, rules, guidance) and advances a
call's JSON-serialisable fusion state with each speaker window:

* an audio window (one chunk of one role) gives acoustic cues (acoustic anger, deltas);
* a final transcript turn gives text cues (emotion, keywords, repetition) *and* the
  acoustic cues of the same speaker over the turn's time span, so all three cue
  families are fused when all three exist; missing ones degrade gracefully.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.fusion import CallAnalyzer, Cues, Fuser, default_guidance, default_rules

logger = logging.getLogger("nuqi.escalation")

ACOUSTIC_KEEP_S = 120.0  # seconds of per-role acoustic history kept for turn-level fusion
TREND_KEEP = 240  # points of anger trend kept in the live state
MIN_SPEECH_S = 0.25  # a window with less speech than this carries no acoustic evidence


class FusionEngine:
    def __init__(self, fuser: Fuser) -> None:
        self.fuser = fuser
        self.rules = default_rules()
        self.guidance = default_guidance()

    @classmethod
    def load(cls, model_dir: Path | None = None) -> "FusionEngine":
        path = Path(model_dir) / "params.json" if model_dir is not None else None
        return cls(Fuser.load(path))

    # --- state ---------------------------------------------------------------------------------
    def _analyzer(self, fstate: dict[str, Any]) -> CallAnalyzer:
        if fstate.get("analyzer"):
            return CallAnalyzer.from_state(self.fuser, fstate["analyzer"], self.rules, self.guidance)
        return CallAnalyzer(self.fuser, self.rules, self.guidance)

    @staticmethod
    def _init(fstate: dict[str, Any]) -> None:
        fstate.setdefault("acoustic", {})
        fstate.setdefault("trend", {"customer": [], "agent": []})
        fstate.setdefault("stats", {"customer_max": 0.0, "agent_max": 0.0, "anger_seconds": 0.0, "alerts": 0,
                                    "first_escalation_s": None, "anger_until": 0.0})

    def _process(self, fstate: dict[str, Any], cues: Cues) -> dict[str, Any]:
        self._init(fstate)
        analyzer = self._analyzer(fstate)
        a = analyzer.process(cues)
        fstate["analyzer"] = analyzer.state_dict()
        fused = float(a.anger.fused)
        role = cues.role
        trend = fstate["trend"].setdefault(role, [])
        trend.append([round(cues.t_end, 2), round(fused, 4)])
        del trend[:-TREND_KEEP]
        stats = fstate["stats"]
        stats[f"{role}_max"] = max(stats.get(f"{role}_max", 0.0), fused)
        if role == "customer":
            if fused >= self.rules.anger_seconds_threshold:
                # union of the angry windows' spans: an audio chunk and the transcript turn over the
                # same speech count once
                until = float(stats.get("anger_until", 0.0))
                new_s = max(0.0, cues.t_end - max(cues.t_start, until))
                stats["anger_seconds"] = round(stats["anger_seconds"] + new_s, 3)
                stats["anger_until"] = max(until, cues.t_end)
            if a.stage.level >= 1 and stats.get("first_escalation_s") is None:
                stats["first_escalation_s"] = round(a.stage.since, 3)
        fstate["stage"] = self._stage_dict(analyzer)
        out: dict[str, Any] = {
            "fused": a.anger.to_dict(),
            "stage": fstate["stage"],
            "explanation": a.explanation.to_dict(),
            "guidance": a.guidance,
        }
        if a.agent is not None:
            out["agent"] = a.agent.to_dict()
        alerts = []
        if a.alert is not None:
            stats["alerts"] += 1
            alert = a.alert.to_dict()
            alert["stage"] = out["stage"]
            alert["dedup_key"] = f"{alert['kind']}:{alert['level']}:{alert['at']:.2f}"
            alerts.append(alert)
        out["_alerts"] = alerts
        return out

    def _calm_stage(self) -> dict[str, Any]:
        return {"level": 0, "name": self.rules.name(0), "since": 0.0, "history": []}

    @staticmethod
    def _stage_dict(analyzer: CallAnalyzer) -> dict[str, Any]:
        st = analyzer.stage
        return {"level": st.level, "name": st.name, "since": round(st.since, 3),
                "history": [t.to_dict() for t in st.history]}

    # --- verbs ----------------------------------------------------------------------------------
    def assess_audio(self, fstate: dict[str, Any], role: str, analysis: Any, t_start: float,
                     t_end: float) -> dict[str, Any]:
        """Fuse one chunk's acoustic cues of one role (skipped when the role was not speaking)."""
        self._init(fstate)
        speech = float(analysis.features.get("speech_s") or 0.0)
        if speech < MIN_SPEECH_S or analysis.acoustic is None:  # no evidence: the call's stage stands
            return {"_alerts": [], "stage": fstate.get("stage") or self._calm_stage()}
        hist = fstate["acoustic"].setdefault(role, [])
        hist.append([round(t_start, 3), round(t_end, 3), analysis.acoustic, analysis.delta, speech,
                     bool(analysis.baseline.get("ready"))])
        while hist and hist[0][1] < t_end - ACOUSTIC_KEEP_S:
            hist.pop(0)
        cues = Cues.from_parts(t_start, t_end, role, acoustic_anger=analysis.acoustic, delta=analysis.delta,
                               baseline_ready=bool(analysis.baseline.get("ready")))
        return self._process(fstate, cues)

    def assess_text(self, fstate: dict[str, Any], role: str, analysis: Any, t_start: float,
                    t_end: float) -> dict[str, Any]:
        """Fuse a final transcript turn with the same speaker's acoustic cues over the turn."""
        self._init(fstate)
        acoustic, delta, ready = self._acoustic_over(fstate, role, t_start, t_end)
        cues = Cues(t_start=t_start, t_end=max(t_end, t_start), role=role, acoustic_anger=acoustic, delta=delta,
                    baseline_ready=ready, text_probs=analysis.probs, text_anger=analysis.anger,
                    keyword_hits=analysis.keywords, keyword_score=analysis.keyword_score,
                    keyword_stage_hint=analysis.keyword_stage_hint, calming=analysis.calming, text=analysis.text)
        return self._process(fstate, cues)

    @staticmethod
    def _acoustic_over(fstate: dict[str, Any], role: str, t0: float, t1: float
                       ) -> tuple[float | None, dict[str, float] | None, bool]:
        """Speech-weighted acoustic anger and median deltas of ``role``'s windows overlapping [t0, t1]."""
        rows = [r for r in fstate["acoustic"].get(role, []) if r[1] > t0 - 0.5 and r[0] < t1 + 0.5]
        if not rows:
            return None, None, False
        w = np.array([max(r[4], 1e-3) for r in rows])
        anger = float(np.average([r[2] for r in rows], weights=w))
        deltas = [r[3] for r in rows if r[3]]
        merged: dict[str, float] = {}
        for key in ("speech_rate_pct", "f0_st", "f0_range_st", "loudness_db"):
            vals = [d[key] for d in deltas if d.get(key) is not None]
            if vals:
                merged[key] = float(np.median(vals))
        return anger, merged or None, any(r[5] for r in rows)

    # --- views ----------------------------------------------------------------------------------
    def view(self, fstate: dict[str, Any]) -> dict[str, Any]:
        self._init(fstate)
        analyzer = self._analyzer(fstate)
        trend = fstate["trend"]
        last = {r: (t[-1][1] if t else None) for r, t in trend.items()}
        return {
            "stage": self._stage_dict(analyzer),
            "anger": {"fused": last.get("customer"), "agent": last.get("agent")},
            "trend": trend.get("customer", [])[-120:],
        }

    def summary(self, fstate: dict[str, Any]) -> dict[str, Any]:
        self._init(fstate)
        analyzer = self._analyzer(fstate)
        complaint = analyzer.finish()
        st = analyzer.stage
        stats = fstate["stats"]
        return {
            "peak_stage": st.max_level,
            "peak_stage_name": self.rules.stage_names[st.max_level] if hasattr(self.rules, "stage_names")
            else complaint.max_level_name,
            "stage": self._stage_dict(analyzer),
            "complaint": complaint.to_dict(),
            "time_to_first_escalation_s": stats.get("first_escalation_s"),
            "max_anger_customer": round(stats.get("customer_max", 0.0), 4),
            "agent_max_anger": round(stats.get("agent_max", 0.0), 4),
            "anger_seconds_customer": round(stats.get("anger_seconds", 0.0), 2),
            "alert_count": stats.get("alerts", 0),
        }
