"""Loading and checking ``rules.yaml`` (thresholds of the stage tracker, alerts and complaint type)."""
from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from pipelines.errors import InputError

log = logging.getLogger("nuqi.fusion.rules")

RULES_PATH = Path(__file__).with_name("rules.yaml")
MAX_LEVEL = 6


def _levels(d: Mapping[Any, Any] | None) -> dict[int, Any]:
    return {int(k): v for k, v in (d or {}).items()}


_REF = re.compile(r"^\s*(rise|fall)\.(\d)\s*(?:([+-])\s*(\d*\.?\d+))?\s*$")


def _anger_value(value: Any, rise: Mapping[int, float], fall: Mapping[int, float], where: str) -> float:
    """A fused-anger threshold: a number, or a reference to a stage threshold such as ``rise.3+0.10``
    (so the derived thresholds follow when the stage thresholds are re-tuned)."""
    if isinstance(value, (int, float)):
        return float(value)
    m = _REF.match(str(value))
    if not m:
        raise InputError(f"rules.yaml: {where} must be a number or like 'rise.3+0.1', got {value!r}")
    table = rise if m.group(1) == "rise" else fall
    lvl = int(m.group(2))
    if lvl not in table:
        raise InputError(f"rules.yaml: {where} refers to {m.group(1)}.{lvl}, which is not defined")
    off = float(m.group(4) or 0.0) * (-1.0 if m.group(3) == "-" else 1.0)
    return float(table[lvl]) + off


