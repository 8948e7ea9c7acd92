"""Per-speaker opening baseline and feature deltas (愤怒感知法: compare with how the speaker opened).

:class:`SpeakerBaseline` collects chunk features from the start of the speaker's *speech*.  It is
**ready** (deltas available) after ``min_ready_s`` (default 5 s) of speech, keeps refining until
``baseline_seconds`` of speech (``settings.analysis.baseline_seconds``), then freezes.  Chunks with <
``min_chunk_speech_s`` of speech are ignored.  Each feature's baseline is a speech-time-weighted
*quantile* of its per-chunk values: a lower quantile (``LOW_Q``) for the cues that anger raises (level,
pitch, rate, effort, dynamics), so an opening that is not calm still yields a calm-side reference;
the median for the others.  While fewer than ``baseline_seconds`` are in, each delta is shrunk
towards 0 by ``c = s / (s + shrink_s)`` relative to its value at full length (``s`` = speech seconds
in the baseline), so a short, noisy baseline moves the score less (``shrink_s`` = 0, off: measured no gain).
While forming, ``stats`` is recomputed lazily: it is current after :meth:`delta` or :meth:`state_dict`.
:meth:`SpeakerBaseline.delta` returns how the current chunk differs: % faster, semitones higher, dB
louder, dB more high-frequency energy, MFCC shifts, ...
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.audio.stream import ChunkFeatures

logger = logging.getLogger("nuqi.audio.baseline")

N_MFCC = 12
_SCALARS = ("speech_rate", "f0_median_hz", "f0_range_st", "loudness_db", "hf_ratio", "spectral_tilt_db",
            "voiced_ratio", "loudness_range_db", "hnr_db", "jitter_st", "shimmer_db", "level_slope_db",
            "spectral_flux_db", "hammarberg_db")
_MFCC = tuple(f"mfcc_mean_{i + 1}" for i in range(N_MFCC))
# feature name (on ChunkFeatures; mfcc_mean_i = ChunkFeatures.mfcc_mean[i - 1]) -> accumulated in the baseline
TRACKED = _SCALARS + _MFCC
LOW_Q = 0.3
# cues that rise with anger: their baseline is the LOW_Q quantile (robust to an agitated opening)
_LOW = {"speech_rate", "f0_median_hz", "f0_range_st", "loudness_db", "hf_ratio", "spectral_tilt_db",
        "loudness_range_db", "level_slope_db", "spectral_flux_db"}
_F0_WEIGHTED = {"f0_median_hz", "f0_range_st", "jitter_st", "shimmer_db", "hnr_db"}


@dataclass
class FeatureDelta:
    speech_rate_pct: float | None  # (rate / baseline - 1) * 100
    f0_st: float | None  # semitones above the baseline median F0
    f0_range_st: float | None  # semitones wider pitch range
    loudness_db: float | None  # dB louder
    hf_ratio_db: float | None  # 10*log10(hf_ratio / baseline hf_ratio)
    spectral_tilt_db: float | None = None  # dB/octave flatter (+) than baseline
    voiced_ratio: float | None = None  # difference of voiced ratios
    loudness_range_db: float | None = None
    hnr_db: float | None = None
    jitter_st: float | None = None
    shimmer_db: float | None = None
    level_slope_db: float | None = None
    spectral_flux_db: float | None = None
    hammarberg_db: float | None = None
    mfcc_mean: list[float | None] | None = None  # c1..c12 differences (dB-scaled cepstra)
    baseline_speech_s: float = 0.0  # speech seconds in the baseline when this delta was taken

    def to_dict(self) -> dict:
        return dict(vars(self))  # scalars and one short list that is never mutated: no deep copy needed


def _wquantile(values: list[float], weights: list[float], q: float) -> float | None:
    if not values:
        return None
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    o = np.argsort(v)
    v, w = v[o], w[o]
    c = np.cumsum(w)
    return float(v[min(int(np.searchsorted(c, q * c[-1])), v.size - 1)])


def _value(f: ChunkFeatures, k: str) -> float | None:
    if k.startswith("mfcc_mean_"):
        return None if f.mfcc_mean is None else f.mfcc_mean[int(k[10:]) - 1]
    return getattr(f, k)


@dataclass
class SpeakerBaseline:
    baseline_seconds: float  # speech seconds after which the baseline freezes (settings.analysis.baseline_seconds)
    min_chunk_speech_s: float = 0.2
    min_ready_s: float = 5.0  # speech seconds after which deltas are given
    shrink_s: float = 0.0  # delta shrinkage constant (0 = none)
    progress_s: float = 0.0
    ready: bool = False
    frozen: bool = False
    values: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in TRACKED})
    weights: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in TRACKED})
    stats: dict[str, float | None] = field(default_factory=dict)
    _dirty: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.min_ready_s = min(self.min_ready_s, self.baseline_seconds)

    def update(self, f: ChunkFeatures) -> None:
        """Add a chunk while the baseline is still forming; no-op once frozen."""
        if self.frozen or f.speech_s < self.min_chunk_speech_s:
            return
        for k in TRACKED:
            v = _value(f, k)
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                continue
            w = f.voiced_s if k in _F0_WEIGHTED else f.speech_s
            if k == "speech_rate":
                w = min(f.speech_s, f.rate_speech_s)
            if w <= 0:
                continue
            self.values[k].append(float(v))
            self.weights[k].append(float(w))
        self.progress_s += f.speech_s
        if self.progress_s >= self.baseline_seconds:
            self.finalize()
        elif self.progress_s >= self.min_ready_s:
            self.ready = True
            self._dirty = True  # statistics are recomputed when next needed (delta / state_dict)

    def _compute(self) -> None:
        self.stats = {k: _wquantile(self.values[k], self.weights[k], LOW_Q if k in _LOW else 0.5) for k in TRACKED}
        self._dirty = False

    def finalize(self) -> None:
        """Freeze the statistics now (also used offline when a speaker has less speech)."""
        self._compute()
        self.ready = self.frozen = True
        logger.debug("baseline frozen after %.1f s speech: %s", self.progress_s, self.stats)

    def _shrink(self) -> float:
        if self.shrink_s <= 0 or self.frozen:
            return 1.0
        s, full = self.progress_s, float(self.baseline_seconds)
        return min(1.0, (s / (s + self.shrink_s)) / (full / (full + self.shrink_s)))

    def delta(self, f: ChunkFeatures) -> FeatureDelta | None:
        if not self.ready:
            return None
        if self._dirty:
            self._compute()
        b = self.stats
        c = self._shrink()

        def diff(k: str) -> float | None:
            v = _value(f, k)
            return None if v is None or b.get(k) is None else float(c * (v - b[k]))

        def ratio(k: str, scale: float) -> float | None:
            v = getattr(f, k)
            if v is None or b.get(k) is None or v <= 0 or b[k] <= 0:
                return None
            return float(c * scale * math.log(v / b[k]))

        rate = None
        if f.speech_rate is not None and b.get("speech_rate"):
            rate = float(c * (f.speech_rate / b["speech_rate"] - 1.0) * 100.0)
        return FeatureDelta(
            speech_rate_pct=rate,
            f0_st=ratio("f0_median_hz", 12.0 / math.log(2.0)),
            f0_range_st=diff("f0_range_st"),
            loudness_db=diff("loudness_db"),
            hf_ratio_db=ratio("hf_ratio", 10.0 / math.log(10.0)),
            spectral_tilt_db=diff("spectral_tilt_db"),
            voiced_ratio=diff("voiced_ratio"),
            loudness_range_db=diff("loudness_range_db"),
            hnr_db=diff("hnr_db"),
            jitter_st=diff("jitter_st"),
            shimmer_db=diff("shimmer_db"),
            level_slope_db=diff("level_slope_db"),
            spectral_flux_db=diff("spectral_flux_db"),
            hammarberg_db=diff("hammarberg_db"),
            mfcc_mean=None if f.mfcc_mean is None else [diff(k) for k in _MFCC],
            baseline_speech_s=float(self.progress_s),
        )

    def state_dict(self) -> dict:
        if self._dirty:
            self._compute()
        return {
            "baseline_seconds": self.baseline_seconds,
            "min_chunk_speech_s": self.min_chunk_speech_s,
            "min_ready_s": self.min_ready_s,
            "shrink_s": self.shrink_s,
            "progress_s": self.progress_s,
            "ready": self.ready,
            "frozen": self.frozen,
            # once frozen, the raw lists are no longer needed
            "values": {} if self.frozen else self.values,
            "weights": {} if self.frozen else self.weights,
            "stats": self.stats,
        }

    @classmethod
    def from_state(cls, d: dict) -> "SpeakerBaseline":
        """Restore; a state saved by the earlier version (no ``frozen`` key: ready meant frozen) is accepted."""
        b = cls(baseline_seconds=float(d["baseline_seconds"]), min_chunk_speech_s=float(d["min_chunk_speech_s"]),
                min_ready_s=float(d.get("min_ready_s", d["baseline_seconds"])), shrink_s=float(d.get("shrink_s", 0.0)))
        b.progress_s = float(d["progress_s"])
        b.ready = bool(d["ready"])
        b.frozen = bool(d.get("frozen", b.ready))
        for k in TRACKED:
            b.values[k] = [float(x) for x in d["values"].get(k, [])]
            b.weights[k] = [float(x) for x in d["weights"].get(k, [])]
        b.stats = {k: (None if v is None else float(v)) for k, v in d["stats"].items()}
        return b
