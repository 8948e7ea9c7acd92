"""QA batch scoring: one recorded call → one record, and the batch runner over many calls.

One call (:meth:`pipelines.batch.scorer.Scorer.score`): transcript turns from a sidecar (same stem, ``.json`` turns,
``.jsonl`` or ``.srt``) or, when asked and available, from the built-in ASR run on each role's
channel separately → :func:`pipelines.analyze.process_file` (the live pipeline, 1 s chunks) →
conversation metrics (:mod:`pipelines.batch.metrics`) → a :class:`ScoredCall` (one row of
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
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from pipelines.asr.model_assembly import default_model_dir
from pipelines.audio.decode import parse_channel_map
from pipelines.audio.files import iter_audio_paths
from pipelines.batch.ray_runner import run_on_ray
from pipelines.batch.records import ASR_MODES, BatchProgress, BatchResult, CallJob, CallOutput, ScoredCall, ScoreOptions
from pipelines.batch.report import render_index_html, write_summary_csv
from pipelines.batch.scorer import Scorer, asr_available, check_models
from pipelines.errors import InputError, ModelNotAvailableError
from pipelines.registry import ModelRegistry
from pipelines.settings import Settings

logger = logging.getLogger("nuqi.batch.score")

SIDECAR_SUFFIXES = (".json", ".jsonl", ".srt")

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
    """Where the assembled ASR model lives (``NUQI_ASR_MODEL_DIR`` or ``state_dir/models/whisper-base``)."""
    return default_model_dir(settings)


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


def _run_pool(jobs: list[CallJob], workers: int, settings: Settings, options: ScoreOptions
              ) -> Iterator[tuple[CallJob, CallOutput]]:
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
                    yield job, CallOutput(ScoredCall(file=job.file, call=job.name, status="error",
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


def load_done(out_dir: Path, job: CallJob) -> ScoredCall | None:
    """The record of a call scored by an earlier run, or None if it has to be (re)scored."""
    json_path, _ = call_paths(out_dir, job.name)
    if not json_path.is_file():
        return None
    try:
        payload = json.loads(json_path.read_text(encoding="utf-8"))
        return ScoredCall.from_row(payload["record"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s is unreadable (%s); scoring %s again", json_path, exc, job.file)
        return None


def write_reports(out_dir: Path, records: list[ScoredCall]) -> tuple[Path, Path]:
    csv_path = out_dir / "summary.csv"
    write_summary_csv(records, csv_path)
    index = out_dir / "index.html"
    _atomic_write(index, render_index_html(records))
    return csv_path, index


# --- the batch -----------------------------------------------------------------------------------

def run_batch(paths: Iterable[str | Path], out_dir: str | Path, *, settings: Settings | None = None,
              channel_map: str | None = None, workers: int = 1, force: bool = False, asr: str = "auto",
              ray_address: str | None = None, html: bool = True, models: ModelRegistry | None = None,
              progress: bool = False, on_update: Callable[[BatchProgress, list[ScoredCall]], None] | None = None
              ) -> BatchResult:
    """Score every audio file under ``paths`` into ``out_dir`` (see the module docstring).

    ``models``: an already loaded :class:`~pipelines.registry.ModelRegistry` used in-process when
    ``workers == 1`` (the service passes its own); otherwise each worker loads its own.
    ``on_update(progress, records)`` is called after every finished call (records in input order).
    """
    if settings is None:
        if models is None:
            raise InputError("run_batch needs the settings or a loaded model registry (which carries them)")
        settings = models.settings
    if asr not in ASR_MODES:
        raise InputError(f"asr must be one of {', '.join(ASR_MODES)}, got {asr!r}", field="asr")
    if channel_map:
        parse_channel_map(channel_map)  # a bad map is the whole batch's error, before any work
    out_dir = Path(out_dir)
    (out_dir / "calls").mkdir(parents=True, exist_ok=True)
    ray_address = ray_address or settings.batch.ray_address
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

    records: dict[str, ScoredCall] = {}
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
             ray_address: str | None, models: ModelRegistry | None) -> Iterator[tuple[CallJob, CallOutput]]:
    if not jobs:
        return iter(())
    workers = max(1, int(workers))
    if ray_address:
        return run_on_ray(jobs, address=ray_address, workers=workers, settings=settings, options=options)
    if workers > 1 and len(jobs) > 1:
        return _run_pool(jobs, min(workers, len(jobs)), settings, options)
    if models is not None:
        check_models(models)
        scorer = Scorer(models, options)
    else:
        scorer = Scorer.load(settings, options)
    return _run_inline(jobs, scorer)
