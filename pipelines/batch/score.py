"""QA batch scoring: one recorded call → one record, and the batch runner over many calls.

One call (:meth:`Scorer.score`): transcript turns from a sidecar (same stem, ``.json`` turns,
``.jsonl`` or ``.srt``) or, when asked and available, from the built-in ASR run on each role's
channel separately → :func:`pipelines.analyze.process_file` (the live pipeline, 1 s chunks) →
conversation metrics (:mod:`pipelines.batch.metrics`) → a :class:`CallRecord` (one row of
``summary.csv``), the full timeline JSON and the HTML page.  A bad file gives a record with
``status="error"`` and the reason; it never stops the batch.

The batch (:func:`run_batch`) writes ``OUT/calls/<call>.html``, ``OUT/calls/<call>.json``
(written last and atomically: its presence marks the call done, so an interrupted batch resumes
where it stopped unless ``force``), ``OUT/summary.csv`` and ``OUT/index.html``.  Work runs
in-process (``workers=1``), in a process pool whose workers load the models once each
(``workers>1``), or on a Ray cluster (``ray_address``; :mod:`pipelines.batch.ray_runner`).
Only the driver writes files; workers return text.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pipelines.errors import InputError, ModelNotAvailableError, NuqiError
from pipelines.settings import Settings, get_settings

logger = logging.getLogger("nuqi.batch.score")

SIDECAR_SUFFIXES = (".json", ".jsonl", ".srt")
ASR_MODES = ("auto", "on", "off")
PAYLOAD_VERSION = 1

# summary.csv columns: the list, then three extras (call page name, transcript source, reason)
SUMMARY_COLUMNS = (
    "file", "duration_s", "peak_stage", "peak_stage_name", "time_to_first_escalation_s", "max_anger_customer",
    "anger_seconds_customer", "complaint_type", "agent_max_anger", "talk_ratio", "silence_pct", "overtalk_pct",
    "speech_rate_customer", "speech_rate_agent", "alert_count", "status", "error",
    "call", "transcript_source", "complaint_reason",
)


@dataclass
class CallRecord:
    """One row of ``summary.csv``."""

    file: str
    duration_s: float | None = None
    peak_stage: int | None = None
    peak_stage_name: str | None = None
    time_to_first_escalation_s: float | None = None
    max_anger_customer: float | None = None
    anger_seconds_customer: float | None = None
    complaint_type: str | None = None
    agent_max_anger: float | None = None
    talk_ratio: float | None = None
    silence_pct: float | None = None
    overtalk_pct: float | None = None
    speech_rate_customer: float | None = None
    speech_rate_agent: float | None = None
    alert_count: int | None = None
    status: str = "ok"  # "ok" | "error"
    error: str = ""
    call: str = ""
    transcript_source: str = ""  # "sidecar:<name>" | "asr" | "none"
    complaint_reason: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SUMMARY_COLUMNS}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "CallRecord":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def anger_key(self) -> tuple[float, float, float]:
        """Sort key, larger = angrier: peak stage, then max customer anger, then anger seconds."""
        return (float(self.peak_stage or 0), float(self.max_anger_customer or 0.0),
                float(self.anger_seconds_customer or 0.0))


@dataclass(frozen=True)
class CallJob:
    """One file to score.  ``path`` is where the worker reads it; ``display`` is what reports show."""

    path: str
    name: str  # unique call name in the batch: OUT/calls/<name>.json
    sidecar: str | None = None
    size: int = 0
    display: str = ""

    @property
    def file(self) -> str:
        return self.display or self.path


@dataclass(frozen=True)
class ScoreOptions:
    channel_map: str | None = None
    asr: str = "auto"  # auto | on | off (auto: ASR for calls without a sidecar when the model is assembled)
    asr_model_dir: str | None = None
    html: bool = True


@dataclass
class CallOutput:
    """What a worker returns for one call; the driver writes the files."""

    record: CallRecord
    json_text: str | None = None  # None when the call failed
    html_text: str | None = None
    seconds: float = 0.0  # wall time of the scoring
    cpu_seconds: float = 0.0  # CPU time of the scoring process meanwhile (all its threads)


@dataclass
class BatchProgress:
    total: int  # calls in the batch
    done: int = 0  # scored now or earlier (skipped), including errors
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    audio_s: float = 0.0  # audio seconds scored in this run
    busy_s: float = 0.0  # sum of the workers' wall time spent scoring (one call at a time per worker)
    cpu_s: float = 0.0  # sum of the workers' CPU time spent scoring: audio_s / cpu_s = × real time per core
    elapsed_s: float = 0.0
    eta_s: float | None = None
    last: str | None = None  # file of the last finished call

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["elapsed_s"] = round(self.elapsed_s, 2)
        d["audio_s"] = round(self.audio_s, 2)
        d["busy_s"] = round(self.busy_s, 2)
        d["cpu_s"] = round(self.cpu_s, 2)
        d["x_realtime_per_worker"] = round(self.audio_s / self.busy_s, 1) if self.busy_s > 0 else None
        d["x_realtime_per_cpu_s"] = round(self.audio_s / self.cpu_s, 1) if self.cpu_s > 0 else None
        d["eta_s"] = None if self.eta_s is None else round(self.eta_s, 1)
        d["x_realtime"] = round(self.audio_s / self.elapsed_s, 1) if self.elapsed_s > 0 else None
        return d


@dataclass
class BatchResult:
    out_dir: Path
    records: list[CallRecord]
    progress: BatchProgress
    summary_csv: Path
    index_html: Path
    notes: list[str] = field(default_factory=list)


# --- inputs --------------------------------------------------------------------------------------

def find_sidecar(path: Path) -> Path | None:
    """The transcript next to an audio file: same stem, ``.json``, ``.jsonl`` or ``.srt``."""
    for suffix in SIDECAR_SUFFIXES:
        cand = path.with_suffix(suffix)
        if cand.is_file():
            return cand
    return None


_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def _safe_name(stem: str) -> str:
    name = _UNSAFE.sub("_", stem).strip("._") or "call"
    return name[:120]


def collect_jobs(paths: Iterable[str | Path]) -> list[CallJob]:
    """Files and folders (recursively) → one job per audio file, with unique, stable call names.

    A call's name is its file stem; stems that occur more than once in the batch get a short hash
    of the resolved path appended.  Paths that do not exist are kept (they become error rows).
    """
    from pipelines.audio.files import iter_audio_paths

    files: list[Path] = []
    seen: set[str] = set()
    for p in iter_audio_paths([Path(x) for x in paths]):
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            files.append(p)
    stems = Counter(_safe_name(p.stem) for p in files)
    jobs = []
    for p in files:
        name = _safe_name(p.stem)
        if stems[name] > 1:
            name = f"{name}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"
        side = find_sidecar(p) if p.suffix.lower() not in SIDECAR_SUFFIXES else None
        size = p.stat().st_size if p.is_file() else 0
        jobs.append(CallJob(path=str(p), name=name, sidecar=str(side) if side else None, size=size,
                            display=str(p)))
    return jobs


def asr_model_dir(settings: Settings) -> Path:
    """Where the assembled ASR model lives (``settings.asr_model_dir`` or ``state_dir/models/whisper-base``)."""
    return Path(settings.asr_model_dir) if settings.asr_model_dir else Path(settings.state_dir) / "models" / "whisper-base"


def asr_available(model_dir: Path) -> str | None:
    """``None`` when the ASR model can be loaded from ``model_dir``, else the reason it cannot."""
    import importlib.util

    from pipelines.asr.engine import check_model_dir

    if importlib.util.find_spec("faster_whisper") is None:
        return "the faster-whisper package is not installed (pip install 'nuqi[asr]')"
    try:
        check_model_dir(model_dir)
    except ModelNotAvailableError as exc:
        return exc.message
    return None


# --- one call ------------------------------------------------------------------------------------

def _turns_from_asr(path: Path, channel_map: str | None, engine: Any) -> list[Any]:
    """Transcribe each role's channel separately and tag its segments with the role."""
    from pipelines.analyze import Turn, default_roles
    from pipelines.audio.decode import ROLES
    from pipelines.audio.files import read_audio_file

    frames, rate = read_audio_file(path)
    roles = default_roles(frames.shape[1], channel_map)
    turns = []
    for idx, role in enumerate(roles):
        if role not in ROLES:
            continue
        for seg in engine.transcribe(frames[:, idx].copy(), rate):
            turns.append(Turn(role=role, text=seg.text, start=float(seg.start), end=float(seg.end)))
    return sorted(turns, key=lambda t: t.end)


