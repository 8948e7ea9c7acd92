"""Live ASR of calls that arrive without transcripts: analysed windows → utterances → recogniser → transcripts.

:class:`LiveAsr` is started once per service process (``app.main`` lifespan) and reached as ``rt.asr``:

* **start-up** -- :class:`~pipelines.asr.worker.AsrWorkerPool` (``NUQI_ASR_WORKERS`` spawned recogniser processes,
  niced by ``NUQI_ASR_NICE``) when ``NUQI_LIVE_ASR`` is not ``off`` and the Whisper model is assembled
  (``nuqi models``); otherwise live ASR is unavailable, which the log, ``/readyz`` (``asr``) and every call's
  state (``asr: "unavailable"``) say.
* **decision** -- :meth:`decide`, on a call's first analysed audio (inside its commit, so the status is stored
  with the call's state and seen by every worker): ``auto | on | off`` with the per-call override, then capacity
  admission (:class:`~pipelines.asr.admission.AsrAdmission`) → ``"on"`` or ``"skipped: capacity"``.
* **audio** -- :meth:`feed`, after each committed window of an admitted call (HTTP chunks, frames, WebSocket
  and telephony streams all commit windows in ``app.services.calls`` / ``stream``): it only copies the
  customer leg's samples (also the agent's with ``NUQI_ASR_AGENT_LEG``) onto a queue.  One thread of its own
  runs the per-(call, leg) :class:`~pipelines.asr.segmenter.UtteranceSegmenter` (VAD) in window order and
  submits ended utterances to the recogniser processes; neither the event loop nor the analysis threads wait
  for VAD or recognition, so a recognition backlog only delays transcripts, never audio analysis or alerts.
* **transcripts** -- a finished utterance goes through the platform transcripts' path
  (:func:`app.services.transcripts.ingest_asr`: keywords matched by sound too, text emotion, fusion, stage,
  alerts; applied in a thread of live ASR's own, under the call's lock) as ``source: "asr"`` with its confidence, under the deterministic id ``asr:{role}:{start}`` (a
  retry is a duplicate).  A platform transcript stops live ASR of an ``auto`` call and wins over a recognised
  utterance of the same span.
* **end** -- :meth:`finish` (before the summary): the pending utterance is cut and transcribed, the call's
  transcripts are awaited (at most ``NUQI_ASR_END_WAIT_S``) and its capacity released.

The segmenters (up to 20 s of pending audio per leg) are **process-local**, not stored with the call: a call
whose windows are analysed by several service workers (short POSTs spread over workers) is segmented in each
worker that sees it, so an utterance that straddles a switch is recognised as two pieces (and a worker that has
no capacity left transcribes none of its windows); a streaming connection stays in one worker.  A segmenter fed
nothing for ``IDLE_S`` (its connection went to another worker, or the call was never ended) is flushed and
dropped.
"""
from __future__ import annotations

import asyncio
import collections
import importlib.util
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.runtime import Runtime
from app.services.transcripts import AsrSnippet, ingest_asr
from pipelines.asr import admission as rules
from pipelines.asr.admission import AsrAdmission
from pipelines.errors import NuqiError

logger = logging.getLogger("nuqi.asr")

IDLE_S = 30.0  # a call's segmenters fed nothing this long are flushed and dropped (their capacity released)
JANITOR_S = 5.0


@dataclass
class _CallAsr:
    """One admitted call in this process: its legs' segmenters and what is still in flight."""

    tenant: str | None
    call_id: str = ""
    segmenters: dict[str, Any] = field(default_factory=dict)
    pending: set[Future[Any]] = field(default_factory=set)  # VAD pushes and recognitions not done yet
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # transcripts being applied
    last_fed: float = field(default_factory=time.monotonic)
    finishing: bool = False


def call_key(call_id: str, tenant: str) -> str:
    """Calls are the tenant's own (two tenants may use the same id): live ASR keys them by both."""
    return f"{tenant}\x1f{call_id}"


