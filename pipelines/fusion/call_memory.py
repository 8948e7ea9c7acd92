"""Typed per-call memory of the decision layer beyond the stage tracker: the anger trend, the call's running
statistics, each speaker's recent acoustic windows, and the alerts the layer raises.

Every type round-trips through the JSON shape the service stores in a call's state (``CallState.fusion``):
``trend`` ``{"customer": [[t, fused], ...], "agent": [...]}``, ``stats`` ``{"customer_max": ..., ...}`` and
``acoustic`` ``{role: [[t_start, t_end, anger, delta, speech_s, baseline_ready], ...]}``, so calls stored
by earlier versions load unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from pipelines.fusion.alerts import AlertDecision
from pipelines.fusion.cues import DELTA_KEYS, ROLES

TREND_KEEP = 240  # points of anger trend kept per role
ACOUSTIC_KEEP_S = 120.0  # seconds of per-role acoustic history kept for turn-level fusion


@dataclass
class AngerTrend:
    """Fused anger over call time, per role: ``(t_end, fused)`` points, the last :data:`TREND_KEEP` kept."""

    points: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: {r: [] for r in ROLES})

    def add(self, role: str, t: float, fused: float) -> None:
        pts = self.points.setdefault(role, [])
        pts.append((round(t, 2), round(fused, 4)))
        del pts[:-TREND_KEEP]

    def last(self, role: str) -> float | None:
        pts = self.points.get(role)
        return pts[-1][1] if pts else None

    def recent(self, role: str, n: int) -> list[list[float]]:
        return [[t, v] for t, v in self.points.get(role, [])[-n:]]

    def state_dict(self) -> dict[str, list[list[float]]]:
        return {r: [[t, v] for t, v in pts] for r, pts in self.points.items()}

    @classmethod
    def from_state(cls, d: Mapping[str, Any] | None) -> "AngerTrend":
        if not d:
            return cls()
        return cls({str(r): [(float(t), float(v)) for t, v in pts] for r, pts in d.items()})


@dataclass
class CallStats:
    """Running statistics of a call, for its end-of-call summary."""

    customer_max: float = 0.0  # highest fused customer anger
    agent_max: float = 0.0  # highest fused agent anger
    anger_seconds: float = 0.0  # customer seconds at or above rules.anger_seconds_threshold (union of windows)
    alerts: int = 0  # alerts raised
    first_escalation_s: float | None = None  # call time the stage first left 0
    anger_until: float = 0.0  # call time up to which angry customer speech was counted

    def state_dict(self) -> dict[str, Any]:
        return {"customer_max": self.customer_max, "agent_max": self.agent_max,
                "anger_seconds": self.anger_seconds, "alerts": self.alerts,
                "first_escalation_s": self.first_escalation_s, "anger_until": self.anger_until}

    @classmethod
    def from_state(cls, d: Mapping[str, Any] | None) -> "CallStats":
        d = d or {}
        first = d.get("first_escalation_s")
        return cls(customer_max=float(d.get("customer_max", 0.0)), agent_max=float(d.get("agent_max", 0.0)),
                   anger_seconds=float(d.get("anger_seconds", 0.0)), alerts=int(d.get("alerts", 0)),
                   first_escalation_s=None if first is None else float(first),
                   anger_until=float(d.get("anger_until", 0.0)))

    def max_for(self, role: str) -> float:
        return self.customer_max if role == "customer" else self.agent_max

    def raise_max(self, role: str, fused: float) -> None:
        if role == "customer":
            self.customer_max = max(self.customer_max, fused)
        else:
            self.agent_max = max(self.agent_max, fused)

    def count_angry(self, t_start: float, t_end: float) -> None:
        """Add an angry customer window: the union of the angry windows' spans counts, so an audio chunk and
        the transcript turn over the same speech count once."""
        new_s = max(0.0, t_end - max(t_start, self.anger_until))
        self.anger_seconds = round(self.anger_seconds + new_s, 3)
        self.anger_until = max(self.anger_until, t_end)


@dataclass
class AcousticWindow:
    """One audio window of one speaker, as the acoustic pipeline scored it."""

    t_start: float
    t_end: float
    anger: float  # acoustic anger probability
    delta: dict[str, Any] | None  # prosody relative to the speaker's opening baseline (FeatureDelta.to_dict())
    speech_s: float
    baseline_ready: bool

    def to_row(self) -> list[Any]:
        return [self.t_start, self.t_end, self.anger, self.delta, self.speech_s, self.baseline_ready]

    @classmethod
    def from_row(cls, r: list[Any]) -> "AcousticWindow":
        return cls(float(r[0]), float(r[1]), float(r[2]), r[3], float(r[4]), bool(r[5]))


@dataclass
class AcousticHistory:
    """Each speaker's acoustic windows of the last :data:`ACOUSTIC_KEEP_S` seconds (for turn-level fusion)."""

    windows: dict[str, list[AcousticWindow]] = field(default_factory=dict)

    def add(self, role: str, w: AcousticWindow) -> None:
        hist = self.windows.setdefault(role, [])
        hist.append(w)
        while hist and hist[0].t_end < w.t_end - ACOUSTIC_KEEP_S:
            hist.pop(0)

    def over(self, role: str, t0: float, t1: float) -> tuple[float | None, dict[str, float] | None, bool]:
        """Speech-weighted acoustic anger, median deltas and baseline readiness of ``role``'s windows
        overlapping [t0, t1] (half a second of slack either side)."""
        rows = [w for w in self.windows.get(role, []) if w.t_end > t0 - 0.5 and w.t_start < t1 + 0.5]
        if not rows:
            return None, None, False
        weights = np.array([max(w.speech_s, 1e-3) for w in rows])
        anger = float(np.average([w.anger for w in rows], weights=weights))
        deltas = [w.delta for w in rows if w.delta]
        merged: dict[str, float] = {}
        for key in DELTA_KEYS:
            vals = [d[key] for d in deltas if d.get(key) is not None]
            if vals:
                merged[key] = float(np.median(vals))
        return anger, merged or None, any(w.baseline_ready for w in rows)

    def state_dict(self) -> dict[str, list[list[Any]]]:
        return {r: [w.to_row() for w in ws] for r, ws in self.windows.items()}

    @classmethod
    def from_state(cls, d: Mapping[str, Any] | None) -> "AcousticHistory":
        return cls({str(r): [AcousticWindow.from_row(row) for row in rows] for r, rows in (d or {}).items()})


@dataclass
class CallAlert:
    """An alert the decision layer raised in a call: the decision, the call's stage when it was raised (with
    its history), and the key that makes storing it idempotent."""

    decision: AlertDecision
    stage: dict[str, Any]  # StageState.state_dict() at the window that raised it

    @property
    def level(self) -> int:
        return self.decision.level

    @property
    def kind(self) -> str:
        return self.decision.kind

    @property
    def dedup_key(self) -> str:
        return f"{self.decision.kind}:{self.decision.level}:{round(self.decision.at, 3):.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.decision.to_dict(), "stage": self.stage, "dedup_key": self.dedup_key}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CallAlert":
        """Inverse of :meth:`to_dict` (an alert stored with a timeline entry, re-delivered on a retry)."""
        decision = AlertDecision(
            kind=str(d["kind"]), level=int(d["level"]), stage_name=str(d["stage_name"]),
            severity=str(d["severity"]), at=float(d["at"]), anger=float(d["anger"]),
            explanation=str(d["explanation"]), guidance=list(d.get("guidance", [])), cues=list(d.get("cues", [])),
        )
        return cls(decision, dict(d.get("stage") or {}))