def build_record(job: CallJob, analysis: Any, metrics: Any, source: str) -> CallRecord:
    s = analysis.summary
    complaint = s.get("complaint") or {}
    return CallRecord(
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

    def __init__(self, models: Any, options: ScoreOptions) -> None:
        if options.asr not in ASR_MODES:
            raise InputError(f"asr must be one of {', '.join(ASR_MODES)}, got {options.asr!r}", field="asr")
        self.models = models
        self.options = options
        self._asr: Any = None
        self._asr_error: str | None = None

    @classmethod
    def load(cls, settings: Settings, options: ScoreOptions) -> "Scorer":
        """Load the model registry; refuse to score with missing components (results would be meaningless)."""
        from pipelines.registry import ModelRegistry

        models = ModelRegistry.load(settings)
        check_models(models)
        return cls(models, options)

    def _asr_engine(self) -> Any:
        """The ASR engine (loaded on first use), or None when ``auto`` and it is not available."""
        if self._asr is not None or (self._asr_error is not None and self.options.asr == "auto"):
            return self._asr
        from pipelines.asr.engine import WhisperEngine

        model_dir = Path(self.options.asr_model_dir) if self.options.asr_model_dir else None
        reason = asr_available(model_dir) if model_dir is not None else None
        try:
            if reason is not None:
                raise ModelNotAvailableError(reason)
            self._asr = WhisperEngine.load(model_dir, cpu_threads=1)
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
            out = CallOutput(CallRecord(file=job.file, call=job.name, status="error",
                                        error=_strip_path(exc.message, job)))
        except Exception as exc:  # noqa: BLE001 - any undecodable input must not stop the batch
            logger.warning("scoring %s failed: %s: %s", job.file, type(exc).__name__, exc)
            out = CallOutput(CallRecord(file=job.file, call=job.name, status="error",
                                        error=f"{type(exc).__name__}: {exc}"))
        out.seconds = time.perf_counter() - t0
        out.cpu_seconds = time.process_time() - c0
        return out

    def _score(self, job: CallJob) -> CallOutput:
        from pipelines.analyze import load_turns, process_file
        from pipelines.batch.metrics import call_metrics

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
        analysis = process_file(path, self.models, channel_map=self.options.channel_map, turns=turns)
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
            "summary": analysis.summary,
            "timeline": analysis.timeline,
            "utterances": analysis.utterances,
            "scored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "timing_s": {"asr": round(t_asr, 3), "analysis": round(time.perf_counter() - t0 - t_asr, 3)},
        }
        html = None
        if self.options.html:
            from pipelines.batch.report import render_call_html

            html = render_call_html(payload)
        return CallOutput(record, json.dumps(payload, ensure_ascii=False, allow_nan=False, default=_json_default), html)


