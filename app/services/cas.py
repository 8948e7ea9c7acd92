"""Retrying compare-and-set writes of a call record, with one bound for every caller.

A call's record is written with a version check (``Store.save_call`` / ``Store.commit_chunk``); a write
that loses the race to another worker re-reads the record and tries again.  :class:`CasRetry` counts the
lost races of one operation and gives up with a :class:`~pipelines.errors.ConflictError` (HTTP 409, the
client retries) after :data:`MAX_LOST_RACES`, so no loop spins forever on a call that is updated
faster than this worker can analyse it.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, TypeVar

from pipelines.errors import ConflictError

T = TypeVar("T")

MAX_LOST_RACES = 200  # lost races in a row before an operation gives up (>= 4 s at RETRY_SLEEP_S)
RETRY_SLEEP_S = 0.02  # pause after a lost race


class CasRetry:
    """The lost-race budget of one operation on one call."""

    def __init__(self, what: str, **context: Any) -> None:
        self.what = what
        self.context = context
        self.lost = 0

    def lose(self) -> None:
        """Record a lost race; raises :class:`ConflictError` when the budget is spent."""
        self.lost += 1
        if self.lost >= MAX_LOST_RACES:
            raise ConflictError(f"{self.what}: the call is being updated too often ({self.lost} concurrent "
                                "updates won in a row); retry", **self.context)

    def lose_and_wait(self) -> None:
        self.lose()
        time.sleep(RETRY_SLEEP_S)

    async def lose_and_wait_async(self) -> None:
        self.lose()
        await asyncio.sleep(RETRY_SLEEP_S)


def retry_cas(attempt: Callable[[], T | None], what: str, **context: Any) -> T:
    """Run ``attempt`` (read, change, compare-and-set; None when the write lost the race) until it wins."""
    guard = CasRetry(what, **context)
    while True:
        out = attempt()
        if out is not None:
            return out
        guard.lose_and_wait()
