"""Scoring one recorded call (:class:`Scorer`): transcript turns from a sidecar or the built-in ASR →
:func:`pipelines.analyze.process_file` (the live pipeline) → conversation metrics → a
:class:`~pipelines.batch.records.ScoredCall`, the call's JSON and its HTML page.  A bad file gives a record
with ``status="error"``; it never stops the batch."""
from __future__ import annotations

import importlib.util
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.analyze import default_roles, process_file
from pipelines.asr.engine import WhisperEngine, check_model_dir, decode_config
from pipelines.audio.decode import ROLES
from pipelines.audio.files import read_audio_file
from pipelines.batch.metrics import call_metrics
from pipelines.batch.records import ASR_MODES, CallJob, CallOutput, ScoredCall, ScoreOptions
from pipelines.batch.report import render_call_html
from pipelines.errors import InputError, ModelNotAvailableError, NuqiError
from pipelines.pii import redact_obj, redact_utterances
from pipelines.registry import ModelRegistry
from pipelines.settings import Settings
from pipelines.transcripts import Turn, load_turns

logger = logging.getLogger("nuqi.batch.score")

PAYLOAD_VERSION = 1


def asr_available(model_dir: Path) -> str | None:
    """``None`` when the ASR model can be loaded from ``model_dir``, else the reason it cannot."""
    if importlib.util.find_spec("faster_whisper") is None:
        return "the faster-whisper package is not installed (pip install 'nuqi[asr]')"
    try:
        check_model_dir(model_dir)
    except ModelNotAvailableError as exc:
        return exc.message
    return None


# --- one call ------------------------------------------------------------------------------------

def _turns_from_asr(path: Path, channel_map: str | None, engine: Any) -> list[Turn]:
    """Transcribe each role's channel separately and tag its segments with the role."""
    frames, rate = read_audio_file(path)
    roles = default_roles(frames.shape[1], channel_map)
    turns = []
    for idx, role in enumerate(roles):
        if role not in ROLES:
            continue
        for seg in engine.transcribe(frames[:, idx].copy(), rate):
            turns.append(Turn(role=role, text=seg.text, start=float(seg.start), end=float(seg.end)))
    return sorted(turns, key=lambda t: t.end)


def build_record(job: CallJob, analysis: Any, metrics: Any, source: str) -> ScoredCall:
    s = analysis.summary
    complaint = s.get("complaint") or {}
    return ScoredCall(
        file=job.file, call=job.name, transcript_source=source,
        duration_s=round(float(analysis.duration_s), 3),
        peak_stage=s.get("peak_stage"), peak_stage_name=s.get("peak_stage_name"),
        time_to_first_escalation_s=s.get("time_to_first_escalation_s"),
        max_anger_customer=s.get("max_anger_customer"), anger_seconds_customer=s.get("anger_seconds_customer"),
        complaint_type=complaint.get("type"), complaint_reason=complaint.get("reason"),
        agent_max_anger=s.get("agent_max_anger"),
        talk_ratio=metrics.talk_ratio, silence_pct=metrics.silence_pct, overtalk_pct=metrics.overtalk_pct,
        speech_rate_customer=metrics.speech_rate.get("customer"), speech_rate_agent=metrics.speech_rate.get("agent"),
        alert_count=s.get("alert_count"),
    )


