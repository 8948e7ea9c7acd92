"""QA batch jobs of the service: create, run in the background, persist, report progress.

A job is a folder ``settings.state_dir/batch/<id>/`` holding ``job.json`` (status, options,
progress, result rows; rewritten atomically), ``inputs/`` (uploaded files) and ``out/`` (the
same outputs as ``nuqi score``: ``summary.csv``, ``index.html``, ``calls/``).  Jobs run one at a
time on a daemon thread (never on the event loop); the scoring itself runs in that thread
with the service's loaded models (``batch_workers = 1``), in a process pool
(``batch_workers > 1``) or on Ray (``ray_address``).

The process running a job holds an exclusive ``flock`` on ``<id>/.lock``.  A job found
``queued``/``running`` with nobody holding its lock was cut off by a restart: the first
batch request after start-up claims and resumes it (calls already scored are skipped), so
jobs survive restarts and several service workers never run the same job twice.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from app.errors import ForbiddenError
from pipelines.batch.records import BatchProgress, ScoredCall
from pipelines.batch.score import collect_jobs, run_batch
from pipelines.errors import ConflictError, InputError, NotFoundError, NuqiError
from pipelines.registry import ModelRegistry
from pipelines.settings import Settings

logger = logging.getLogger("nuqi.services.batch")

JOB_ID = re.compile(r"^b_[0-9a-f]{16}$")
ACTIVE = ("queued", "running")
WRITE_EVERY_S = 1.0  # progress is persisted at most this often (and always at the end)
MAX_PATHS = 1000


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another holder has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@dataclass(frozen=True)
class BatchOptions:
    channel_map: str | None = None
    asr: str = "auto"


class BatchJobs:
    """All batch jobs of this service process (one per app, created on first use)."""

    def __init__(self, settings: Settings, models: ModelRegistry) -> None:
        self.settings = settings
        self.models = models
        self.root = Path(settings.state_dir) / "batch"
        self.root.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[str] = queue.Queue()
        self._held: dict[str, int] = {}  # job id -> fd of its flock (queued or running here)
        self._mutex = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="nuqi-batch", daemon=True)
        self._thread.start()
        self.resume_interrupted()

    # --- paths -------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise NotFoundError(f"batch job {job_id!r} not found", job_id=job_id)
        return self.root / job_id

    def new_job_dir(self) -> tuple[str, Path]:
        job_id = "b_" + secrets.token_hex(8)
        d = self.root / job_id
        (d / "inputs").mkdir(parents=True)
        return job_id, d

    def check_server_paths(self, paths: list[str]) -> list[Path]:
        """Resolve server-side paths; each must exist inside one of ``settings.batch.batch_input_roots``."""
        if not paths:
            raise InputError("paths: give at least one server-side file or folder", field="paths")
        if len(paths) > MAX_PATHS:
            raise InputError(f"paths: {len(paths)} given; at most {MAX_PATHS} per job", field="paths")
        roots = [Path(r).resolve() for r in self.settings.batch.batch_input_roots]
        out = []
        for i, p in enumerate(paths):
            path = Path(p).expanduser().resolve()
            if not any(path == r or path.is_relative_to(r) for r in roots):
                raise ForbiddenError(f"paths[{i}] {p!r} is outside the folders batch jobs may read "
                                     f"(setting batch_input_roots: {', '.join(map(str, roots)) or 'none'})",
                                     field=f"paths[{i}]")
            if not path.exists():
                raise InputError(f"paths[{i}] {p!r} does not exist on the server", field=f"paths[{i}]")
            out.append(path)
        return out

    # --- lifecycle ---------------------------------------------------------------------------
    def submit(self, job_id: str, job_dir: Path, *, tenant: str, inputs: list[str], options: BatchOptions,
               source: str) -> dict[str, Any]:
        """Persist a new job as ``queued`` and hand it to the runner thread."""
        n = len(collect_jobs(inputs))
        if n == 0:
            raise InputError("no audio files (.wav .flac .mp3 .ogg) found in the request", field="paths")
        fd = _try_lock(job_dir / ".lock")
        assert fd is not None  # a brand-new folder: nobody else can hold it
        job = {
            "id": job_id, "status": "queued", "tenant": tenant, "source": source, "created_at": _now(),
            "started_at": None, "finished_at": None, "inputs": inputs,
            "options": {"channel_map": options.channel_map, "asr": options.asr},
            "progress": {"total": n, "done": 0, "scored": 0, "skipped": 0, "failed": 0, "eta_s": None},
            "error": None, "notes": [], "results": [],
        }
        _atomic_json(job_dir / "job.json", job)
        with self._mutex:
            self._held[job_id] = fd
        self._queue.put(job_id)
        logger.info("batch job %s queued: %d file(s)", job_id, n)
        return job

    def read(self, job_id: str) -> dict[str, Any]:
        path = self.job_dir(job_id) / "job.json"
        for _ in range(3):
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                break
            except ValueError:  # only on a foreign, non-atomic writer; retry
                time.sleep(0.05)
        raise NotFoundError(f"batch job {job_id!r} not found", job_id=job_id)

    def is_live(self, job_id: str) -> bool:
        """Whether some process (this one or another worker) is queuing or running the job."""
        with self._mutex:
            if job_id in self._held:
                return True
        fd = _try_lock(self.job_dir(job_id) / ".lock")
        if fd is None:
            return True
        os.close(fd)
        return False

    def resume_interrupted(self) -> list[str]:
        """Claim and re-queue jobs left queued/running by a process that is gone."""
        resumed = []
        for d in sorted(self.root.glob("b_*")):
            if not JOB_ID.match(d.name) or not (d / "job.json").is_file():
                continue
            try:
                job = self.read(d.name)
            except NuqiError:
                continue
            if job.get("status") not in ACTIVE:
                continue
            fd = _try_lock(d / ".lock")
            if fd is None:
                continue  # another worker runs it
            with self._mutex:
                self._held[d.name] = fd
            job["status"] = "queued"
            job.setdefault("notes", []).append(f"{_now()}: resumed after a restart")
            _atomic_json(d / "job.json", job)
            self._queue.put(d.name)
            resumed.append(d.name)
        if resumed:
            logger.warning("resuming %d interrupted batch job(s): %s", len(resumed), ", ".join(resumed))
        return resumed

    # --- runner ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            try:
                self._run(job_id)
            except Exception:  # noqa: BLE001 - the runner thread must survive any job
                logger.exception("batch job %s crashed", job_id)
            finally:
                with self._mutex:
                    fd = self._held.pop(job_id, None)
                if fd is not None:
                    os.close(fd)

    def _run(self, job_id: str) -> None:
        d = self.job_dir(job_id)
        job = self.read(job_id)
        job.update(status="running", started_at=job.get("started_at") or _now())
        _atomic_json(d / "job.json", job)
        last = 0.0

        def update(prog: BatchProgress, records: list[ScoredCall]) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < WRITE_EVERY_S and prog.done < prog.total:
                return
            last = now
            job["progress"] = prog.to_dict()
            job["results"] = [r.to_row() for r in records]
            _atomic_json(d / "job.json", job)

        opts = job.get("options") or {}
        workers = max(1, int(self.settings.batch.batch_workers))
        try:
            result = run_batch(job["inputs"], d / "out", settings=self.settings, channel_map=opts.get("channel_map"),
                               workers=workers, asr=opts.get("asr", "auto"), ray_address=self.settings.batch.ray_address,
                               models=self.models if workers == 1 else None, on_update=update)
        except NuqiError as exc:
            job.update(status="failed", error={"code": exc.code, "message": exc.message}, finished_at=_now())
        except Exception as exc:  # noqa: BLE001 - recorded in the job, the service goes on
            logger.exception("batch job %s failed", job_id)
            job.update(status="failed", error={"code": "internal", "message": f"{type(exc).__name__}: {exc}"},
                       finished_at=_now())
        else:
            job["progress"] = result.progress.to_dict()
            job["results"] = [r.to_row() for r in result.records]
            job["notes"] = list(job.get("notes") or []) + result.notes
            job.update(status="done", finished_at=_now())
        _atomic_json(d / "job.json", job)
        logger.info("batch job %s %s", job_id, job["status"])

    # --- views -------------------------------------------------------------------------------
    def view(self, job_id: str, tenant: str, *, offset: int = 0, limit: int = 1000) -> dict[str, Any]:
        job = self.read(job_id)
        if job.get("tenant") != tenant:
            raise NotFoundError(f"batch job {job_id!r} not found", job_id=job_id)
        if job.get("status") in ACTIVE and not self.is_live(job_id):
            job["status"] = "interrupted"  # its process is gone; the next start-up resumes it
        prog = job.get("progress") or {}
        total = int(prog.get("total") or 0)
        results = job.pop("results", []) or []
        out_dir = self.job_dir(job_id) / "out"
        base = f"/v1/batch/{job_id}/files"
        return {
            **{k: v for k, v in job.items() if k not in ("tenant", "inputs")},
            "inputs": [str(p) for p in job.get("inputs", [])],
            "fraction_done": round(int(prog.get("done") or 0) / total, 4) if total else 0.0,
            "results_total": len(results),
            "results": results[offset:offset + limit],
            "reports": {
                "index_html": f"{base}/index.html" if (out_dir / "index.html").is_file() else None,
                "summary_csv": f"{base}/summary.csv" if (out_dir / "summary.csv").is_file() else None,
            },
        }

    def delete(self, job_id: str, tenant: str) -> None:
        """Remove a finished job's folder (its uploads and reports); a live job cannot be deleted."""
        import shutil

        job = self.read(job_id)
        if job.get("tenant") != tenant:
            raise NotFoundError(f"batch job {job_id!r} not found", job_id=job_id)
        if job.get("status") in ACTIVE and self.is_live(job_id):
            raise ConflictError(f"batch job {job_id!r} is {job['status']}; delete it when it has finished",
                                job_id=job_id)
        shutil.rmtree(self.job_dir(job_id))
        logger.info("batch job %s deleted", job_id)

    def report_file(self, job_id: str, tenant: str, rel: str) -> Path:
        """A file of the job's output folder (index.html, summary.csv, calls/<call>.html|.json)."""
        job = self.read(job_id)
        if job.get("tenant") != tenant:
            raise NotFoundError(f"batch job {job_id!r} not found", job_id=job_id)
        out_dir = (self.job_dir(job_id) / "out").resolve()
        path = (out_dir / rel).resolve()
        if not path.is_relative_to(out_dir) or not path.is_file() or path.name.startswith("."):
            raise NotFoundError(f"batch job {job_id!r} has no report file {rel!r}", job_id=job_id, path=rel)
        return path


_SAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def safe_upload_name(name: str, taken: set[str]) -> str:
    """A file name for an upload: its base name, unsafe characters replaced, unique in the job."""
    base = _SAFE.sub("_", Path(name or "upload").name).strip("._") or "upload"
    stem, suffix = os.path.splitext(base)
    cand, i = base, 1
    while cand in taken:
        cand, i = f"{stem}-{i}{suffix}", i + 1
    taken.add(cand)
    return cand


_INIT = threading.Lock()


def batch_jobs(app_state: Any, settings: Settings, models: ModelRegistry) -> BatchJobs:
    """The app's :class:`BatchJobs`, created (and interrupted jobs resumed) on first use."""
    jobs = getattr(app_state, "batch_jobs", None)
    if jobs is None:
        with _INIT:
            jobs = getattr(app_state, "batch_jobs", None)
            if jobs is None:
                jobs = BatchJobs(settings, models)
                app_state.batch_jobs = jobs
    return jobs
