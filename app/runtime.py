"""Everything the service holds for its lifetime: settings, models, store, thread pool, alert hub.

Built once in the FastAPI lifespan (``app.main``); routes reach it through the
``RuntimeDep`` dependency in ``app.deps``.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from app.settings import ServiceSettings
from app.store import Store, open_store
from pipelines.registry import ModelRegistry

logger = logging.getLogger("nuqi.runtime")
T = TypeVar("T")


class AlertHub:
    """Wakes long-poll and SSE waiters in this process when an alert is stored.

    Other workers' alerts are found by the waiters' periodic store poll, so delivery
    does not depend on which process raised the alert.

    One ``asyncio.Event`` per generation, replaced at every notify: neither side takes a lock, so a waiter
    cancelled at any point (a client that disconnects mid long-poll; anyio re-delivers the cancellation at
    every await) can never leave anything held that a later ``notify`` (on the chunk path) would wait for.
    """

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self.version = 0

    def _current(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    async def notify(self) -> None:
        event = self._current()
        self._event = asyncio.Event()
        self.version += 1
        event.set()

    async def wait(self, seconds: float) -> None:
        """Return when an alert is stored in this process, or after ``seconds``."""
        try:
            await asyncio.wait_for(self._current().wait(), seconds)
        except asyncio.TimeoutError:
            pass


@dataclass
class Runtime:
    settings: ServiceSettings
    models: ModelRegistry
    store: Store
    executor: ThreadPoolExecutor
    alerts: AlertHub = field(default_factory=AlertHub)
    call_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # live ASR (app.services.asr.LiveAsr), attached by the app's lifespan once started; None: no live ASR at all
    asr: Any = None

    @classmethod
    def start(cls, settings: ServiceSettings, models: ModelRegistry | None = None) -> "Runtime":
        models = models or ModelRegistry.load(settings)
        store = open_store(settings)
        executor = ThreadPoolExecutor(max_workers=settings.inference_threads, thread_name_prefix="nuqi-infer")
        logger.info("runtime ready: store=%s models=%s", store.name,
                    {k: v.loaded for k, v in models.status.items()})
        return cls(settings=settings, models=models, store=store, executor=executor)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (inference, store I/O) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def lock_for(self, call_id: str) -> asyncio.Lock:
        lock = self.call_locks.get(call_id)
        if lock is None:
            if len(self.call_locks) > 10000:  # forget idle locks of long-gone calls
                for key in [k for k, v in self.call_locks.items() if not v.locked()][:5000]:
                    self.call_locks.pop(key, None)
            lock = self.call_locks[call_id] = asyncio.Lock()
        return lock
