"""Whole recorded files → validated float32 frames (WAV incl. G.711, FLAC, MP3, OGG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.audio.decode import _parse_wav, _wav_samples
from pipelines.errors import AudioDecodeError, UnsupportedAudioError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga")


def read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    """Return ``(frames shaped (n, channels) float32, sample_rate)``; precise errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file", field="path")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: file is empty (0 bytes)", field="path")
    head = path.read_bytes()[:4] if path.stat().st_size < 4 else path.open("rb").read(4)
    if head == b"RIFF":
        info = _parse_wav(path.read_bytes())
        if info.channels < 1:
            raise UnsupportedAudioError(f"{path}: WAV declares 0 channels", field="path")
        return _wav_samples(info), info.sample_rate
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise AudioDecodeError(f"{path}: cannot decode audio ({exc})", field="path") from exc
    if data.shape[1] == 0:
        raise UnsupportedAudioError(f"{path}: audio has 0 channels", field="path")
    return np.ascontiguousarray(data), int(rate)


def iter_audio_paths(paths: list[Path]) -> list[Path]:
    """Expand folders (recursively) into audio files, sorted; files are kept as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES and q.is_file()))
        else:
            out.append(p)
    return out
