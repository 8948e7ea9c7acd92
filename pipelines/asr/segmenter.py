"""Live utterance segmentation: one leg's 1 s windows in, whole utterances out as soon as speech ends.

``UtteranceSegmenter(call_id, role)`` is fed a leg's audio in call-clock order (``push(samples, rate,
t_start)``, or ``push_window(window)`` with a :class:`pipelines.ingest.Window`) and returns the
:class:`Utterance` s whose speech has ended: a speech region (Silero VAD, the ONNX model bundled in
faster-whisper, run on the pending audio at 16 kHz) followed by at least ``end_silence_ms`` of non-speech.
Each utterance carries ``speech_pad_ms`` of context on both sides, float32 16 kHz samples and its call-clock
``t_start``/``t_end``.  A region that grows past ``max_utterance_s`` is cut (at a pause when there is one), so
a monologue still reaches the recogniser.  Pending audio without speech is trimmed to the pad, so memory stays
bounded on a silent leg.

Pure computation (numpy, soxr and the VAD's onnxruntime session), no I/O: the caller owns one segmenter per
(call, leg) and hands the utterances to :class:`pipelines.asr.worker.AsrWorkerPool`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.asr.engine import WHISPER_RATE, resample_to_16k, to_float_mono
from pipelines.errors import InputError

GAP_TOLERANCE_S = 0.02  # a jump in t_start larger than this ends the pending audio (lost frames, resync)


@dataclass(frozen=True)
class SegmenterConfig:
    threshold: float = 0.5  # Silero speech probability of a 32 ms frame
    min_speech_ms: int = 250  # shorter bursts are not utterances
    end_silence_ms: int = 600  # non-speech after a region that ends the utterance
    speech_pad_ms: int = 400  # context kept on both sides (as the engine's VAD gate, VadConfig)
    max_utterance_s: float = 20.0  # a longer region is cut (Whisper decodes 30 s at most)


@dataclass(frozen=True, eq=False)
class Utterance:
    """One ended stretch of speech of one leg: float32 PCM at 16 kHz plus where it lies on the call clock."""

    call_id: str
    role: str
    seq: int  # 0, 1, … per (call, role)
    t_start: float  # call-clock seconds of samples[0]
    t_end: float  # call-clock seconds after the last sample
    samples: np.ndarray = field(repr=False)
    sample_rate: int = WHISPER_RATE
    speech_end: float = 0.0  # call-clock seconds where the VAD heard speech end (t_end minus the pad)

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sample_rate


class UtteranceSegmenter:
    """Streaming VAD segmenter of one leg (see the module docstring)."""

    def __init__(self, call_id: str, role: str, config: SegmenterConfig | None = None) -> None:
        from faster_whisper.vad import VadOptions, get_vad_model  # lazy: the asr extra

        self.call_id, self.role = call_id, role
        self.config = config or SegmenterConfig()
        c = self.config
        self._vad_options = VadOptions(threshold=c.threshold, min_speech_duration_ms=c.min_speech_ms,
                                       min_silence_duration_ms=c.end_silence_ms, speech_pad_ms=0,
                                       max_speech_duration_s=c.max_utterance_s)
        get_vad_model()  # load the ONNX session now, not on the first window
        self._buf = np.zeros(0, np.float32)
        self._t0: float | None = None  # call-clock seconds of _buf[0]
        self._seq = 0

    @property
    def pending_s(self) -> float:
        return self._buf.size / WHISPER_RATE

    def push_window(self, window: Any) -> list[Utterance]:
        """A :class:`pipelines.ingest.Window` of this leg (int16 at its rate); flushes on the final window."""
        if window.role != self.role:
            raise InputError(f"window of leg {window.role!r} pushed to the segmenter of {self.role!r}", field="role")
        out = self.push(window.audio(), window.sample_rate, window.t_start)
        return out + self.flush() if window.final else out

    def push(self, samples: np.ndarray, sample_rate: int, t_start: float) -> list[Utterance]:
        """Append a leg's audio starting at call-clock ``t_start``; return the utterances that have ended."""
        x = resample_to_16k(to_float_mono(samples), sample_rate)
        out: list[Utterance] = []
        if self._t0 is not None and abs(t_start - (self._t0 + self.pending_s)) > GAP_TOLERANCE_S:
            out += self.flush()  # discontinuity: what is pending ends here
        if self._t0 is None or self._buf.size == 0:
            self._t0 = t_start
        self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        return out + self._cut(final=False)

    def flush(self) -> list[Utterance]:
        """End of the leg (or a gap): everything pending that holds speech becomes an utterance."""
        out = self._cut(final=True)
        self._buf, self._t0 = np.zeros(0, np.float32), None
        return out

    # ------------------------------------------------------------------ internals
    def _regions(self) -> list[tuple[int, int]]:
        from faster_whisper.vad import get_speech_timestamps

        if self._buf.size < 512:
            return []
        return [(r["start"], r["end"]) for r in get_speech_timestamps(self._buf, self._vad_options)]

    def _cut(self, final: bool) -> list[Utterance]:
        c = self.config
        regions = self._regions()
        n = self._buf.size
        pad = int(c.speech_pad_ms * WHISPER_RATE / 1000)
        if not regions:
            if n > pad:  # keep only the context a next utterance may need
                self._t0 = (self._t0 or 0.0) + (n - pad) / WHISPER_RATE
                self._buf = self._buf[n - pad:].copy()
            return []
        end_gap = int(c.end_silence_ms * WHISPER_RATE / 1000)
        max_len = int(c.max_utterance_s * WHISPER_RATE)
        out: list[Utterance] = []
        consumed = 0
        for i, (s, e) in enumerate(regions):
            closed = final or n - e >= end_gap or i < len(regions) - 1 or e - s >= max_len - pad
            if not closed:
                break
            a, b = max(consumed, s - pad), min(n, e + pad)
            out.append(self._utterance(a, b, e))
            consumed = b if (final or i < len(regions) - 1 or n - e >= end_gap) else e
        if consumed:
            self._t0 = (self._t0 or 0.0) + consumed / WHISPER_RATE
            self._buf = self._buf[consumed:].copy()
        return out

    def _utterance(self, a: int, b: int, speech_end: int) -> Utterance:
        t0 = self._t0 or 0.0
        u = Utterance(call_id=self.call_id, role=self.role, seq=self._seq, t_start=round(t0 + a / WHISPER_RATE, 3),
                      t_end=round(t0 + b / WHISPER_RATE, 3), samples=self._buf[a:b].copy(),
                      speech_end=round(t0 + speech_end / WHISPER_RATE, 3))
        self._seq += 1
        return u
