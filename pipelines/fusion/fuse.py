"""Calibrated fusion of acoustic, prosodic, text and keyword cues into one anger probability.

Model (a weighted logarithmic opinion pool of per-source calibrated scores):

1. Each cue *group* g (``acoustic``, ``prosody``, ``text``, ``keyword``) that is present in a window
   gets its own calibrated log-odds  l_g = intercept_g + sum_f coef_g[f] * x_f  (Platt / logistic
   calibration of that source alone).  Alone, sigmoid(l_g) is a calibrated probability of anger.
2. The present groups S are pooled around the prior log-odds l0:

       fused_logit = l0 + k(|S|) * sum_{g in S} pi_g * (l_g - l0),   pi_g = w_g / sum_{h in S} w_h

   The weights w_g are renormalised over the groups that are present (so an audio-only or a text-only
   call is scored by exactly its calibrated source), and k(n) >= 1 is an agreement factor: independent
   sources that agree are stronger evidence than either alone.  With one group k(1) = 1, so the single
   calibrated score passes through unchanged.

All parameters live in ``models/fusion/params.json`` (fitted by ``training/fusion/train_fusion.py``; see its
model card).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pipelines.errors import ModelNotAvailableError
from pipelines.fusion.cues import Cues

log = logging.getLogger("nuqi.fusion.fuse")

GROUPS = ("acoustic", "prosody", "text", "keyword")

_EPS = 0.005


def logit(p: float) -> float:
    p = min(1.0 - _EPS, max(_EPS, float(p)))
    return math.log(p / (1.0 - p))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _clip(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


# --------------------------------------------------------------------------- features
# Scales of the prosody features: one unit = a clearly audible change vs the opening baseline.
PROSODY_SCALE = {"speech_rate_pct": 30.0, "f0_st": 3.0, "f0_range_st": 3.0, "loudness_db": 6.0}
PROSODY_FEATURE = {"speech_rate_pct": "rate", "f0_st": "f0", "f0_range_st": "f0_range", "loudness_db": "loud"}
KEYWORD_SCORE_CAP = 3.0
CALIBRATED = "calibrated_logit"  # a group feature that already is the group's calibrated log-odds


def keyword_strength(cues: Cues) -> float:
    """Keyword evidence of a window: the lexicon's score, else the summed weight of active hits."""
    if cues.keyword_score is not None:
        return max(0.0, cues.keyword_score)
    return sum(max(0.0, h.weight) for h in cues.active_hits)


def keyword_hint(cues: Cues) -> int:
    hints = [h.stage_hint for h in cues.active_hits]
    return max([cues.keyword_stage_hint, *hints]) if (hints or cues.keyword_stage_hint) else 0


def group_features(cues: Cues) -> dict[str, dict[str, float]]:
    """Feature values of every cue group present in ``cues`` (absent groups are left out)."""
    out: dict[str, dict[str, float]] = {}
    if cues.acoustic_anger is not None:
        if cues.baseline_ready:
            out["acoustic"] = {"logit_acoustic": logit(cues.acoustic_anger)}
        else:  # before the caller's baseline exists the acoustic model judges the voice, not the change:
            # weaker evidence (Mandarin AUC ~0.61), shrunk towards the prior by its own coefficients
            out["acoustic"] = {"logit_acoustic_pre": logit(cues.acoustic_anger), "pre_baseline": 1.0}
    pros = cues.prosody
    if pros:
        out["prosody"] = {
            PROSODY_FEATURE[k]: _clip(v / PROSODY_SCALE[k], -1.0, 3.0) for k, v in pros.items()
        }
    if cues.text_anger is not None and cues.text_calibrated:
        out["text"] = {CALIBRATED: logit(cues.text_anger)}
    elif cues.text_anger is not None:
        feats = {"logit_angry": logit(cues.text_anger)}
        if cues.text_probs:
            p = cues.text_probs
            feats["p_neg"] = p.get("sad", 0.0) + p.get("fear", 0.0)
            feats["p_calm"] = p.get("neutral", 0.0) + p.get("happy", 0.0)
        out["text"] = feats
    strength = keyword_strength(cues)
    hint = keyword_hint(cues)
    if strength > 0 or hint > 0:
        out["keyword"] = {
            "score": min(strength, KEYWORD_SCORE_CAP),
            "hint": hint / 6.0,
        }
    return out


