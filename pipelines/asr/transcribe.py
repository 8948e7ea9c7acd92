"""Transcribe recorded files (``nuqi transcribe FILE...``): the operator's check of recognition on their audio.

``transcribe_file(engine, path, channel=None)`` → ``{"file", "sample_rate", "channel", "duration_s", "text",
"segments": [{"start", "end", "text", "confidence"}]}``.  Files are read like every recorded file
(:func:`pipelines.audio.files.read_audio_file`: WAV incl. G.711, FLAC, MP3, OGG); 8 kHz and 16 kHz are the
rates calls come at (others are resampled to the recogniser's 16 kHz like them).  A mono file is
transcribed as is; a file with several channels needs ``channel`` (0-based, e.g. 1 = the customer of a
call recorded agent-left / customer-right).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.asr.engine import AsrEngine
from pipelines.audio.files import read_audio_file
from pipelines.errors import InputError, UnsupportedAudioError

MIN_RATE = 8000


def select_channel(frames: Any, channel: int | None, path: Path) -> tuple[Any, int]:
    """The mono samples of ``channel`` (frames shaped (n, channels)); refuses an ambiguous or missing channel."""
    n_channels = frames.shape[1]
    if channel is None:
        if n_channels != 1:
            raise InputError(f"{path}: {n_channels} channels; choose one with --channel 0..{n_channels - 1}",
                             field="channel", channels=n_channels)
        channel = 0
    if not 0 <= channel < n_channels:
        raise InputError(f"{path}: channel {channel} does not exist (the file has {n_channels})",
                         field="channel", channels=n_channels)
    return frames[:, channel], channel


def transcribe_file(engine: AsrEngine, path: Path, channel: int | None = None) -> dict[str, Any]:
    """One file's transcript as a JSON-ready dict (see the module docstring)."""
    path = Path(path)
    frames, rate = read_audio_file(path)
    if rate < MIN_RATE:
        raise UnsupportedAudioError(f"{path}: sample rate {rate} Hz is below the {MIN_RATE} Hz of a phone line",
                                    field="path", sample_rate=rate)
    samples, channel = select_channel(frames, channel, path)
    segments = engine.transcribe(samples, rate)
    return {
        "file": str(path),
        "sample_rate": rate,
        "channel": channel,
        "duration_s": round(samples.size / rate, 3),
        "text": "".join(s.text for s in segments),
        "segments": [s.to_dict() for s in segments],
    }
