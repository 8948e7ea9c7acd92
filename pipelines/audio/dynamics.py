"""Within-chunk dynamics of pitch, level, voicing and spectrum (gain- and sex-invariant cues).

Candidates for separating anger from the other aroused emotions (issue 13): the *shape* of a chunk's contours
rather than their level — F0 slope and skew, level decay and skew, voiced-run length, MFCC velocity spread and
spectral flatness.  All computed from arrays the stream already has for the chunk (no extra FFT).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.audio import spectral

N_DMFCC = 6  # c1..c6 velocity spreads
_FLAT_BINS = (spectral._FREQS >= 100.0) & (spectral._FREQS < 3800.0)


@dataclass
class Dynamics:
    f0_slope_st_s: float | None = None  # least-squares F0 slope over periodic frames, semitones / s
    f0_skew: float | None = None  # (log p50 - log p10) / (log p90 - log p10) of F0: 0.5 symmetric
    level_skew: float | None = None  # the same for speech-frame level (dB)
    level_decay_db: float | None = None  # p10 of the level step between consecutive speech frames (release), dB
    voiced_run_s: float | None = None  # mean length of runs of voiced frames, s
    flatness_db: float | None = None  # median spectral flatness of speech frames, 100–3800 Hz, dB
    dmfcc_std: list[float] | None = None  # SD of c1..c6 steps between consecutive speech frames


def _skew3(v: np.ndarray) -> float | None:
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return float((p50 - p10) / (p90 - p10)) if p90 - p10 > 1e-6 else None


def chunk_dynamics(f0: np.ndarray, periodic: np.ndarray, voiced: np.ndarray, db: np.ndarray, speech: np.ndarray,
                   power: np.ndarray, hop_s: float) -> Dynamics:
    """Dynamics of one chunk's frames (masks are per frame); fields None where too few frames."""
    out = Dynamics()
    pi = np.flatnonzero(periodic)
    if pi.size >= 5:
        st = 12.0 * np.log2(f0[pi])
        t = pi * hop_s
        tc = t - t.mean()
        den = float(np.dot(tc, tc))
        if den > 0:
            out.f0_slope_st_s = float(np.dot(tc, st - st.mean()) / den)
        out.f0_skew = _skew3(st)
    si = np.flatnonzero(speech)
    if si.size >= 5:
        out.level_skew = _skew3(db[si])
        adj = np.diff(si) == 1
        if adj.sum() >= 3:
            out.level_decay_db = float(np.percentile(db[si[1:][adj]] - db[si[:-1][adj]], 10))
        p = power[si][:, _FLAT_BINS] + 1e-12
        flat = 10.0 * (np.log10(p).mean(axis=1) - np.log10(p.mean(axis=1)))
        out.flatness_db = float(np.median(flat))
        if adj.sum() >= 3:
            cep = spectral.log_mel(power[si]) @ spectral.DCT[1 : N_DMFCC + 1].T
            d = cep[1:][adj] - cep[:-1][adj]
            out.dmfcc_std = d.std(axis=0).tolist()
    if voiced.any():
        v = voiced.astype(np.int8)
        edges = np.diff(np.concatenate([[0], v, [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        out.voiced_run_s = float((ends - starts).mean() * hop_s)
    return out
