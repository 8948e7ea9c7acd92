"""Offline analysis of whole recordings with the live pipeline (same code path as the service).

``process_file`` cuts a recording into the same 1 s chunks the call platform would
send, feeds them (and, when given, transcript turns at their end times) through
:mod:`pipelines.session`, and returns the timeline and summary.  ``analyze-audio``,
``replay`` and QA batch scoring are built on it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.audio.decode import ROLES, DecodedChunk, analysis_rate, parse_channel_map, resample
from pipelines.audio.files import read_audio_file
from pipelines.errors import InputError
from pipelines.registry import ModelRegistry
from pipelines.session import CallState, process_audio, process_transcript, summarize
from pipelines.transcripts import Turn

logger = logging.getLogger("nuqi.analyze")


@dataclass
class FileAnalysis:
    path: str
    duration_s: float
    sample_rate: int
    input_rate: int
    channels: dict[str, int]
    timeline: list[dict[str, Any]]
    utterances: list[dict[str, Any]]
    summary: dict[str, Any]
    state: CallState = field(repr=False, default_factory=CallState)

    def overview(self) -> dict[str, Any]:
        """One JSON object per file: duration, per-channel features and acoustic anger."""
        per_role: dict[str, Any] = {}
        for role in self.channels:
            entries = [e["roles"][role] for e in self.timeline if role in e["roles"]]
            feats = {k: _median([x["features"].get(k) for x in entries]) for k in
                     ("speech_rate", "f0_median_hz", "f0_range_st", "loudness_db", "voiced_ratio")}
            deltas = [x["delta"] for x in entries if x.get("delta")]
            acoustic = [x["anger"]["acoustic"] for x in entries if x["anger"].get("acoustic") is not None]
            per_role[role] = {
                "channel": self.channels[role],
                "speech_s": round(sum(x["features"].get("speech_s") or 0.0 for x in entries), 2),
                "features": feats,
                "delta_last": deltas[-1] if deltas else None,
                "anger": {
                    "acoustic": _round(float(np.mean(acoustic))) if acoustic else None,
                    "acoustic_max": _round(float(np.max(acoustic))) if acoustic else None,
                    "acoustic_timeline": acoustic,
                },
            }
        return {"file": self.path, "duration_s": round(self.duration_s, 3), "sample_rate": self.input_rate,
                "channels": per_role, "summary": self.summary}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _median(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return _round(float(np.median(vals))) if vals else None


def default_roles(n_channels: int, channel_map: str | None = None) -> tuple[str, ...]:
    if channel_map:
        roles = parse_channel_map(channel_map) or ()
        if len(roles) != n_channels:
            raise InputError(f"channel_map names {len(roles)} channels but the file has {n_channels}",
                             field="channel_map")
        return roles
    if n_channels == 1:
        return ("customer",)
    if n_channels == 2:
        return ("agent", "customer")
    raise InputError(f"{n_channels} channels: give a channel map for files with more than 2 channels",
                     field="channel_map")


def process_file(path: Path, models: ModelRegistry, *, channel_map: str | None = None,
                 turns: list[Turn] | None = None, chunk_s: float = 1.0, asr_turns: bool = False) -> FileAnalysis:
    """Run a recording (and optional transcript turns) through the live pipeline; ``asr_turns``: the turns come
    from the built-in recogniser (keywords also matched by sound, as live ASR transcripts are)."""
    frames, rate = read_audio_file(Path(path))
    roles = default_roles(frames.shape[1], channel_map)
    sr = analysis_rate(rate)
    frames = resample(frames, rate, sr)
    state = CallState()
    timeline: list[dict[str, Any]] = []
    utterances: list[dict[str, Any]] = []
    pending = list(turns or [])
    hop = max(1, int(round(chunk_s * sr)))
    seq = 0
    for start in range(0, frames.shape[0], hop):
        block = frames[start:start + hop]
        while pending and pending[0].end <= start / sr:  # transcripts arrive when their turn is over
            utterances.append(_turn(state, pending.pop(0), models, asr_turns))
        audio = {role: np.ascontiguousarray(block[:, i]) for i, role in enumerate(roles) if role in ROLES}
        chunk = DecodedChunk(sample_rate=sr, input_rate=rate, duration_s=block.shape[0] / sr, audio=audio,
                             encoding="file")
        timeline.append(process_audio(state, chunk, seq, models, start / sr).to_dict())
        seq += 1
    for turn in pending:
        utterances.append(_turn(state, turn, models, asr_turns))
    summary = summarize(state, timeline, models.fusion)
    return FileAnalysis(path=str(path), duration_s=frames.shape[0] / sr, sample_rate=sr, input_rate=rate,
                        channels={r: i for i, r in enumerate(roles) if r in ROLES}, timeline=timeline,
                        utterances=utterances, summary=summary, state=state)


def _turn(state: CallState, turn: Turn, models: ModelRegistry, asr: bool = False) -> dict[str, Any]:
    return process_transcript(state, turn.role, turn.text, turn.start, turn.end, True, models, asr=asr).to_dict()
