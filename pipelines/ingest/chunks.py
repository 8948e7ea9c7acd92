"""Completed framer windows -> the :class:`~pipelines.audio.decode.DecodedChunk` that ``process_audio`` takes.

Windows of the same index from several legs become one chunk (one entry per role), exactly what
``decode_chunk`` makes of the same 1 s of stereo s16le today: float32 ``int16 / 32768`` at the analysis rate
(8 or 16 kHz; other leg rates are resampled like ``decode_chunk`` resamples them).  Unlike ``decode_chunk`` it
refuses nothing: an all-zero window (hold, mute, lost audio) is valid silence, and a clipped window is
reported by :func:`clipped_fraction` for the caller to flag rather than dropped from the call clock.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pipelines.audio.decode import CLIP_LEVEL, DecodedChunk, analysis_rate, resample
from pipelines.errors import InputError
from pipelines.ingest.framer import Window


def window_chunk(windows: Iterable[Window]) -> DecodedChunk:
    """Windows of one index (one per role) -> one chunk; ``duration_s`` is the longest window's."""
    wins = list(windows)
    if not wins:
        raise InputError("no windows to analyse", field="body")
    if len({w.index for w in wins}) != 1 or len({w.role for w in wins}) != len(wins):
        raise InputError("a chunk takes one window per role, all of the same index", field="body")
    rates = {w.sample_rate for w in wins}
    sr = max(analysis_rate(r) for r in rates)
    audio: dict[str, np.ndarray] = {}
    for w in wins:
        x = w.audio()
        if w.sample_rate != sr:
            x = resample(x, w.sample_rate, sr)  # as decode_chunk does for off-rate input
        audio[w.role] = x
    rate = rates.pop() if len(rates) == 1 else sr
    return DecodedChunk(sample_rate=sr, input_rate=rate, duration_s=max(w.duration_s for w in wins), audio=audio,
                        encoding="pcm_s16le")


def clipped_fraction(window: Window) -> float:
    """Share of samples at full scale (``decode_chunk`` refuses a chunk above 10 %)."""
    if len(window.samples) == 0:
        return 0.0
    return float(np.mean(np.abs(window.samples.astype(np.int32)) >= int(CLIP_LEVEL * 32768)))
