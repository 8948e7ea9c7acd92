"""Leg leases of streamed audio (app/services/stream.py) on the real sample call and the real models: a reconnect that
arrives before the dropped connection has saved its leg waits for that save and continues from the leg's last frame;
a leg whose holder went silent is taken over once its lease expires and the old holder is fenced off; a short POST
of a frame for a leg a live connection holds gets 409 at once."""
from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest

from app.runtime import Runtime
from app.services.stream import StreamSession, decode_frame, post_frames, telephony
from app.telephony.events import LegFrame
from pipelines.audio.decode import ChunkFormat
from pipelines.errors import ConflictError
from pipelines.settings import REPO_ROOT

RATE, FRAME = 8000, 160


@pytest.fixture(scope="module")
def customer() -> np.ndarray:
    with wave.open(str(REPO_ROOT / "sample_audio" / "call_escalating_8k.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)[:, 1].copy()


@pytest.fixture()
def rt(settings, models):
    tel = telephony(settings)
    tel.stream_max_ahead_s, tel.stream_max_messages_per_s, tel.stream_leg_lease_s = 1e9, 1e9, 1.0
    runtime = Runtime.start(settings, models)
    yield runtime
    runtime.close()


def frames(x: np.ndarray, start: int, stop: int) -> list[list[LegFrame]]:
    return [[LegFrame("customer", x[i:i + FRAME], RATE, seq=i // FRAME)] for i in range(start, stop, FRAME)]


async def feed(s: StreamSession, batch: list[list[LegFrame]]) -> list[dict]:
    out = []
    for f in batch:
        out += await s.feed(f)
    return out


def test_a_reconnect_waits_for_the_dropped_connection_to_save_its_leg(rt, customer):
    cut = 2 * RATE + 30 * FRAME  # 2.6 s: 0.6 s buffered in the first connection, not yet saved

    async def scenario():
        a = StreamSession(rt, "lease1", "default")
        msgs = await feed(a, frames(customer, 0, cut))
        assert [m["t_start"] for m in msgs] == [0.0, 1.0]
        b = StreamSession(rt, "lease1", "default")
        task = asyncio.create_task(feed(b, frames(customer, cut, 4 * RATE)))
        await asyncio.sleep(0.3)
        assert not task.done(), "the reconnect went ahead while the first connection still held the leg"
        await a.close()  # the dropped connection's close saves the 0.6 s it buffered and releases the leg
        msgs += await asyncio.wait_for(task, 10)
        await b.close()
        return msgs

    msgs = asyncio.run(scenario())
    assert [m["t_start"] for m in msgs] == [0.0, 1.0, 2.0, 3.0]
    assert all(w["lost_s"] == 0 and w["pad_s"] == 0 for m in msgs for w in m["windows"])


def test_a_close_cancelled_midway_still_saves_the_leg_and_releases_it(rt, customer):
    """The server cancels the connection's handler while its close waits for the call's lock (shutdown; Starlette's
    TestClient cancels on every close): the save goes on, so a reconnect continues at once from the last frame
    instead of waiting the lease out and losing what was buffered (stop 22's CI hung on exactly this)."""
    cut = 2 * RATE + 30 * FRAME  # 0.6 s buffered, not yet saved

    async def scenario():
        a = StreamSession(rt, "lease4", "default")
        await feed(a, frames(customer, 0, cut))
        lock = rt.lock_for("lease4")
        await lock.acquire()  # another message of the call is being committed
        closing = asyncio.create_task(a.close())
        await asyncio.sleep(0.05)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        lock.release()
        b = StreamSession(rt, "lease4", "default")
        t0 = asyncio.get_running_loop().time()
        msgs = await asyncio.wait_for(feed(b, frames(customer, cut, 4 * RATE)), 10)
        waited = asyncio.get_running_loop().time() - t0
        await b.close()
        return msgs, waited

    msgs, waited = asyncio.run(scenario())
    assert waited < 0.8, waited  # not the 1 s lease: the cancelled close released the leg
    assert [m["t_start"] for m in msgs] == [2.0, 3.0]
    assert all(w["lost_s"] == 0 and w["pad_s"] == 0 for m in msgs for w in m["windows"])


def test_a_silent_holder_is_taken_over_after_its_lease_and_then_fenced_off(rt, customer):
    async def scenario():
        a = StreamSession(rt, "lease2", "default")
        await feed(a, frames(customer, 0, RATE + 10 * FRAME))
        b = StreamSession(rt, "lease2", "default")
        t0 = asyncio.get_running_loop().time()
        out = await feed(b, frames(customer, RATE + 10 * FRAME, 3 * RATE))  # a never closes: its worker died
        waited = asyncio.get_running_loop().time() - t0
        with pytest.raises(ConflictError, match="being streamed by another connection"):
            await feed(a, frames(customer, RATE + 10 * FRAME, 2 * RATE))
        await b.close()
        return out, waited

    out, waited = asyncio.run(scenario())
    assert 0.5 < waited < 5, waited  # the lease (1 s here) ran out, then b took the leg over
    # b started from the last saved state (window 0 committed): the 0.2 s a buffered is lost, reported as loss
    assert [m["t_start"] for m in out] == [1.0, 2.0]


def test_a_short_post_for_a_leg_a_connection_holds_is_refused(rt, customer):
    fmt = ChunkFormat(sample_rate=RATE, encoding="pcm_s16le", role="customer")

    async def scenario():
        a = StreamSession(rt, "lease3", "default")
        await feed(a, frames(customer, 0, RATE + FRAME))
        frame = decode_frame(rt, customer[RATE + FRAME:RATE + 2 * FRAME].tobytes(), fmt)
        with pytest.raises(ConflictError, match="customer leg .* is being streamed"):
            await post_frames(rt, "lease3", frame, 51, tenant="default", agent_id=None)
        await a.close()
        return await post_frames(rt, "lease3", frame, 51, tenant="default", agent_id=None)

    after = asyncio.run(scenario())
    assert after["buffered_s"] == {"customer": pytest.approx(0.04)}
