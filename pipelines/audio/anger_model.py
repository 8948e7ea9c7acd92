"""Acoustic anger score of one chunk: two small logistic models in plain JSON, numpy inference.

* ``absolute`` — used before the speaker baseline is ready.  Only gain-invariant and
  gender-agnostic cues (speaking rate, pitch range in semitones, level range, voicing,
  spectral tilt, high-band ratio): no absolute F0 (gender) and no absolute level (line gain).
* ``relative`` — used once the baseline is ready: the absolute cues plus the speaker deltas
  (% faster, semitones higher, dB louder, dB more high-band energy, ...).

Trained by :mod:`pipelines.audio.train_anger`; the artifact is ``models/acoustic-anger/model.json``.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from pipelines.audio.baseline import FeatureDelta
from pipelines.audio.stream import ChunkFeatures
from pipelines.errors import ModelNotAvailableError

logger = logging.getLogger("nuqi.audio.anger_model")

FORMAT = "nuqi-acoustic-anger-logreg-v1"
MIN_SPEECH_S = 0.15  # below this a chunk has "no speech" and gets no score


def _hf_logit(hf: float | None) -> float | None:
    if hf is None:
        return None
    hf = min(max(hf, 1e-4), 1 - 1e-4)
    return math.log(hf / (1.0 - hf))


def _voiced_frac(f: ChunkFeatures) -> float | None:
    return f.voiced_s / f.speech_s if f.speech_s > 0 else None


ABS_FEATURES: dict[str, object] = {
    "speech_rate": lambda f, d: f.speech_rate,
    "f0_range_st": lambda f, d: f.f0_range_st,
    "f0_mad_st": lambda f, d: f.f0_mad_st,
    "loudness_range_db": lambda f, d: f.loudness_range_db,
    "voiced_frac": lambda f, d: _voiced_frac(f),
    "spectral_tilt_db": lambda f, d: f.spectral_tilt_db,
    "hf_logit": lambda f, d: _hf_logit(f.hf_ratio),
}
# Once the baseline is ready only speaker-relative cues are used (愤怒感知法: compare the caller with
# their own opening).  Absolute voice-quality features made the model fire on voices unlike EmoDB's
# actors (synthetic or telephone voices scored ~0.8 "anger" when calm), so they stay in the
# pre-baseline model only.
REL_FEATURES: dict[str, object] = {
    "d_speech_rate_pct": lambda f, d: None if d is None else d.speech_rate_pct,
    "d_f0_st": lambda f, d: None if d is None else d.f0_st,
    "d_f0_range_st": lambda f, d: None if d is None else d.f0_range_st,
    "d_loudness_db": lambda f, d: None if d is None else d.loudness_db,
    "d_hf_ratio_db": lambda f, d: None if d is None else d.hf_ratio_db,
    "d_spectral_tilt_db": lambda f, d: None if d is None else d.spectral_tilt_db,
}
EXTRACTORS = {**ABS_FEATURES, **REL_FEATURES}


def feature_vector(names: list[str], f: ChunkFeatures, delta: FeatureDelta | None) -> np.ndarray:
    """Raw feature values in ``names`` order; NaN where missing (imputed by the model)."""
    out = np.full(len(names), np.nan)
    for i, n in enumerate(names):
        v = EXTRACTORS[n](f, delta)  # type: ignore[operator]
        if v is not None and math.isfinite(v):
            out[i] = v
    return out


class _Logistic:
    def __init__(self, d: dict) -> None:
        self.features: list[str] = list(d["features"])
        self.mean = np.asarray(d["mean"], dtype=float)
        self.scale = np.asarray(d["scale"], dtype=float)
        self.coef = np.asarray(d["coef"], dtype=float)
        self.intercept = float(d["intercept"])
        # prior-shift correction from the training prevalence to the deployment prevalence of anger
        # (Saerens et al. 2002); monotone, so AUCs are unchanged: see train_anger.deploy_shift
        self.prior_shift = float(d.get("prior_shift", 0.0))
        if not (len(self.features) == self.mean.size == self.scale.size == self.coef.size):
            raise ModelNotAvailableError("acoustic anger model: inconsistent coefficient lengths")
        unknown = [n for n in self.features if n not in EXTRACTORS]
        if unknown:
            raise ModelNotAvailableError(f"acoustic anger model uses unknown features {unknown}")

    def z(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        return np.where(np.isfinite(z), np.clip(z, -5.0, 5.0), 0.0)  # missing -> training mean

    def prob(self, x: np.ndarray) -> float:
        s = float(self.z(x) @ self.coef + self.intercept + self.prior_shift)
        return 1.0 / (1.0 + math.exp(-s))


class AcousticAngerModel:
    def __init__(self, spec: dict, path: Path | None = None) -> None:
        if spec.get("format") != FORMAT:
            raise ModelNotAvailableError(f"acoustic anger model {path}: unknown format {spec.get('format')!r}")
        self.path = path
        self.spec = spec
        self.absolute = _Logistic(spec["models"]["absolute"])
        self.relative = _Logistic(spec["models"]["relative"])
        self.min_speech_s = float(spec.get("min_speech_s", MIN_SPEECH_S))

    @classmethod
    def load(cls, path: Path | None = None) -> "AcousticAngerModel":
        if path is None:
            from pipelines.settings import get_settings

            path = get_settings().models_dir / "acoustic-anger" / "model.json"
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ModelNotAvailableError(f"acoustic anger model not found at {path}; run pipelines/audio/train_anger.py") from e
        except (OSError, ValueError) as e:
            raise ModelNotAvailableError(f"acoustic anger model at {path} is unreadable: {e}") from e
        try:
            return cls(spec, path)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelNotAvailableError(f"acoustic anger model at {path} is malformed: {e}") from e

    def score(self, f: ChunkFeatures, delta: FeatureDelta | None) -> float | None:
        """Anger probability-like score in [0, 1]; None when the chunk had no speech."""
        if f.speech_s < self.min_speech_s:
            return None
        m = self.relative if delta is not None else self.absolute
        return m.prob(feature_vector(m.features, f, delta))

    def explain(self, f: ChunkFeatures, delta: FeatureDelta | None) -> dict[str, float]:
        """Per-feature contribution to the logit (coef * standardised value), largest first.

        Positive = pushes towards anger.  Empty when the chunk had no speech.  The logit is the sum of
        these plus the model's ``intercept`` and ``prior_shift``.
        """
        if f.speech_s < self.min_speech_s:
            return {}
        m = self.relative if delta is not None else self.absolute
        c = m.z(feature_vector(m.features, f, delta)) * m.coef
        return dict(sorted(((n, float(v)) for n, v in zip(m.features, c)), key=lambda kv: -abs(kv[1])))
