"""Shared helpers for the acoustic-pipeline tests (real EmoDB / TW audio)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.audio.stream import ChunkFeatures, SpeakerStream
from training.audio.eval_rate import telephone


def emodb(data_dir: Path, name: str) -> np.ndarray:
    x, sr = sf.read(data_dir / "speech" / "emodb" / "wav" / f"{name}.wav", dtype="float64")
    assert sr == 16000
    return x


def at_rate(x16: np.ndarray, sr: int) -> np.ndarray:
    return telephone(x16) if sr == 8000 else x16


def stream(x: np.ndarray, sr: int, chunk_s: float = 1.0, s: SpeakerStream | None = None) -> list[ChunkFeatures]:
    s = s or SpeakerStream(sr)
    n = max(1, int(round(chunk_s * sr)))
    return [s.process(x[i : i + n]) for i in range(0, len(x), n)]
