"""AlertHub: long-poll waiters wake on notify; a cancelled waiter never holds up the chunk path's notify."""
import asyncio
import time

from app.runtime import AlertHub


def test_waiters_wake_on_notify_and_time_out_without_one():
    async def main():
        hub = AlertHub()
        t0 = time.monotonic()
        await hub.wait(0.05)
        assert time.monotonic() - t0 >= 0.04  # nothing stored: the wait runs out
        waiters = [asyncio.create_task(hub.wait(5)) for _ in range(3)]
        await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await hub.notify()
        await asyncio.wait_for(asyncio.gather(*waiters), 1)
        assert time.monotonic() - t0 < 1 and hub.version == 1

    asyncio.run(main())


def test_a_waiter_cancelled_again_and_again_leaves_nothing_held():
    async def main():
        hub = AlertHub()
        w = asyncio.create_task(hub.wait(5))
        await asyncio.sleep(0.01)
        for _ in range(5):  # a client gone mid long-poll: the cancellation comes again at every await
            w.cancel()
            await asyncio.sleep(0)
        await asyncio.wait_for(hub.notify(), 1)
        later = asyncio.create_task(hub.wait(5))
        await asyncio.sleep(0.01)
        await asyncio.wait_for(hub.notify(), 1)
        await asyncio.wait_for(later, 1)

    asyncio.run(main())
