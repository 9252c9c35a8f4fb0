"""The transform pool: bounded, first come first served, work that finishes an answer
before work that starts one, failures and cancellations handed back."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from promptpix.transforms.errors import PoolFull
from promptpix.transforms.executor import TransformPool


def test_finishing_work_overtakes_waiting_starts_and_order_holds_within_each() -> None:
    async def run() -> list[str]:
        pool = TransformPool(1)
        gate = threading.Event()
        done: list[str] = []

        def job(name: str) -> str:
            if name == "blocker":
                gate.wait(5)
            done.append(name)
            return name

        blocker = asyncio.ensure_future(pool.run(job, "blocker"))
        await asyncio.sleep(0.05)  # the one thread is busy: everything below queues
        waiting = [
            asyncio.ensure_future(pool.run(job, "start-1", later=True)),
            asyncio.ensure_future(pool.run(job, "start-2", later=True)),
            asyncio.ensure_future(pool.run(job, "finish-1")),
            asyncio.ensure_future(pool.run(job, "finish-2")),
        ]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(blocker, *waiting)
        assert results == ["blocker", "start-1", "start-2", "finish-1", "finish-2"]
        pool.close()
        return done

    assert asyncio.run(run()) == ["blocker", "finish-1", "finish-2", "start-1", "start-2"]


def test_a_full_queue_is_refused_at_once_but_paid_work_is_not() -> None:
    async def run() -> None:
        pool = TransformPool(1, 1)
        gate = threading.Event()
        running = [asyncio.ensure_future(pool.run(gate.wait, 5)) for _ in range(2)]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        with pytest.raises(PoolFull):
            await pool.run(time.sleep, 0)
        assert time.perf_counter() - started < 0.05
        paid = asyncio.ensure_future(pool.run(lambda: "decoded", unbounded=True))
        gate.set()
        await asyncio.gather(*running)
        assert await paid == "decoded"
        assert pool.pending == 0
        pool.close()

    asyncio.run(run())


def test_errors_come_back_and_a_caller_that_gives_up_skips_the_work() -> None:
    async def run() -> None:
        pool = TransformPool(1)
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        gate = threading.Event()
        ran: list[int] = []
        blocker = asyncio.ensure_future(pool.run(gate.wait, 5))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(ran.append, 1), 0.05)
        gate.set()
        await blocker
        assert await pool.run(ran.append, 2) is None
        assert ran == [2]  # the job whose caller timed out never ran
        pool.close()

    asyncio.run(run())


def test_close_stops_the_threads_and_fails_what_still_waits() -> None:
    async def run() -> None:
        pool = TransformPool(1)
        gate = threading.Event()
        blocker = asyncio.ensure_future(pool.run(gate.wait, 5))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(pool.run(lambda: "never"))
        await asyncio.sleep(0.01)
        threads = list(pool._workers)  # its own threads, whatever else runs
        closer = asyncio.get_running_loop().run_in_executor(None, pool.close)
        await asyncio.sleep(0.05)
        gate.set()
        await closer
        assert await blocker is True
        with pytest.raises(PoolFull):
            await queued
        assert threads and not any(t.is_alive() for t in threads)
        with pytest.raises(PoolFull):  # a closed pool refuses at once, it never hangs
            await asyncio.wait_for(pool.run(lambda: "after"), 1)

    asyncio.run(run())
