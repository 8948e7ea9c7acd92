"""When to raise an alert (decision only; storing and delivering alerts is the service's job).

Two kinds:
* ``stage_rise``: the stage rose to a level >= ``alerts.alert_min_level``.  Deduplicated per call and
  stage: a stage that already alerted alerts again only after the call dropped below it and
  ``cooldown_s`` passed since its previous alert.
* ``sustained_anger``: fused anger >= ``sustained.threshold`` over >= ``sustained.seconds`` of customer
  speech within ``sustained.horizon_s`` (at most once per ``sustained.cooldown_s``), for a customer who
  stays furious without the stage moving.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

from pipelines.fusion.explain import Explanation
from pipelines.fusion.rules import Rules, default_rules
from pipelines.fusion.stage import StageUpdate, union_seconds

log = logging.getLogger("nuqi.fusion.alerts")


@dataclass
class AlertDecision:
    kind: str  # "stage_rise" | "sustained_anger"
    level: int
    stage_name: str
    severity: str  # info | warning | critical
    at: float  # call time (s)
    anger: float
    explanation: str
    guidance: list[str]
    cues: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "level": self.level,
            "stage_name": self.stage_name,
            "severity": self.severity,
            "at": round(self.at, 3),
            "anger": round(self.anger, 4),
            "explanation": self.explanation,
            "guidance": list(self.guidance),
            "cues": list(self.cues),
        }


@dataclass
class AlertMemory:
    """Per-call dedup memory (JSON-serialisable)."""

    alerted_at: dict[int, float] = field(default_factory=dict)  # stage -> time of its last alert
    rearmed: dict[int, bool] = field(default_factory=dict)  # stage -> dropped below it since then
    last_sustained_at: float | None = None
    anger: list[list[float]] = field(default_factory=list)  # [t_start, t_end, fused] recent windows

    def state_dict(self) -> dict[str, Any]:
        return {
            "alerted_at": {str(k): v for k, v in self.alerted_at.items()},
            "rearmed": {str(k): v for k, v in self.rearmed.items()},
            "last_sustained_at": self.last_sustained_at,
            "anger": [[round(x, 4) for x in a] for a in self.anger],
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> "AlertMemory":
        return cls(
            alerted_at={int(k): float(v) for k, v in d.get("alerted_at", {}).items()},
            rearmed={int(k): bool(v) for k, v in d.get("rearmed", {}).items()},
            last_sustained_at=d.get("last_sustained_at"),
            anger=[list(map(float, a)) for a in d.get("anger", [])],
        )


class AlertPolicy:
    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or default_rules()

    def decide(
        self,
        update: StageUpdate,
        anger: float,
        t_start: float,
        t_end: float,
        memory: AlertMemory,
        explanation: Explanation,
        guidance: list[str],
    ) -> AlertDecision | None:
        """Decide on one customer window; updates ``memory`` in place."""
        r = self.rules
        level = update.state.level
        memory.anger.append([t_start, t_end, anger])
        memory.anger = [a for a in memory.anger if a[1] >= t_end - r.sustained_horizon_s]
        for lvl in list(memory.alerted_at):
            if level < lvl:
                memory.rearmed[lvl] = True

        def make(kind: str, prefix: str = "") -> AlertDecision:
            return AlertDecision(
                kind=kind,
                level=level,
                stage_name=update.state.name,
                severity=r.severity.get(level, "info"),
                at=t_end,
                anger=anger,
                explanation=prefix + explanation.text,
                guidance=list(guidance),
                cues=[c.to_dict() for c in explanation.cues],
            )

        if level > update.previous_level and level >= r.alert_min_level:
            last = memory.alerted_at.get(level)
            fresh = last is None or (memory.rearmed.get(level, False) and t_end - last >= r.alert_cooldown_s)
            if fresh:
                memory.alerted_at[level] = t_end
                memory.rearmed[level] = False
                log.info("alert stage_rise -> %d at %.1f", level, t_end)
                return make("stage_rise")
            log.debug("stage %d re-reached at %.1f: alert deduplicated", level, t_end)

        if anger >= r.sustained_threshold:
            secs = union_seconds([a[:2] for a in memory.anger if a[2] >= r.sustained_threshold])
            last_s = memory.last_sustained_at
            if secs >= r.sustained_seconds and (last_s is None or t_end - last_s >= r.sustained_cooldown_s):
                memory.last_sustained_at = t_end
                log.info("alert sustained_anger at %.1f (%.1f s)", t_end, secs)
                return make("sustained_anger",
                            f"高怒气（≥{r.sustained_threshold:.2f}）持续 {secs:.0f} 秒。")
        return None
