"""Built-in Mandarin speech recognition (faster-whisper base): QA batch scoring, ``nuqi transcribe``, live ASR.

``WhisperEngine.load(model_dir)`` → ``engine.transcribe(samples, sample_rate)`` →
``list[Segment]`` (Simplified Chinese, silence never transcribed, hallucinations
filtered).  The model dir is assembled from PyPI parts by
:func:`pipelines.asr.model_assembly.assemble_model`; nothing is downloaded at run time.

Live: :class:`~pipelines.asr.segmenter.UtteranceSegmenter` (a leg's 1 s windows → utterances when speech
ends) → :class:`~pipelines.asr.worker.AsrWorkerPool` (recogniser processes) → ``UtteranceTranscript``;
:mod:`pipelines.asr.admission` decides which calls get it (``NUQI_LIVE_ASR``, capacity).

Names are resolved lazily so that ``python -m pipelines.asr.model_assembly`` runs
without importing the engine first.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AsrEngine": "pipelines.asr.engine",
    "Segment": "pipelines.asr.engine",
    "WhisperEngine": "pipelines.asr.engine",
    "assemble_model": "pipelines.asr.model_assembly",
    "default_model_dir": "pipelines.asr.model_assembly",
    "transcribe_file": "pipelines.asr.transcribe",
    "Utterance": "pipelines.asr.segmenter",
    "UtteranceSegmenter": "pipelines.asr.segmenter",
    "AsrWorkerPool": "pipelines.asr.worker",
    "UtteranceTranscript": "pipelines.asr.worker",
    "AsrAdmission": "pipelines.asr.admission",
    "wants_asr": "pipelines.asr.admission",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipelines.asr' has no attribute {name!r}")
