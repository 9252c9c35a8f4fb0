"""A dedicated, bounded pool for libvips work: off the event loop, never an unbounded pile.

Work that finishes an answer (a variant's render, the decode it needs) goes before work
that starts one (analysing a new original): in a burst of misses each answer leaves as
soon as its own variant is made, instead of every answer waiting for every analysis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import PoolFull

T = TypeVar("T")
FINISH, START = 0, 1  # priorities: lower runs first
_STOP = 2


class TransformPool:
    """`threads` images at once; up to `queue` more wait; past that a call fails at once."""

    def __init__(self, threads: int | None = None, queue_size: int | None = None) -> None:
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.queue = queue_size if queue_size is not None else 32 * self.threads
        self.pending = 0
        self._jobs: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()  # first come, first served within a priority
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    async def run(
        self, fn: Callable[..., T], *args: object, unbounded: bool = False, later: bool = False
    ) -> T:
        """`unbounded` work (decoding an answer already paid for) is never turned away;
        `later` work waits while work that finishes an answer is queued."""
        if self._closed:
            raise PoolFull("the transform pool has shut down")
        if not unbounded and self.pending >= self.threads + self.queue:
            raise PoolFull(f"{self.pending} transforms running or queued")
        self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.pending += 1
        try:
            self._jobs.put((START if later else FINISH, next(self._order), (fn, args, future)))
            return await future
        finally:
            self.pending -= 1

    def _start(self) -> None:
        if len(self._workers) == self.threads:
            return
        with self._lock:
            while len(self._workers) < self.threads and not self._closed:
                worker = threading.Thread(
                    target=self._work, name=f"promptpix-vips_{len(self._workers)}", daemon=True
                )
                worker.start()
                self._workers.append(worker)

    def _work(self) -> None:
        while True:
            _, _, job = self._jobs.get()
            if job is None:
                return
            fn, args, future = job
            if future.cancelled():  # the caller gave up: skip the work
                continue
            if self._closed:
                _deliver(future, None, PoolFull("the transform pool has shut down"))
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                _deliver(future, None, exc)
            else:
                _deliver(future, result, None)

    def close(self) -> None:
        """Stop the threads once what runs is done; what still waits is dropped."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for _ in workers:
            self._jobs.put((_STOP, next(self._order), None))
        for worker in workers:
            worker.join()


_Job = tuple[Callable[..., Any], tuple[object, ...], "asyncio.Future[Any]"]


def _deliver(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    def settle() -> None:
        if future.done():  # cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
        future.get_loop().call_soon_threadsafe(settle)
