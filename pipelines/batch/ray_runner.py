"""QA batch scoring on a Ray cluster: one actor per worker loads the models once, files are tasks.

Imported only when a Ray address is given (``nuqi score --ray ADDRESS`` or
``NUQI_RAY_ADDRESS``); ``pip install 'nuqi[ray]'``.  The driver reads each file (and its
transcript sidecar) and ships the bytes with the task, so cluster nodes need neither the
driver's file system nor write access to the output folder: actors return the record, the
timeline JSON and the HTML page, and the driver writes them into the same outputs as the local
runner (:func:`pipelines.batch.score.run_batch`).  Every node needs nuqi and its models
installed (same ``models/`` as the driver).

``address``: ``"local"`` starts a private local Ray instance with ``workers`` CPUs (tests,
one machine); anything else is passed to ``ray.init(address=...)`` (``"auto"``,
``"ray://head:10001"``).  A call whose actor dies is reported as an error row and the actor
is replaced; the batch goes on.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Iterator

from pipelines.batch.records import CallJob, CallOutput, ScoredCall, ScoreOptions
from pipelines.batch.scorer import Scorer
from pipelines.errors import InputError, ModelNotAvailableError
from pipelines.settings import Settings

logger = logging.getLogger("nuqi.batch.ray")


class ScoreActor:
    """Ray actor body: models loaded once in ``__init__``; ``score`` runs one shipped call."""

    def __init__(self, settings: Settings, options: ScoreOptions) -> None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        self.error: str | None = None
        self.scorer: Scorer | None = None
        try:
            self.scorer = Scorer.load(settings, options)
        except ModelNotAvailableError as exc:
            self.error = exc.message

    def ready(self) -> str | None:
        return self.error

    def score(self, job: CallJob, audio: bytes, sidecar: bytes | None) -> CallOutput:
        if self.scorer is None:
            raise ModelNotAvailableError(self.error or "Ray worker has no models")
        with tempfile.TemporaryDirectory(prefix="nuqi-ray-") as tmp:
            local = Path(tmp) / Path(job.path).name
            local.write_bytes(audio)
            side = None
            if sidecar is not None and job.sidecar:
                side = local.with_suffix(Path(job.sidecar).suffix)
                side.write_bytes(sidecar)
            local_job = CallJob(path=str(local), name=job.name, sidecar=str(side) if side else None,
                                size=job.size, display=job.file)
            return self.scorer.score(local_job)


def _read(job: CallJob) -> tuple[bytes | None, bytes | None, str | None]:
    try:
        audio = Path(job.path).read_bytes()
    except OSError as exc:
        return None, None, f"{job.file}: cannot read ({exc.strerror or exc})"
    sidecar = None
    if job.sidecar:
        try:
            sidecar = Path(job.sidecar).read_bytes()
        except OSError as exc:
            return None, None, f"{job.sidecar}: cannot read transcript sidecar ({exc.strerror or exc})"
    return audio, sidecar, None


def _error(job: CallJob, message: str) -> CallOutput:
    return CallOutput(ScoredCall(file=job.file, call=job.name, status="error", error=message))


def run_on_ray(jobs: list[CallJob], *, address: str, workers: int, settings: Settings,
               options: ScoreOptions) -> Iterator[tuple[CallJob, CallOutput]]:
    """Yield ``(job, output)`` as Ray actors finish calls (at most one call in flight per actor)."""
    try:
        import ray
        from ray.exceptions import RayActorError, RayTaskError
    except ImportError:
        raise InputError(f"Ray address {address!r} given but the ray package is not installed: "
                         "pip install 'nuqi[ray]'", field="ray_address") from None

    workers = max(1, min(int(workers), len(jobs)))
    started = False
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError from ray.init
            raise InputError(f"cannot start or reach Ray at {address!r}: {type(exc).__name__}: {exc}",
                             field="ray_address") from None
        started = True
    try:
        Actor = ray.remote(num_cpus=1, max_restarts=0)(ScoreActor)
        actors = [Actor.remote(settings, options) for _ in range(workers)]
        problems = [p for p in ray.get([a.ready.remote() for a in actors]) if p]
        if problems:
            raise ModelNotAvailableError(f"Ray workers could not load the models: {problems[0]}")
        pending = deque(jobs)
        running: dict[Any, tuple[Any, CallJob]] = {}
        idle = list(actors)

        while pending or running:
            while idle and pending:
                job = pending.popleft()
                audio, sidecar, err = _read(job)
                if err is not None:
                    yield job, _error(job, err)
                    continue
                actor = idle.pop()
                running[actor.score.remote(job, audio, sidecar)] = (actor, job)
            if not running:
                continue
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            actor, job = running.pop(ref)
            try:
                yield job, ray.get(ref)
                idle.append(actor)
            except RayActorError as exc:
                logger.warning("Ray actor died while scoring %s: %s; starting a new one", job.file, exc)
                yield job, _error(job, f"Ray worker died while scoring this call ({type(exc).__name__}); "
                                       "rerun to resume")
                idle.append(Actor.remote(settings, options))
            except RayTaskError as exc:
                cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
                if isinstance(cause, ModelNotAvailableError):
                    raise ModelNotAvailableError(str(cause)) from None
                yield job, _error(job, f"Ray task failed: {type(cause).__name__}: {cause}")
                idle.append(actor)
    finally:
        if started:
            ray.shutdown()
