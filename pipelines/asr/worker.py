"""Live ASR in its own processes: utterances in, transcripts with confidence out.

``AsrWorkerPool(model_dir, workers=N).start()`` spawns N processes (``spawn`` context: a fresh interpreter
each, nothing inherited from a web server's threads or event loop), each loading one
:class:`~pipelines.asr.engine.WhisperEngine` once (1 decoder thread).  ``submit(utterance)`` returns a
:class:`concurrent.futures.Future` of an :class:`UtteranceTranscript` at once; the caller never blocks on
recognition (an asyncio caller wraps it with ``asyncio.wrap_future``).  The audio-analysis thread pool and
the event loop therefore never wait for a decode, and a backlog only delays transcripts.

``backlog_s`` (audio seconds submitted and not yet transcribed) and ``observed_rtf`` (decode seconds per
audio second, measured in the workers) feed :class:`pipelines.asr.admission.AsrAdmission`.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.asr.segmenter import Utterance
from pipelines.errors import ModelNotAvailableError

logger = logging.getLogger("nuqi.asr.worker")


@dataclass(frozen=True)
class UtteranceTranscript:
    """The recognised text of one utterance; times on the call clock; ``source`` is always ``"asr"``."""

    call_id: str
    role: str
    seq: int
    t_start: float
    t_end: float
    speech_end: float
    text: str  # "" when the recogniser heard no words (filtered noise, a cough)
    confidence: float | None  # duration-weighted mean of exp(avg_logprob) over the segments, 0..1
    segments: list[dict[str, Any]] = field(default_factory=list)  # start/end (call clock), text, confidence
    audio_s: float = 0.0
    decode_s: float = 0.0  # wall time of the decode in the worker
    worker_pid: int = 0
    source: str = "asr"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- in the worker process
_ENGINE: Any = None


def _init_worker(model_dir: str, engine_kwargs: dict[str, Any], nice: int = 0) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _exit_with_parent()
    if nice:
        os.nice(nice)  # recognition yields the CPU to the service's audio analysis
        _own_autogroup(nice)
    from pipelines.asr.engine import WhisperEngine

    global _ENGINE
    _ENGINE = WhisperEngine.load(Path(model_dir), cpu_threads=1, **engine_kwargs)


def _exit_with_parent(every_s: float = 1.0) -> None:
    """A recogniser whose service process died (SIGKILL, OOM) exits too instead of idling on as an orphan
    (a process pool's workers outlive a killed parent)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="nuqi-asr-parent-watch", daemon=True).start()


def _own_autogroup(nice: int) -> None:
    """Linux with ``sched_autogroup_enabled``: CPU is shared fairly between sessions whatever the nice values, so
    the recognisers' time would be charged to the service's session.  A session of their own whose autogroup is
    niced keeps them behind the service there too (on other kernels this changes nothing)."""
    try:
        os.setsid()
        with open("/proc/self/autogroup", "w", encoding="ascii") as fh:
            fh.write(str(nice))
    except OSError:
        pass


def _ready() -> int:
    return os.getpid() if _ENGINE is not None else -1


def _transcribe(utt: Utterance) -> UtteranceTranscript:
    t0 = time.perf_counter()
    segments = _ENGINE.transcribe(utt.samples, utt.sample_rate)
    dt = time.perf_counter() - t0
    segs = [{"start": round(utt.t_start + s.start, 3), "end": round(utt.t_start + s.end, 3), "text": s.text,
             "confidence": s.confidence} for s in segments]
    weights = [max(s.end - s.start, 1e-3) for s in segments]
    confs = [s.confidence for s in segments]
    confidence = (round(float(np.average([c or 0.0 for c in confs], weights=weights)), 3) if segments else None)
    return UtteranceTranscript(call_id=utt.call_id, role=utt.role, seq=utt.seq, t_start=utt.t_start, t_end=utt.t_end,
                               speech_end=utt.speech_end, text="".join(s.text for s in segments),
                               confidence=confidence, segments=segs, audio_s=round(utt.duration_s, 3),
                               decode_s=round(dt, 3), worker_pid=os.getpid())


# --------------------------------------------------------------------------- in the service process
class AsrWorkerPool:
    """N recogniser processes; see the module docstring."""

    def __init__(self, model_dir: Path, workers: int = 1, engine_kwargs: dict[str, Any] | None = None,
                 nice: int = 0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.model_dir = Path(model_dir)
        self.workers = workers
        self.nice = nice  # added to the worker processes' niceness
        self._engine_kwargs = dict(engine_kwargs or {})
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._backlog_s = 0.0
        self._pending = 0
        self._audio_s = 0.0
        self._decode_s = 0.0
        self.done = 0

    @classmethod
    def from_settings(cls, settings: Any, workers: int | None = None) -> AsrWorkerPool:
        """``settings.asr.asr_workers`` processes with the model of ``settings.models`` and the decoding options of
        ``settings.asr`` (the same engine as ``nuqi transcribe``), niced by ``asr_nice``; call :meth:`start` (or use
        ``with``)."""
        from pipelines.asr.engine import decode_config
        from pipelines.asr.model_assembly import default_model_dir

        return cls(default_model_dir(settings), workers=workers or settings.asr.asr_workers,
                   engine_kwargs={"decode": decode_config(settings)}, nice=settings.asr.asr_nice)

    def start(self, timeout_s: float = 120.0) -> AsrWorkerPool:
        """Spawn the processes and wait until every one has its model loaded."""
        from pipelines.asr.engine import check_model_dir

        check_model_dir(self.model_dir)
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                         initializer=_init_worker,
                                         initargs=(str(self.model_dir), self._engine_kwargs, self.nice))
        pids = {f.result(timeout=timeout_s) for f in [self._pool.submit(_ready) for _ in range(self.workers)]}
        if -1 in pids:
            raise ModelNotAvailableError(f"ASR worker failed to load the model from {self.model_dir}")
        logger.info("ASR worker pool: %d process(es) ready (%s)", self.workers, sorted(pids))
        return self

    @property
    def backlog_s(self) -> float:
        """Audio seconds submitted and not yet transcribed (0.0 exactly when nothing is pending)."""
        return self._backlog_s if self._pending else 0.0

    @property
    def pending(self) -> int:
        """Utterances submitted and not yet transcribed."""
        return self._pending

    @property
    def observed_rtf(self) -> float | None:
        """Decode seconds per audio second over every finished utterance (None before the first)."""
        return self._decode_s / self._audio_s if self._audio_s > 0 else None

    def submit(self, utt: Utterance) -> Future[UtteranceTranscript]:
        if self._pool is None:
            raise RuntimeError("AsrWorkerPool.start() was not called")
        with self._lock:
            self._backlog_s += utt.duration_s
            self._pending += 1
        fut = self._pool.submit(_transcribe, utt)
        fut.add_done_callback(lambda f, a=utt.duration_s: self._finished(f, a))
        return fut

    def _finished(self, fut: Future[UtteranceTranscript], audio_s: float) -> None:
        with self._lock:
            self._pending -= 1
            self._backlog_s = max(0.0, self._backlog_s - audio_s) if self._pending else 0.0  # no float residue
            if not fut.cancelled() and fut.exception() is None:
                res = fut.result()
                self._audio_s += res.audio_s
                self._decode_s += res.decode_s
                self.done += 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> AsrWorkerPool:
        return self.start() if self._pool is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