@dataclass
class Rules:
    """Typed view of ``rules.yaml``; ``raw`` keeps the full mapping for the modules that read it."""

    raw: dict[str, Any]

    def __post_init__(self) -> None:
        r = self.raw
        self.stage_names: dict[int, str] = {int(k): str(v) for k, v in r["stages"].items()}
        a = r["anger"]
        self.rise: dict[int, float] = {k: float(v) for k, v in _levels(a["rise"]).items()}
        self.fall: dict[int, float] = {k: float(v) for k, v in _levels(a["fall"]).items()}
        self.anger_max_level = max(self.rise)
        s4 = a.get("sustained_to_4") or {}
        self.sustained4_threshold = _anger_value(s4.get("threshold", 1.01), self.rise, self.fall,
                                                 "anger.sustained_to_4.threshold")
        self.sustained4_seconds = float(s4.get("seconds", float("inf")))
        self.anger_seconds_threshold = _anger_value(a.get("seconds_threshold", "rise.3"), self.rise, self.fall,
                                                    "anger.seconds_threshold")
        p = r["persistence"]
        self.horizon_s = float(p["horizon_s"])
        self.persist_seconds = {k: float(v) for k, v in _levels(p["seconds"]).items()}
        self.persist_windows = {k: int(v) for k, v in _levels(p["windows"]).items()}
        k = r["keywords"]
        self.immediate_min_hint = int(k["immediate_min_hint"])
        self.immediate_min_weight = float(k.get("immediate_min_weight", 0.0))
        self.ambiguous_min_anger = _anger_value(k.get("ambiguous_min_anger", 0.0), self.rise, self.fall,
                                                "keywords.ambiguous_min_anger")
        self.hypothetical_factor = float(k.get("hypothetical_factor", 1.0)) or 1.0
        self.weak_max_lift = int(k.get("weak_max_lift", 6))
        self.weak_min_anger = _anger_value(k.get("weak_min_anger", 0.0), self.rise, self.fall,
                                           "keywords.weak_min_anger")
        self.external_categories = {str(c) for c in k.get("external_categories", [])}
        self.complaint_categories = {str(c) for c in k.get("complaint_categories", [])}
        self.major_categories = {str(c) for c in k.get("major_categories", [])}
        self.major_min_hint = int(k.get("major_min_hint", 0))
        self.demand_categories = {str(c) for c in k.get("demand_categories", [])}
        rp = r["repetition"]
        self.rep_horizon_s = float(rp["horizon_s"])
        self.rep_min_chars = int(rp["min_chars"])
        self.rep_similarity = float(rp["text_similarity"])
        self.rep_floors = {k: int(v) for k, v in _levels(rp["floors"]).items()}
        d = r["decay"]
        self.decay_seconds = {k: float(v) for k, v in _levels(d["seconds"]).items()}
        self.calming_boost = float(d.get("calming_boost", 1.0))
        self.floor_after = {k: int(v) for k, v in _levels(d.get("floor_after")).items()}
        al = r["alerts"]
        self.alert_min_level = int(al["alert_min_level"])
        self.severity = {k: str(v) for k, v in _levels(al["severity"]).items()}
        self.alert_cooldown_s = float(al["cooldown_s"])
        su = al["sustained"]
        self.sustained_threshold = _anger_value(su["threshold"], self.rise, self.fall,
                                                "alerts.sustained.threshold")
        self.sustained_seconds = float(su["seconds"])
        self.sustained_horizon_s = float(su["horizon_s"])
        self.sustained_cooldown_s = float(su["cooldown_s"])
        self.guidance_lines = int(al.get("guidance_lines", 3))
        ag = r["agent"]
        self.agent_rate_pct = float(ag["speech_rate_pct"])
        self.agent_loudness_db = float(ag["loudness_db"])
        self.agent_min_seconds = float(ag["min_seconds"])
        self.agent_acoustic_anger = float(ag.get("acoustic_anger", 1.01))
        self.agent_overtalk_s = float(ag.get("overtalk_s", float("inf")))
        self.agent_bad_categories = {str(c) for c in ag.get("bad_categories", [])}
        self.agent_blame_phrases = tuple(str(p) for p in ag.get("blame_phrases", []) if str(p))
        c = r["complaint"]
        self.complaint_min_level = int(c["min_level"])
        self.difficult_repeats = int(c["difficult_repeats"])
        self.difficult_seconds = float(c["difficult_seconds"])
        self.unresolved_level = int(c["unresolved_level"])
        self._check()

    def _check(self) -> None:
        if sorted(self.stage_names) != list(range(MAX_LEVEL + 1)):
            raise InputError("rules.yaml: stages must name levels 0..6")
        prev = 0.0
        for lvl in sorted(self.rise):
            if not 1 <= lvl <= 3:
                raise InputError(f"rules.yaml: anger.rise may only name stages 1..3, got {lvl}")
            if self.rise[lvl] < prev:
                raise InputError("rules.yaml: anger.rise must not decrease with the stage")
            prev = self.rise[lvl]
            if lvl not in self.persist_seconds or lvl not in self.persist_windows:
                raise InputError(f"rules.yaml: persistence lacks stage {lvl}")
        for lvl in range(1, MAX_LEVEL + 1):
            if lvl not in self.fall or lvl not in self.decay_seconds:
                raise InputError(f"rules.yaml: anger.fall and decay.seconds need every stage 1..6 ({lvl})")
            if lvl in self.rise and self.fall[lvl] >= self.rise[lvl]:
                raise InputError(f"rules.yaml: hysteresis needs fall[{lvl}] < rise[{lvl}]")

    def name(self, level: int) -> str:
        return self.stage_names[int(level)]

    def anger_bands(self) -> list[tuple[float, float, int]]:
        """The fused-anger scale as the stage rules read it: ``(from, to, level)`` bands, where ``level`` is
        the highest stage that anger alone supports (``rise``), then ``sustained_to_4`` (anger that lifts the
        call to 潜在投诉 when it lasts).  The last band is as wide as the one before it; anger above it is
        off the scale.  For gauges that must agree with the stage badge next to them."""
        edges = [(0.0, 0)] + [(self.rise[lvl], lvl) for lvl in sorted(self.rise)]
        if self.sustained4_threshold < 1.0:
            edges.append((self.sustained4_threshold, 4))
        bands = [(a, b, lvl) for (a, lvl), (b, _) in zip(edges, edges[1:])]
        last, lvl = edges[-1]
        width = bands[-1][1] - bands[-1][0] if bands else 1.0
        bands.append((last, min(1.0, last + width), lvl))
        return [(round(a, 4), round(b, 4), int(lvl)) for a, b, lvl in bands]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Rules":
        path = Path(path) if path else RULES_PATH
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read rules file {path}: {exc}") from exc
        try:
            return cls(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"rules file {path} is incomplete or malformed: {exc!r}") from exc

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Rules":
        """A copy with nested keys replaced, e.g. ``{"anger": {"rise": {3: 0.7}}}`` (for tuning)."""
        raw = copy.deepcopy(self.raw)

        def merge(dst: dict, src: Mapping) -> None:
            for k, v in src.items():
                if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
                    merge(dst[k], v)
                else:
                    dst[k] = v

        merge(raw, overrides)
        return Rules(raw)


_DEFAULT: Rules | None = None


def default_rules() -> Rules:
    """The shipped ``rules.yaml`` (parsed once per process)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Rules.load()
    return _DEFAULT
