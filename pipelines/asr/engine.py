"""Speech-to-text for QA batch scoring: a small interface and its faster-whisper implementation.

``WhisperEngine.load(model_dir)`` loads the CTranslate2 Whisper base model assembled by
:mod:`pipelines.asr.model_assembly` (never downloads).  ``transcribe(samples, rate)``
accepts 8 kHz or 16 kHz (any rate; resampled to 16 kHz with soxr), gates the audio with
faster-whisper's bundled Silero VAD (``silero_vad_v6.onnx`` ships inside the wheel, so
it works offline) so silence and noise are never decoded, decodes Mandarin, converts
Traditional characters to Simplified and drops hallucinations (:mod:`pipelines.asr.filters`).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import soxr

from pipelines.asr.filters import DEFAULT_FILTER, FilterConfig, collapse_repeated_segments, filter_segment
from pipelines.errors import InputError, InvalidAudioContentError, ModelNotAvailableError

logger = logging.getLogger("nuqi.asr.engine")

WHISPER_RATE = 16_000
REQUIRED_MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True)
class Segment:
    """One recognised stretch of speech; times in seconds from the start of the input."""

    start: float
    end: float
    text: str
    avg_logprob: float | None = None  # decoder mean token log-probability (confidence); None if unknown


@runtime_checkable
class AsrEngine(Protocol):
    def transcribe(self, samples: np.ndarray, sample_rate: int) -> list[Segment]:
        """Recognise mono ``samples`` (float in [-1, 1] or int16 PCM) at ``sample_rate`` Hz."""
        ...


@dataclass(frozen=True)
class VadConfig:
    """Silero VAD gate (faster-whisper ``VadOptions``)."""

    threshold: float = 0.5  # speech probability above which a 32 ms frame is speech
    min_speech_duration_ms: int = 250  # shorter bursts (clicks, coughs) are not transcribed
    min_silence_duration_ms: int = 500  # pause that ends a speech region
    speech_pad_ms: int = 200  # context kept around each region

    def options(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "min_speech_duration_ms": self.min_speech_duration_ms,
            "min_silence_duration_ms": self.min_silence_duration_ms,
            "speech_pad_ms": self.speech_pad_ms,
        }


@dataclass(frozen=True)
class DecodeConfig:
    beam_size: int = 5
    # No prompt by default: a Simplified-Chinese prompt ("以下是普通话…") did not lower CER and
    # Whisper base spliced it into its output on hard audio (bench/RESULTS_asr.md).
    # Simplified output comes from OpenCC t2s instead.
    initial_prompt: str | None = None
    condition_on_previous_text: bool = False  # avoids carrying a loop from one window to the next
    # Beam search only (no sampling fallback): the same audio always gives the same transcript,
    # which QA re-scoring needs.  Whisper's fallback (0.0, 0.2, …, 1.0) samples at T > 0, and
    # CTranslate2 samples in its worker thread where ctranslate2.set_random_seed() does not
    # reach, so its output changes run to run; on the benchmark it did not lower CER per clip.
    temperature: tuple[float, ...] = (0.0,)


def to_float_mono(samples: np.ndarray) -> np.ndarray:
    """float32 mono in [-1, 1] from float or int16 PCM; refuses multi-channel, NaN and Inf."""
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise InputError(f"ASR expects mono 1-D samples, got shape {arr.shape}")
    if arr.dtype == np.int16:
        out = arr.astype(np.float32) / 32768.0
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32, copy=False)
    else:
        raise InputError(f"ASR expects float or int16 samples, got dtype {arr.dtype}")
    if out.size and not np.isfinite(out).all():
        raise InvalidAudioContentError("ASR input contains NaN or Inf samples")
    return out


def resample_to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate <= 0:
        raise InputError(f"sample_rate must be positive, got {sample_rate}")
    if sample_rate == WHISPER_RATE or audio.size == 0:
        return audio
    return soxr.resample(audio, sample_rate, WHISPER_RATE, quality="HQ").astype(np.float32, copy=False)


def check_model_dir(model_dir: Path) -> Path:
    """Return ``model_dir`` if it holds a CTranslate2 Whisper model, else raise ModelNotAvailableError."""
    model_dir = Path(model_dir)
    missing = [name for name in REQUIRED_MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelNotAvailableError(
            f"ASR model not found in {model_dir} (missing {', '.join(missing)}); assemble it with "
            f"`python -m pipelines.asr.model_assembly --dest {model_dir}` "
            f"(needs `pip install 'nuqi[asr]'`)",
            model_dir=str(model_dir),
            missing=missing,
        )
    return model_dir


@dataclass
class WhisperEngine:
    """faster-whisper (CTranslate2) Mandarin recogniser; create with :meth:`load`."""

    model: Any
    model_dir: Path
    language: str = "zh"
    vad: VadConfig = field(default_factory=VadConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    filters: FilterConfig = DEFAULT_FILTER
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, model_dir: Path | None = None, cpu_threads: int = 1, compute_type: str = "int8",
             language: str = "zh", vad: VadConfig | None = None, decode: DecodeConfig | None = None,
             filters: FilterConfig | None = None) -> WhisperEngine:
        """Load the model from ``model_dir`` (see :func:`pipelines.asr.model_assembly.default_model_dir`) on the CPU."""
        model_dir = check_model_dir(Path(model_dir))
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.vad import get_vad_model
        except ImportError as exc:
            raise ModelNotAvailableError(
                "ASR needs the faster-whisper package: `pip install 'nuqi[asr]'`"
            ) from exc
        t0 = time.perf_counter()
        try:
            model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type,
                                 cpu_threads=cpu_threads, num_workers=1, local_files_only=True)
            get_vad_model()  # load the bundled Silero ONNX now, not on the first request
        except Exception as exc:  # ctranslate2 raises RuntimeError/ValueError on bad files
            raise ModelNotAvailableError(f"failed to load the ASR model from {model_dir}: {exc}",
                                         model_dir=str(model_dir)) from exc
        logger.info("loaded Whisper model from %s (%s, %d thread(s)) in %.1f s",
                    model_dir, compute_type, cpu_threads, time.perf_counter() - t0)
        return cls(model=model, model_dir=model_dir, language=language,
                   vad=vad or VadConfig(), decode=decode or DecodeConfig(),
                   filters=filters or DEFAULT_FILTER)

    def speech_regions(self, audio16k: np.ndarray) -> list[tuple[float, float]]:
        """Silero speech regions (seconds) of 16 kHz audio."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        if audio16k.size == 0:
            return []
        chunks = get_speech_timestamps(audio16k, VadOptions(**self.vad.options()))
        return [(c["start"] / WHISPER_RATE, c["end"] / WHISPER_RATE) for c in chunks]

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> list[Segment]:
        audio = resample_to_16k(to_float_mono(samples), sample_rate)
        if not self.speech_regions(audio):
            return []
        with self._lock:  # one decode at a time per loaded model
            raw, _info = self.model.transcribe(
                audio,
                language=self.language,
                task="transcribe",
                beam_size=self.decode.beam_size,
                temperature=list(self.decode.temperature),
                initial_prompt=self.decode.initial_prompt,
                condition_on_previous_text=self.decode.condition_on_previous_text,
                compression_ratio_threshold=self.filters.max_compression_ratio,
                vad_filter=True,
                vad_parameters=self.vad.options(),
            )
            decoded = list(raw)
        segments: list[Segment] = []
        for seg in decoded:
            text = filter_segment(seg.text, seg.avg_logprob, seg.no_speech_prob, seg.compression_ratio,
                                  self.filters, prompt=self.decode.initial_prompt, language=self.language)
            if text:
                segments.append(Segment(round(float(seg.start), 3), round(float(seg.end), 3), text,
                                        round(float(seg.avg_logprob), 3)))
        keep = collapse_repeated_segments([s.text for s in segments])
        return [s for s, k in zip(segments, keep, strict=True) if k]