def _strip_path(message: str, job: CallJob) -> str:
    """Error messages name the file; the row already does (and a Ray worker's temp path means nothing)."""
    for prefix in (f"{job.path}: ", f"{Path(job.path).name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message.replace(job.path, Path(job.file).name)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def check_models(models: Any) -> None:
    failed = {k: v.error for k, v in models.status.items() if not v.loaded}
    if failed:
        raise ModelNotAvailableError("batch scoring needs every model; could not load: " +
                                     "; ".join(f"{k}: {v}" for k, v in failed.items()), failed=list(failed))


# --- process-pool workers (models load once per worker) ------------------------------------------

_WORKER: Scorer | None = None
_WORKER_ERROR: ModelNotAvailableError | None = None


def _limit_threads() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _worker_init(settings: Settings, options: ScoreOptions, log_level: int) -> None:
    global _WORKER, _WORKER_ERROR
    _limit_threads()
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setLevel(log_level)
    try:
        _WORKER = Scorer.load(settings, options)
    except ModelNotAvailableError as exc:
        _WORKER_ERROR = exc
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _worker_score(job: CallJob) -> CallOutput:
    if _WORKER is None:
        raise _WORKER_ERROR or ModelNotAvailableError("batch worker has no models")
    return _WORKER.score(job)


def _run_pool(jobs: list[CallJob], workers: int, settings: Settings, options: ScoreOptions) -> Iterator[tuple[CallJob, CallOutput]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the caller may be a multi-threaded service (fork would copy held locks)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(settings, options, logging.getLogger("nuqi").getEffectiveLevel())) as ex:
        futures = {ex.submit(_worker_score, job): job for job in jobs}
        try:
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    yield job, fut.result()
                except BrokenProcessPool as exc:
                    yield job, CallOutput(CallRecord(file=job.file, call=job.name, status="error",
                                                     error=f"worker process died ({exc}); rerun to resume"))
        finally:
            for fut in futures:
                fut.cancel()


def _run_inline(jobs: list[CallJob], scorer: Scorer) -> Iterator[tuple[CallJob, CallOutput]]:
    for job in jobs:
        yield job, scorer.score(job)


# --- outputs -------------------------------------------------------------------------------------

def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def call_paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / "calls" / f"{name}.json", out_dir / "calls" / f"{name}.html"


def write_call(out_dir: Path, name: str, out: CallOutput) -> None:
    """HTML first, JSON last: the JSON file marks the call as done for resume."""
    json_path, html_path = call_paths(out_dir, name)
    if out.html_text is not None:
        _atomic_write(html_path, out.html_text)
    if out.json_text is not None:
        _atomic_write(json_path, out.json_text)


def load_done(out_dir: Path, job: CallJob) -> CallRecord | None:
    """The record of a call scored by an earlier run, or None if it has to be (re)scored."""
    json_path, _ = call_paths(out_dir, job.name)
    if not json_path.is_file():
        return None
    try:
        payload = json.loads(json_path.read_text(encoding="utf-8"))
        return CallRecord.from_row(payload["record"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s is unreadable (%s); scoring %s again", json_path, exc, job.file)
        return None


def write_reports(out_dir: Path, records: list[CallRecord]) -> tuple[Path, Path]:
    from pipelines.batch.report import render_index_html, write_summary_csv

    csv_path = out_dir / "summary.csv"
    write_summary_csv(records, csv_path)
    index = out_dir / "index.html"
    _atomic_write(index, render_index_html(records))
    return csv_path, index


# --- the batch -----------------------------------------------------------------------------------

def run_batch(paths: Iterable[str | Path], out_dir: str | Path, *, settings: Settings | None = None,
              channel_map: str | None = None, workers: int = 1, force: bool = False, asr: str = "auto",
              ray_address: str | None = None, html: bool = True, models: Any = None, progress: bool = False,
              on_update: Callable[[BatchProgress, list[CallRecord]], None] | None = None) -> BatchResult:
    """Score every audio file under ``paths`` into ``out_dir`` (see the module docstring).

    ``models``: an already loaded :class:`~pipelines.registry.ModelRegistry` used in-process when
    ``workers == 1`` (the service passes its own); otherwise each worker loads its own.
    ``on_update(progress, records)`` is called after every finished call (records in input order).
    """
    settings = settings or get_settings()
    if asr not in ASR_MODES:
        raise InputError(f"asr must be one of {', '.join(ASR_MODES)}, got {asr!r}", field="asr")
    if channel_map:
        from pipelines.audio.decode import parse_channel_map

        parse_channel_map(channel_map)  # a bad map is the whole batch's error, before any work
    out_dir = Path(out_dir)
    (out_dir / "calls").mkdir(parents=True, exist_ok=True)
    ray_address = ray_address or settings.ray_address
    notes: list[str] = []
    model_dir = asr_model_dir(settings)
    jobs = collect_jobs(paths)
    if asr == "on":
        reason = asr_available(model_dir)
        if reason is not None:
            raise ModelNotAvailableError(f"--asr on: {reason}", model_dir=str(model_dir))
    elif asr == "auto" and any(j.sidecar is None for j in jobs):
        reason = asr_available(model_dir)
        if reason is not None:
            asr = "off"
            notes.append(f"ASR off (model not available: {reason}); calls without a sidecar are scored on audio only")
    options = ScoreOptions(channel_map=channel_map, asr=asr, asr_model_dir=str(model_dir), html=html)

    records: dict[str, CallRecord] = {}
    todo: list[CallJob] = []
    prog = BatchProgress(total=len(jobs))
    for job in jobs:
        rec = None if force else load_done(out_dir, job)
        if rec is not None:
            records[job.name] = replace(rec, file=job.file)
            prog.skipped += 1
            prog.done += 1
        else:
            todo.append(job)
    if prog.skipped:
        notes.append(f"{prog.skipped} call(s) already scored in {out_dir / 'calls'} were skipped (use --force to redo)")
    ordered = lambda: [records[j.name] for j in jobs if j.name in records]  # noqa: E731

    total_bytes = sum(j.size for j in todo) or 1
    done_bytes = 0
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="scoring", dynamic_ncols=True,
                   file=sys.stderr, smoothing=0.1)
    t0 = time.perf_counter()
    try:
        for job, out in _execute(todo, workers=workers, settings=settings, options=options,
                                 ray_address=ray_address, models=models):
            write_call(out_dir, job.name, out)
            records[job.name] = out.record
            prog.done += 1
            prog.scored += 1
            if not out.record.ok:
                prog.failed += 1
                logger.warning("%s: %s", job.file, out.record.error)
            prog.audio_s += float(out.record.duration_s or 0.0)
            prog.busy_s += out.seconds
            prog.cpu_s += out.cpu_seconds
            prog.elapsed_s = time.perf_counter() - t0
            done_bytes += job.size
            prog.eta_s = prog.elapsed_s * (total_bytes - done_bytes) / done_bytes if done_bytes else None
            prog.last = job.file
            if bar is not None:
                bar.update(job.size)
                bar.set_postfix_str(f"calls {prog.done}/{prog.total} err {prog.failed} "
                                    f"{prog.audio_s / max(prog.elapsed_s, 1e-9):.0f}x rt", refresh=False)
            if on_update is not None:
                on_update(prog, ordered())
    finally:
        if bar is not None:
            bar.close()
        prog.elapsed_s = time.perf_counter() - t0
        prog.eta_s = 0.0 if prog.done == prog.total else prog.eta_s
        final = ordered()
        csv_path, index = write_reports(out_dir, final)
    return BatchResult(out_dir=out_dir, records=final, progress=prog, summary_csv=csv_path, index_html=index,
                       notes=notes)


def _execute(jobs: list[CallJob], *, workers: int, settings: Settings, options: ScoreOptions,
             ray_address: str | None, models: Any) -> Iterator[tuple[CallJob, CallOutput]]:
    if not jobs:
        return iter(())
    workers = max(1, int(workers))
    if ray_address:
        from pipelines.batch.ray_runner import run_on_ray

        return run_on_ray(jobs, address=ray_address, workers=workers, settings=settings, options=options)
    if workers > 1 and len(jobs) > 1:
        return _run_pool(jobs, min(workers, len(jobs)), settings, options)
    if models is not None:
        check_models(models)
        scorer = Scorer(models, options)
    else:
        scorer = Scorer.load(settings, options)
    return _run_inline(jobs, scorer)