class LiveAsr:
    """Live ASR of this service process (see the module docstring)."""

    def __init__(self, rt: Runtime, pool: Any = None, error: str | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings.asr
        self.pool = pool
        self.error = error
        self.admission: AsrAdmission | None = None
        if pool is not None:
            s = self.settings
            self.admission = AsrAdmission(workers=pool.workers, rtf=s.asr_rtf, headroom=s.asr_headroom,
                                          legs_per_call=2 if s.asr_agent_leg else 1)
        self._calls: dict[str, _CallAsr] = {}
        self._stopped: collections.deque[str] = collections.deque(maxlen=4096)  # calls whose ASR stopped here
        self._lock = threading.Lock()
        self._vad = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nuqi-asr-vad") if pool else None
        # transcripts are applied (text model, fusion, store) in a thread of their own, not the analysis threads
        self._apply_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nuqi-asr-apply") if pool else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.stats = {"utterances": 0, "applied": 0, "dropped": 0, "empty": 0, "errors": 0}

    # ------------------------------------------------------------------ life cycle
    @classmethod
    async def start(cls, rt: Runtime) -> LiveAsr:
        """Start the recogniser processes when live ASR is wanted and possible; never raises (a service without
        ASR still analyses audio)."""
        mode = rt.settings.asr.live_asr
        if mode == "off":
            logger.info("live ASR is off (NUQI_LIVE_ASR=off)")
            return cls(rt, error="NUQI_LIVE_ASR=off")
        from pipelines.asr.worker import AsrWorkerPool

        try:
            if importlib.util.find_spec("faster_whisper") is None:
                raise RuntimeError("the faster-whisper package is not installed (pip install 'nuqi[asr]')")
            pool = AsrWorkerPool.from_settings(rt.settings)  # start() checks the model dir first
            await asyncio.to_thread(pool.start)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the service running without live ASR
            msg = getattr(exc, "message", None) or str(exc)
            logger.warning("live ASR unavailable (NUQI_LIVE_ASR=%s): %s", mode, msg)
            return cls(rt, error=msg)
        live = cls(rt, pool)
        live._loop = asyncio.get_running_loop()
        live._janitor = asyncio.create_task(live._sweep())
        logger.info("live ASR ready (NUQI_LIVE_ASR=%s): %d recogniser process(es), capacity %d calls",
                    mode, pool.workers, live.admission.capacity if live.admission else 0)
        return live

    @property
    def available(self) -> bool:
        return self.pool is not None

    async def close(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        for ex in (self._vad, self._apply_pool):
            if ex is not None:
                ex.shutdown(wait=False, cancel_futures=True)
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)

    def health(self) -> dict[str, Any]:
        """For ``/readyz``: mode, whether the recognisers run (or why not), capacity, backlog, RTF."""
        out: dict[str, Any] = {"mode": self.settings.live_asr, "available": self.available, "error": self.error}
        if self.pool is not None and self.admission is not None:
            out.update(workers=self.pool.workers, capacity=self.admission.capacity, active=self.admission.active,
                       backlog_s=round(self.pool.backlog_s, 2), rtf=round(self.admission.rtf, 3),
                       observed_rtf=None if self.pool.observed_rtf is None else round(self.pool.observed_rtf, 3),
                       **self.stats)
        return out

    # ------------------------------------------------------------------ decision (any thread)
    def decide(self, call_id: str, tenant: str, asr: dict[str, Any], override: str | None) -> dict[str, Any]:
        """A call's live-ASR state after its first analysed audio (``pipelines.asr.admission.decide``)."""
        key = call_key(call_id, tenant)

        def admit() -> str:
            assert self.admission is not None and self.pool is not None
            status = self.admission.admit(key, self.pool.backlog_s)
            if status == rules.ADMITTED:
                with self._lock:
                    self._calls.setdefault(key, _CallAsr(tenant, call_id))
            return status

        return rules.decide(asr, self.settings.live_asr, override, self.available, admit)

    # ------------------------------------------------------------------ audio (any thread; never blocks)
    def feed(self, call_id: str, tenant: str, chunk: Any, t_start: float) -> None:
        """A committed window of a call whose state says ``asr: "on"``: its legs' samples to the VAD thread."""
        if self._vad is None or self.admission is None or self.pool is None:
            return
        try:
            self._feed(call_id, tenant, chunk, t_start)
        except Exception:  # noqa: BLE001 - the window is committed: ASR trouble must not fail its request
            self.stats["errors"] += 1
            logger.exception("live ASR could not take a window of call %s", call_id)

    def _feed(self, call_id: str, tenant: str, chunk: Any, t_start: float) -> None:
        assert self._vad is not None and self.admission is not None and self.pool is not None
        roles = ("customer", "agent") if self.settings.asr_agent_leg else ("customer",)
        legs = [(r, np.array(chunk.audio[r], copy=True)) for r in roles if r in chunk.audio]
        if not legs:
            return
        key = call_key(call_id, tenant)
        with self._lock:
            c = self._calls.get(key)
            if c is None:
                if key in self._stopped:
                    return
                # admitted by another worker (or evicted idle here): this worker takes it if it has room
                if self.admission.admit(key, self.pool.backlog_s) != rules.ADMITTED:
                    return
                c = self._calls[key] = _CallAsr(tenant, call_id)
            if c.finishing:
                return
            c.tenant = tenant
            c.last_fed = time.monotonic()
            fut = self._vad.submit(self._push, call_id, c, legs, int(chunk.sample_rate), float(t_start))
            c.pending.add(fut)
        fut.add_done_callback(c.pending.discard)

    def _push(self, call_id: str, c: _CallAsr, legs: list[tuple[str, np.ndarray]], rate: int, t_start: float) -> None:
        """VAD thread: the windows of one call in commit order → ended utterances → recogniser processes."""
        from pipelines.asr.segmenter import UtteranceSegmenter

        try:
            for role, x in legs:
                seg = c.segmenters.get(role)
                if seg is None:
                    seg = c.segmenters[role] = UtteranceSegmenter(call_id, role)
                for utt in seg.push(x, rate, t_start):
                    self._submit(call_id, c, utt)
        except Exception:  # noqa: BLE001 - one bad window must not stop the thread
            self.stats["errors"] += 1
            logger.exception("live ASR segmentation failed for a window of call %s", call_id)

    def _flush(self, call_id: str, c: _CallAsr) -> None:
        """VAD thread: the call ends (or idles): what each leg has pending becomes its last utterance."""
        for seg in list(c.segmenters.values()):
            for utt in seg.flush():
                self._submit(call_id, c, utt)
        c.segmenters.clear()

    def _submit(self, call_id: str, c: _CallAsr, utt: Any) -> None:
        assert self.pool is not None and self._loop is not None
        self.stats["utterances"] += 1
        fut = self.pool.submit(utt)
        c.pending.add(fut)
        loop = self._loop

        def done(f: Future[Any]) -> None:
            try:
                loop.call_soon_threadsafe(self._recognised, call_id, c, f)
            except RuntimeError:  # the service is shutting down (its loop closed)
                pass

        fut.add_done_callback(done)

    # ------------------------------------------------------------------ transcripts (event loop)
    def _recognised(self, call_id: str, c: _CallAsr, fut: Future[Any]) -> None:
        c.pending.discard(fut)
        if fut.cancelled():
            return
        if fut.exception() is not None:
            self.stats["errors"] += 1
            logger.warning("live ASR recognition failed for call %s: %s", call_id, fut.exception())
            return
        res = fut.result()
        if self.admission is not None:
            self.admission.observe(res.audio_s, res.decode_s)
        if not res.text.strip():
            self.stats["empty"] += 1
            return
        task = asyncio.ensure_future(self._apply(call_id, c, res))
        c.tasks.add(task)
        task.add_done_callback(c.tasks.discard)

    async def _apply(self, call_id: str, c: _CallAsr, res: Any) -> None:
        segs = res.segments
        start = min(s["start"] for s in segs) if segs else res.t_start
        end = max(s["end"] for s in segs) if segs else res.t_end
        snippet = AsrSnippet(role=res.role, text=res.text, start=round(start, 3), end=round(end, 3),
                             id=f"asr:{res.role}:{res.t_start:.2f}", confidence=res.confidence)
        try:
            out = await ingest_asr(self.rt, call_id, snippet, tenant=c.tenant or "", executor=self._apply_pool)
        except NuqiError as exc:  # the call ended (on another worker) or is gone: nothing to apply it to
            self.stats["dropped"] += 1
            logger.info("live ASR transcript of call %s not applied: %s", call_id, exc.message)
            return
        except Exception:  # noqa: BLE001 - a store failure loses this transcript, not the service
            self.stats["errors"] += 1
            logger.exception("live ASR transcript of call %s could not be applied", call_id)
            return
        self.stats["dropped" if "dropped" in out else "applied"] += 1

    # ------------------------------------------------------------------ end of a call
    def stop(self, call_id: str, tenant: str) -> None:
        """The call's ASR stops now (a platform transcript in auto mode): no more audio is segmented; results in
        flight are dropped when they come (the call's state no longer says ``on``)."""
        key = call_key(call_id, tenant)
        with self._lock:
            self._calls.pop(key, None)
            self._stopped.append(key)
        if self.admission is not None:
            self.admission.release(key)

    async def finish(self, call_id: str, tenant: str) -> None:
        """Before a call ends: its last utterance is cut, recognised and applied (at most NUQI_ASR_END_WAIT_S),
        then its capacity is released."""
        key = call_key(call_id, tenant)
        with self._lock:
            c = self._calls.get(key)
            if c is not None:
                c.finishing = True
        try:
            if c is None or self._vad is None:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.settings.asr_end_wait_s
            flushed = self._vad.submit(self._flush, call_id, c)  # after the call's windows still queued
            c.pending.add(flushed)
            flushed.add_done_callback(c.pending.discard)
            while (c.pending or c.tasks) and (left := deadline - loop.time()) > 0:
                waits = [asyncio.wrap_future(f) for f in list(c.pending)] + list(c.tasks)
                await asyncio.wait(waits, timeout=left)
                await asyncio.sleep(0.005)  # the done callbacks (scheduled on this loop) run
            if c.pending or c.tasks:
                logger.warning("call %s ended before its last live ASR transcripts (%d in flight after %.0f s)",
                               call_id, len(c.pending) + len(c.tasks), self.settings.asr_end_wait_s)
        finally:
            with self._lock:
                if c is not None and self._calls.get(key) is c:
                    del self._calls[key]
            if self.admission is not None:
                self.admission.release(key)

    async def _sweep(self) -> None:
        """Flush and drop the calls fed nothing for IDLE_S (connection moved away, call never ended)."""
        while True:
            await asyncio.sleep(JANITOR_S)
            now = time.monotonic()
            with self._lock:
                idle = [c for c in self._calls.values()
                        if not c.finishing and not c.pending and not c.tasks and now - c.last_fed > IDLE_S]
            for c in idle:
                logger.info("live ASR of call %s idle for %.0f s: flushed and released", c.call_id, IDLE_S)
                asyncio.ensure_future(self.finish(c.call_id, c.tenant or ""))
