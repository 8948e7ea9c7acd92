"""Frame level and chunk loudness.

Level is unweighted RMS in dBFS (0 dB = RMS of a full-scale square wave, i.e. samples at
±1.0) measured on the 8 kHz analysis signal, which the stream has already DC-blocked and,
for 16 kHz input, low-passed at 3.6 kHz — so it is effectively a telephone-band level.
"""
from __future__ import annotations

import numpy as np

FLOOR_DB = -100.0


def percentiles(v: np.ndarray) -> tuple[float, float, float]:
    """p10, p50, p90 with linear interpolation (= np.percentile), without its overhead."""
    v = np.sort(v)
    n = v.size - 1
    out = []
    for q in (0.1, 0.5, 0.9):
        pos = q * n
        lo = int(pos)
        hi = min(lo + 1, n)
        out.append(float(v[lo] + (v[hi] - v[lo]) * (pos - lo)))
    return out[0], out[1], out[2]


def frame_db(frames: np.ndarray) -> np.ndarray:
    """RMS level in dBFS per row."""
    ms = np.einsum("ij,ij->i", frames, frames) / max(frames.shape[1], 1)
    return 10.0 * np.log10(np.maximum(ms, 10.0 ** (FLOOR_DB / 10.0)))


def chunk_loudness(db_speech: np.ndarray, min_frames: int = 3) -> tuple[float | None, float | None]:
    """(median dBFS, p90-p10 dB range) over speech frames; None when too few frames."""
    if db_speech.size < min_frames:
        return None, None
    p10, p50, p90 = percentiles(db_speech)
    return float(p50), float(p90 - p10)
