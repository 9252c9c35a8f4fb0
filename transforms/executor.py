"""A dedicated, bounded pool for libvips work: off the event loop, never an unbounded pile."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .errors import PoolFull

T = TypeVar("T")


class TransformPool:
    """`threads` images at once; up to `queue` more wait; past that a call fails at once."""

    def __init__(self, threads: int | None = None, queue: int | None = None) -> None:
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.queue = queue if queue is not None else 32 * self.threads
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="promptpix-vips")
        self.pending = 0

    async def run(self, fn: Callable[..., T], *args: object, unbounded: bool = False) -> T:
        """`unbounded` work (decoding an answer already paid for) is never turned away."""
        if not unbounded and self.pending >= self.threads + self.queue:
            raise PoolFull(f"{self.pending} transforms running or queued")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self.pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
