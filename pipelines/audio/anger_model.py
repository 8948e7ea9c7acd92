"""Acoustic anger score of one chunk: two small feed-forward models in plain JSON, numpy inference.

* ``absolute`` (cold) — used before the speaker baseline is ready.  Only gain- and sex-invariant cues
  of the chunk: speaking rate, pitch range and spread in semitones, level range and attack, voicing,
  spectral tilt, high-band ratio, Hammarberg index, HNR, jitter, shimmer, spectral flux, MFCC means
  (c1..c12) and spreads (c0..c12).  No absolute F0 (sex) and no absolute level (line gain).
* ``relative`` — used once the baseline is ready: the speaker deltas from
  :class:`~pipelines.audio.baseline.SpeakerBaseline` (dB louder, semitones higher, % faster, spectral and
  MFCC shifts, ...), optionally with cold cues, and optionally *stacked* on a cold network's logit (its last
  input ``cold_logit``: the logit of ``stack_base``, a linear cold model, or of ``absolute`` without one).

Each network: standardise (missing → training mean, clip at ±5 SD) → optional hidden layers (ReLU) →
raw logit.  Once the baseline is ready the relative raw logit is blended with the absolute one
(``blend_absolute``).  Then Platt calibration (``calib``: p = σ(a·raw + b)) fitted on leave-one-corpus-out
predictions, so that 0.5 means even odds of anger under equal anger / non-anger prevalence, and an optional
``prior_shift`` to a deployment prevalence.

Optional CNN member (spec ``cnn``, since 2026-12-06): a small CNN on the chunk's log-mel
(:mod:`pipelines.audio.anger_cnn`, ``cnn.onnx`` next to the JSON).  Its raw logit, times ``weight``, is added to
the cue networks' raw logit (cold: the absolute network's; once the baseline is ready: the blended relative one),
and the sum gets the member's own Platt calibration (``calib_cold`` / ``calib_opened``, fitted on
leave-one-corpus-out sums) instead of the networks'.  A chunk the CNN cannot score (no 1 s window with speech)
keeps the cue networks' score.

Trained by :mod:`training.audio.train_anger_loco` (+ ``training.audio.train_anger_cnn`` for the member); the
artifact is ``models/acoustic-anger/model.json`` (+ ``cnn.onnx``).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines.audio.anger_cnn import AngerCnn
from pipelines.audio.baseline import FeatureDelta
from pipelines.audio.stream import ChunkFeatures
from pipelines.errors import ModelNotAvailableError

logger = logging.getLogger("nuqi.audio.anger_model")

FORMAT = "nuqi-acoustic-anger-mlp-v2"
MIN_SPEECH_S = 0.15  # below this a chunk has "no speech" and gets no score
N_MFCC = 12


def _hf_logit(hf: float | None) -> float | None:
    if hf is None:
        return None
    hf = min(max(hf, 1e-4), 1 - 1e-4)
    return math.log(hf / (1.0 - hf))


def _voiced_frac(f: ChunkFeatures) -> float | None:
    return f.voiced_s / f.speech_s if f.speech_s > 0 else None


def _item(v: list[float] | None, i: int) -> float | None:
    return None if v is None else v[i]


Extractor = Callable[[ChunkFeatures, FeatureDelta | None], float | None]

ABS_FEATURES: dict[str, Extractor] = {
    "speech_rate": lambda f, d: f.speech_rate,
    "f0_range_st": lambda f, d: f.f0_range_st,
    "f0_mad_st": lambda f, d: f.f0_mad_st,
    "loudness_range_db": lambda f, d: f.loudness_range_db,
    "voiced_frac": lambda f, d: _voiced_frac(f),
    "spectral_tilt_db": lambda f, d: f.spectral_tilt_db,
    "hf_logit": lambda f, d: _hf_logit(f.hf_ratio),
    "hnr_db": lambda f, d: f.hnr_db,
    "jitter_st": lambda f, d: f.jitter_st,
    "shimmer_db": lambda f, d: f.shimmer_db,
    "level_slope_db": lambda f, d: f.level_slope_db,
    "spectral_flux_db": lambda f, d: f.spectral_flux_db,
    "hammarberg_db": lambda f, d: f.hammarberg_db,
}
for _i in range(N_MFCC):
    ABS_FEATURES[f"mfcc_mean_{_i + 1}"] = lambda f, d, i=_i: _item(f.mfcc_mean, i)
for _i in range(N_MFCC + 1):
    ABS_FEATURES[f"mfcc_std_{_i}"] = lambda f, d, i=_i: _item(f.mfcc_std, i)

# speaker deltas (only once the baseline is ready)
_DELTA_FIELDS = ("speech_rate_pct", "f0_st", "f0_range_st", "loudness_db", "hf_ratio_db", "spectral_tilt_db",
                 "voiced_ratio", "loudness_range_db", "hnr_db", "jitter_st", "shimmer_db", "level_slope_db",
                 "spectral_flux_db", "hammarberg_db")
REL_FEATURES: dict[str, Extractor] = {
    f"d_{k}": (lambda f, d, k=k: None if d is None else getattr(d, k)) for k in _DELTA_FIELDS
}
for _i in range(N_MFCC):
    REL_FEATURES[f"d_mfcc_mean_{_i + 1}"] = lambda f, d, i=_i: None if d is None else _item(d.mfcc_mean, i)
EXTRACTORS: dict[str, Extractor] = {**ABS_FEATURES, **REL_FEATURES}
# a relative model may take the absolute model's (uncalibrated) logit as its last input ("stacking")
STACK_FEATURE = "cold_logit"
CNN_FEATURE = "cnn_log_mel"  # the CNN member's share in explain()


def feature_vector(names: list[str], f: ChunkFeatures, delta: FeatureDelta | None) -> np.ndarray:
    """Raw feature values in ``names`` order; NaN where missing (imputed by the model)."""
    out = np.full(len(names), np.nan)
    for i, n in enumerate(names):
        v = EXTRACTORS[n](f, delta)
        if v is not None and math.isfinite(v):
            out[i] = v
    return out


class _Net:
    """Standardise → [Dense + ReLU]* → Dense(1) → Platt → σ."""

    def __init__(self, d: dict) -> None:
        self.features: list[str] = list(d["features"])
        self.mean = np.asarray(d["mean"], dtype=float)
        self.scale = np.asarray(d["scale"], dtype=float)
        self.layers = [(np.asarray(w, dtype=float), np.asarray(b, dtype=float)) for w, b in d["layers"]]
        self.calib = (float(d.get("calib", [1.0, 0.0])[0]), float(d.get("calib", [1.0, 0.0])[1]))
        # logit shift from the calibration prior (0.5) to a deployment prevalence of anger (Saerens et al. 2002);
        # monotone, so AUCs are unchanged
        self.prior_shift = float(d.get("prior_shift", 0.0))
        n = len(self.features)
        if not (n == self.mean.size == self.scale.size) or not self.layers:
            raise ModelNotAvailableError("acoustic anger model: inconsistent standardisation lengths")
        for w, b in self.layers:
            if w.ndim != 2 or w.shape[0] != n or b.shape != (w.shape[1],):
                raise ModelNotAvailableError("acoustic anger model: inconsistent layer shapes")
            n = w.shape[1]
        if n != 1:
            raise ModelNotAvailableError("acoustic anger model: the last layer must have one output")
        self.stack = bool(self.features) and self.features[-1] == STACK_FEATURE
        unknown = [k for k in self.features[: len(self.features) - self.stack] if k not in EXTRACTORS]
        if unknown:
            raise ModelNotAvailableError(f"acoustic anger model uses unknown features {unknown}")

    def z(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        return np.where(np.isfinite(z), np.clip(z, -5.0, 5.0), 0.0)  # missing -> training mean

    def raw_logit(self, z: np.ndarray) -> np.ndarray:
        h = z
        for w, b in self.layers[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = self.layers[-1]
        return (h @ w + b)[..., 0]

    def calibrate(self, raw: float) -> float:
        return self.calib[0] * raw + self.calib[1] + self.prior_shift

    def logit(self, x: np.ndarray) -> float:
        return self.calibrate(float(self.raw_logit(self.z(x))))

    def prob(self, x: np.ndarray) -> float:
        return _sigmoid(self.logit(x))


def _sigmoid(s: float) -> float:
    return 1.0 / (1.0 + math.exp(-min(max(s, -50.0), 50.0)))


class AcousticAngerModel:
    def __init__(self, spec: dict, path: Path | None = None) -> None:
        if spec.get("format") != FORMAT:
            raise ModelNotAvailableError(f"acoustic anger model {path}: unknown format {spec.get('format')!r}")
        self.path = path
        self.spec = spec
        self.absolute = _Net(spec["models"]["absolute"])
        self.relative = _Net(spec["models"]["relative"])
        # the network whose logit a stacking relative model takes (default: the absolute model itself)
        self.stack_base = _Net(spec["models"]["stack_base"]) if "stack_base" in spec["models"] else self.absolute
        if self.absolute.stack or self.stack_base.stack:
            raise ModelNotAvailableError("acoustic anger model: only the relative model may stack")
        self.min_speech_s = float(spec.get("min_speech_s", MIN_SPEECH_S))
        # once the baseline is ready: raw logit = (1 - blend) * relative raw logit + blend * absolute raw logit,
        # then the relative network's calibration (fitted on that blend)
        self.blend_absolute = float(spec.get("blend_absolute", 0.0))
        if not 0.0 <= self.blend_absolute < 1.0:
            raise ModelNotAvailableError("acoustic anger model: blend_absolute must be in [0, 1)")
        cnn = spec.get("cnn")
        self.cnn: AngerCnn | None = None
        if cnn:
            if path is None:
                raise ModelNotAvailableError("acoustic anger model: a CNN member needs the model's folder")
            self.cnn = AngerCnn.load(Path(path).parent / cnn["file"])
            self.cnn_weight = float(cnn["weight"])
            self.cnn_calib = {"cold": tuple(float(v) for v in cnn["calib_cold"]),
                              "opened": tuple(float(v) for v in cnn["calib_opened"])}

    @classmethod
    def load(cls, path: Path, cnn: bool = True) -> "AcousticAngerModel":
        """The model file (``models_dir / "acoustic-anger" / "model.json"``, as the registry passes it); ``cnn``
        False leaves out its CNN member (the cue networks alone, for A/B benchmarks)."""
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ModelNotAvailableError(
                f"acoustic anger model not found at {path}; run python -m training.audio.train_anger_loco") from e
        except (OSError, ValueError) as e:
            raise ModelNotAvailableError(f"acoustic anger model at {path} is unreadable: {e}") from e
        if not cnn:
            spec.pop("cnn", None)
        try:
            return cls(spec, path)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ModelNotAvailableError(f"acoustic anger model at {path} is malformed: {e}") from e

    def inputs(self, m: _Net, f: ChunkFeatures, delta: FeatureDelta | None) -> np.ndarray:
        """Raw input vector of model ``m`` (the absolute model's raw logit appended when ``m`` stacks on it)."""
        if not m.stack:
            return feature_vector(m.features, f, delta)
        a = self.stack_base
        cold = float(a.raw_logit(a.z(feature_vector(a.features, f, None))))
        return np.append(feature_vector(m.features[:-1], f, delta), cold)

    def cnn_logit(self, f: ChunkFeatures) -> float | None:
        """The CNN member's raw logit of the chunk (None: no member, or no 1 s window with speech)."""
        return None if self.cnn is None else self.cnn.logit(f.log_mel)

    def score(self, f: ChunkFeatures, delta: FeatureDelta | None) -> float | None:
        """Anger probability in [0, 1] (calibrated at equal prevalence, shifted to the deployment prior); None when
        the chunk had no speech."""
        if f.speech_s < self.min_speech_s:
            return None
        net = self.absolute if delta is None else self.relative
        raw = (float(net.raw_logit(net.z(self.inputs(net, f, None)))) if delta is None
               else self.relative_raw(f, delta))
        c = self.cnn_logit(f)
        if c is None:
            return _sigmoid(net.calibrate(raw))
        a, b = self.cnn_calib["cold" if delta is None else "opened"]
        return _sigmoid(a * (raw + self.cnn_weight * c) + b + net.prior_shift)

    def relative_raw(self, f: ChunkFeatures, delta: FeatureDelta) -> float:
        """Uncalibrated relative logit: the relative network blended with the absolute one (``blend_absolute``)."""
        m = self.relative
        s = float(m.raw_logit(m.z(self.inputs(m, f, delta))))
        w = self.blend_absolute
        if w:
            a = self.absolute
            s = (1.0 - w) * s + w * float(a.raw_logit(a.z(self.inputs(a, f, None))))
        return s

    def explain(self, f: ChunkFeatures, delta: FeatureDelta | None) -> dict[str, float]:
        """Per-feature contribution to the calibrated logit, largest first (positive = towards anger).

        The values sum to the logit minus :meth:`logit_at_mean`: exactly for a linear network, approximately
        (integrated gradients along the straight path from the training mean, 8 steps) for one with hidden
        layers.  With a blended relative score both networks' parts are weighted and added up by name
        (``cold_logit`` = the stacked cold evidence).  Empty when the chunk had no speech.
        """
        if f.speech_s < self.min_speech_s:
            return {}
        c = self.cnn_logit(f)
        net = self.absolute if delta is None else self.relative
        a = net.calib[0] if c is None else self.cnn_calib["cold" if delta is None else "opened"][0]
        if delta is None:
            out = self._contrib(self.absolute, f, None, a)
        else:
            w = self.blend_absolute
            out = self._contrib(self.relative, f, delta, (1.0 - w) * a)
            if w:
                for k, v in self._contrib(self.absolute, f, None, w * a).items():
                    out[k] = out.get(k, 0.0) + v
        if c is not None:
            out[CNN_FEATURE] = a * self.cnn_weight * c
        return dict(sorted(out.items(), key=lambda kv: -abs(kv[1])))

    def logit_at_mean(self, relative: bool, cnn: bool = False) -> float:
        """The calibrated logit at the training mean (all-zero standardised inputs) and, with ``cnn``, a CNN logit
        of 0: what ``explain`` starts from (``cnn``: the chunk was scored with the CNN member)."""
        def raw0(m: _Net) -> float:
            return float(m.raw_logit(np.zeros(len(m.features))))
        net = self.relative if relative else self.absolute
        w = self.blend_absolute if relative else 0.0
        r = (1.0 - w) * raw0(net) + (w * raw0(self.absolute) if w else 0.0)
        if cnn and self.cnn is not None:
            a, b = self.cnn_calib["opened" if relative else "cold"]
            return a * r + b + net.prior_shift
        return net.calibrate(r)

    def _contrib(self, m: _Net, f: ChunkFeatures, delta: FeatureDelta | None, weight: float) -> dict[str, float]:
        """``weight`` × each input's share of the raw logit (exact if linear, integrated gradients otherwise)."""
        z = m.z(self.inputs(m, f, delta))
        if len(m.layers) == 1:
            c = z * m.layers[0][0][:, 0]
        else:
            steps = np.linspace(1 / 16, 15 / 16, 8)[:, None] * z[None, :]
            g = np.zeros_like(z)
            for s in steps:
                g += _grad(m, s)
            c = z * g / len(steps)
        return {n: weight * float(v) for n, v in zip(m.features, c)}


def _grad(m: _Net, z: np.ndarray) -> np.ndarray:
    """d raw_logit / d z at ``z`` (ReLU network)."""
    acts = []
    h = z
    for w, b in m.layers[:-1]:
        pre = h @ w + b
        acts.append(pre > 0)
        h = np.maximum(pre, 0.0)
    g = m.layers[-1][0][:, 0]
    for (w, _), a in zip(reversed(m.layers[:-1]), reversed(acts)):
        g = w @ (g * a)
    return g
