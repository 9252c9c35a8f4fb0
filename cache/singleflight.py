"""Single-flight: concurrent calls for one key share one run and its result.

The run is its own task, so a caller that gives up (timeout, disconnect) never cancels the
work that others wait on, and the result is still stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}
        self.runs = 0  # how many times a function really ran

    def __len__(self) -> int:
        return len(self._inflight)

    def running(self, key: str) -> bool:
        return key in self._inflight

    async def do(
        self, key: str, fn: Callable[[], Awaitable[T]], timeout: float | None = None
    ) -> tuple[T, bool]:
        """Run `fn` once per key at a time; answers (result, whether this call ran it)."""
        fut = self._inflight.get(key)
        leader = fut is None
        if fut is None:
            self.runs += 1
            fut = asyncio.ensure_future(fn())
            self._inflight[key] = fut
            fut.add_done_callback(lambda f: self._done(key, f))
        if timeout is None:
            return await asyncio.shield(fut), leader
        return await asyncio.wait_for(asyncio.shield(fut), timeout), leader

    def _done(self, key: str, fut: asyncio.Future[T]) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        if not fut.cancelled():
            fut.exception()  # mark as retrieved: a failure nobody awaited is not an error

    async def drain(self) -> None:
        """Wait for every run under way (used at shutdown so nothing paid for is lost)."""
        pending = list(self._inflight.values())
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