# --------------------------------------------------------------------------- params
@dataclass
class GroupParams:
    intercept: float
    coef: dict[str, float]
    weight: float = 1.0

    def logit(self, feats: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        parts = {f: self.coef[f] * v for f, v in feats.items() if f in self.coef}
        return self.intercept + sum(parts.values()), parts


@dataclass
class FusionParams:
    prior_rate: float
    groups: dict[str, GroupParams]
    agreement: dict[int, float]
    # weight multipliers of a group when another group is present, e.g. {"prosody": {"acoustic": 0.0}}:
    # the acoustic model already takes the baseline deltas as inputs, so prosody must not count twice
    discount: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prior_logit(self) -> float:
        return logit(self.prior_rate)

    def weight(self, group: str, present: Any) -> float:
        """Pooling weight of ``group`` given the set of groups ``present``."""
        w = self.groups[group].weight
        for other, factor in self.discount.get(group, {}).items():
            if other in present and other != group:
                w *= factor
        return w

    def k(self, n: int) -> float:
        if n <= 1:
            return 1.0
        known = [m for m in self.agreement if m <= n]
        return self.agreement[max(known)] if known else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "source": self.source,
            "prior_rate": self.prior_rate,
            "groups": {
                g: {"intercept": p.intercept, "coef": dict(p.coef), "weight": p.weight}
                for g, p in self.groups.items()
            },
            "agreement": {str(n): v for n, v in sorted(self.agreement.items())},
            "discount": {g: dict(d) for g, d in self.discount.items()},
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FusionParams":
        groups = {
            g: GroupParams(float(p["intercept"]), {k: float(v) for k, v in p["coef"].items()},
                           float(p.get("weight", 1.0)))
            for g, p in d["groups"].items()
        }
        missing = [g for g in GROUPS if g not in groups]
        if missing:
            raise ModelNotAvailableError(f"fusion params lack cue groups {missing}")
        return cls(
            prior_rate=float(d["prior_rate"]),
            groups=groups,
            agreement={int(n): float(v) for n, v in d.get("agreement", {}).items()},
            discount={str(g): {str(h): float(x) for h, x in dd.items()}
                      for g, dd in d.get("discount", {}).items()},
            source=str(d.get("source", "")),
            meta=dict(d.get("meta", {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> "FusionParams":
        """``path``: the ``params.json`` (``settings.models_dir / "fusion" / "params.json"``)."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotAvailableError(
                f"fusion parameters not found at {path}; run `python -m training.fusion.train_fusion`"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelNotAvailableError(f"fusion parameters at {path} are malformed: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n",
                              encoding="utf-8")


# --------------------------------------------------------------------------- result
@dataclass
class GroupScore:
    prob: float  # calibrated probability of anger from this group alone
    logit: float
    contribution: float  # log-odds this group adds to the fused score (vs the prior)
    parts: dict[str, float]  # log-odds of each feature inside the group (coef * value)


@dataclass
class FusedAnger:
    fused: float  # calibrated probability of anger, in [0, 1]
    logit: float
    groups: dict[str, GroupScore]
    available: list[str]

    @property
    def dominant(self) -> str | None:
        """The group that pushed the score up the most (None if nothing pushed it up)."""
        best = max(self.groups.items(), key=lambda kv: kv[1].contribution, default=None)
        return best[0] if best and best[1].contribution > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fused": round(self.fused, 4),
            "available": list(self.available),
            "groups": {
                g: {"prob": round(s.prob, 4), "contribution": round(s.contribution, 4)}
                for g, s in self.groups.items()
            },
        }


class Fuser:
    """Applies :class:`FusionParams` to :class:`Cues` (customer or agent, same model)."""

    def __init__(self, params: FusionParams) -> None:
        self.params = params

    @classmethod
    def load(cls, path: str | Path) -> "Fuser":
        return cls(FusionParams.load(path))

    def fuse(self, cues: Cues, exclude: tuple[str, ...] = ()) -> FusedAnger:
        p = self.params
        l0 = p.prior_logit
        feats = {g: f for g, f in group_features(cues).items() if g not in exclude}
        if not feats:
            return FusedAnger(fused=p.prior_rate, logit=l0, groups={}, available=[])
        scored: dict[str, tuple[float, dict[str, float]]] = {
            g: (f[CALIBRATED], dict(f)) if CALIBRATED in f else p.groups[g].logit(f) for g, f in feats.items()
        }
        weights = {g: p.weight(g, scored) for g in scored}
        pooled = [g for g, w in weights.items() if w > 0]
        wsum = sum(weights.values()) or 1.0
        k = p.k(len(pooled))
        groups: dict[str, GroupScore] = {}
        total = l0
        for g, (lg, parts) in scored.items():
            contrib = k * weights[g] / wsum * (lg - l0)
            total += contrib
            groups[g] = GroupScore(prob=sigmoid(lg), logit=lg, contribution=contrib, parts=parts)
        return FusedAnger(fused=sigmoid(total), logit=total, groups=groups, available=sorted(pooled))