class Scorer:
    """Scores calls with models loaded once (per process, per Ray actor, or the service's own)."""

    def __init__(self, models: ModelRegistry, options: ScoreOptions) -> None:
        if options.asr not in ASR_MODES:
            raise InputError(f"asr must be one of {', '.join(ASR_MODES)}, got {options.asr!r}", field="asr")
        self.models = models
        self.options = options
        self._asr: Any = None
        self._asr_error: str | None = None

    @classmethod
    def load(cls, settings: Settings, options: ScoreOptions) -> "Scorer":
        """Load the model registry; refuse to score with missing components (results would be meaningless)."""
        models = ModelRegistry.load(settings)
        check_models(models)
        return cls(models, options)

    def _asr_engine(self) -> Any:
        """The ASR engine (loaded on first use), or None when ``auto`` and it is not available."""
        if self._asr is not None or (self._asr_error is not None and self.options.asr == "auto"):
            return self._asr
        model_dir = Path(self.options.asr_model_dir) if self.options.asr_model_dir else None
        reason = asr_available(model_dir) if model_dir is not None else None
        try:
            if reason is not None:
                raise ModelNotAvailableError(reason)
            # the decoding options of live ASR and `nuqi transcribe` (NUQI_ASR_BEAM_SIZE, ...: settings.asr)
            self._asr = WhisperEngine.load(model_dir, cpu_threads=1, decode=decode_config(self.models.settings))
        except ModelNotAvailableError as exc:
            if self.options.asr == "on":
                raise
            self._asr_error = exc.message
            logger.warning("ASR not available, calls without a transcript sidecar are scored on audio only: %s",
                           exc.message)
        return self._asr

    def score(self, job: CallJob) -> CallOutput:
        """Score one call; every failure becomes an error record (the batch goes on)."""
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = self._score(job)
        except ModelNotAvailableError:
            raise  # a missing model is the batch's problem, not this file's
        except NuqiError as exc:
            out = CallOutput(ScoredCall(file=job.file, call=job.name, status="error",
                                        error=_strip_path(exc.message, job)))
        except Exception as exc:  # noqa: BLE001 - any undecodable input must not stop the batch
            logger.warning("scoring %s failed: %s: %s", job.file, type(exc).__name__, exc)
            out = CallOutput(ScoredCall(file=job.file, call=job.name, status="error",
                                        error=f"{type(exc).__name__}: {exc}"))
        out.seconds = time.perf_counter() - t0
        out.cpu_seconds = time.process_time() - c0
        return out

    def _score(self, job: CallJob) -> CallOutput:
        path = Path(job.path)
        t0 = time.perf_counter()
        turns, source = None, "none"
        if job.sidecar:
            try:
                turns = load_turns(Path(job.sidecar))
            except (ValueError, UnicodeDecodeError) as exc:
                raise InputError(f"transcript sidecar {Path(job.sidecar).name}: {exc}") from None
            source = f"sidecar:{Path(job.sidecar).name}"
        elif self.options.asr != "off":
            engine = self._asr_engine()
            if engine is not None:
                turns, source = _turns_from_asr(path, self.options.channel_map, engine), "asr"
        t_asr = time.perf_counter() - t0
        analysis = process_file(path, self.models, channel_map=self.options.channel_map, turns=turns,
                                asr_turns=source == "asr")
        metrics = call_metrics(analysis.timeline, list(analysis.channels))
        record = build_record(job, analysis, metrics, source)
        payload = {
            "nuqi_batch": PAYLOAD_VERSION,
            "call": job.name,
            "file": job.file,
            "record": record.to_row(),
            "metrics": metrics.to_dict(),
            "transcript_source": source,
            "duration_s": round(float(analysis.duration_s), 3),
            "sample_rate": analysis.sample_rate,
            "input_rate": analysis.input_rate,
            "channels": analysis.channels,
            "channel_map": self.options.channel_map,
            "summary": redact_obj(analysis.summary),
            "timeline": redact_obj(analysis.timeline),  # QA reports carry no personal data (sidecars may)
            "utterances": redact_utterances(analysis.utterances),
            "scored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "timing_s": {"asr": round(t_asr, 3), "analysis": round(time.perf_counter() - t0 - t_asr, 3)},
        }
        html = None
        if self.options.html:
            html = render_call_html(payload)
        return CallOutput(record, json.dumps(payload, ensure_ascii=False, allow_nan=False, default=_json_default), html)


def _strip_path(message: str, job: CallJob) -> str:
    """Error messages name the file; the row already does (and a Ray worker's temp path means nothing)."""
    for prefix in (f"{job.path}: ", f"{Path(job.path).name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message.replace(job.path, Path(job.file).name)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def check_models(models: ModelRegistry) -> None:
    failed = {k: v.error for k, v in models.status.items() if not v.loaded}
    if failed:
        raise ModelNotAvailableError("batch scoring needs every model; could not load: " +
                                     "; ".join(f"{k}: {v}" for k, v in failed.items()), failed=list(failed))
