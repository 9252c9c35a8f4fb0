"""What stands in front of one generator: a fair queue with concurrency and per-minute limits,
and a circuit breaker.

A burst of misses waits its turn here (first come, first served) instead of reaching the
provider all at once and earning 429s. The queue is bounded: past `max_queue` waiters a
request is turned away at once, and the chain moves on to the next generator.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class QueueFull(Exception):
    pass


class FairLimiter:
    """At most `limit` holders; waiters are served strictly in arrival order."""

    def __init__(self, limit: int, max_queue: int) -> None:
        self.limit = max(1, limit)
        self.max_queue = max_queue
        self.active = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return sum(1 for w in self.waiters if not w.done())

    async def acquire(self) -> None:
        if self.active < self.limit and not self.waiters:
            self.active += 1
            return
        if self.queued >= self.max_queue:
            raise QueueFull(f"{self.queued} requests already wait")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we gave up: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self.waiters.remove(waiter)

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the next waiter directly
                return
        self.active -= 1


class RateLimiter:
    """At most `per_minute` starts in any 60-second window; reservations are made in arrival
    order, so the waits are fair."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        # A call leaves a little after its reserved time (the event loop, the client): keep
        # that much clear of the provider's window.
        self.margin_s = min(0.25, window_s * 0.05)
        self.starts: collections.deque[float] = collections.deque()

    def reserve(self) -> float:
        """The monotonic time at which this caller may start (now or later)."""
        now = time.monotonic()
        if self.per_minute <= 0:
            return now
        while self.starts and self.starts[0] <= now - self.window_s:
            self.starts.popleft()
        at = now
        if len(self.starts) >= self.per_minute:
            at = max(now, self.starts[-self.per_minute] + self.window_s + self.margin_s)
        self.starts.append(at)
        return at

    async def wait(self) -> float:
        at = self.reserve()
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return max(0.0, delay)


@dataclass(slots=True)
class Breaker:
    """Opens after `failures` consecutive failures; after `cooldown_s` one probe is let through
    (half-open): its success closes the circuit, its failure opens it again."""

    failures: int = 5
    cooldown_s: float = 30.0
    consecutive: int = 0
    opened_at: float = 0.0
    probing: bool = False
    state: str = CLOSED

    def current(self) -> str:
        if self.state == OPEN and time.monotonic() - self.opened_at >= self.cooldown_s:
            self.state = HALF_OPEN
            self.probing = False
        return self.state

    def allow(self) -> bool:
        state = self.current()
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.consecutive = 0
        self.state = CLOSED
        self.probing = False

    def failure(self) -> None:
        self.consecutive += 1
        if self.state == HALF_OPEN or self.consecutive >= self.failures:
            self.state = OPEN
            self.opened_at = time.monotonic()
            self.probing = False

    def release_probe(self) -> None:
        """A probe that ended without a verdict (a refusal) lets the next one through."""
        self.probing = False


class Governor:
    def __init__(self, concurrency: int, per_minute: int, max_queue: int) -> None:
        self.limiter = FairLimiter(concurrency, max_queue)
        self.rate = RateLimiter(per_minute)
        self.blocked_until = 0.0  # a provider's own "retry after" applies to every caller

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one call slot; yields how long the caller waited, in ms."""
        started = time.monotonic()
        await self.limiter.acquire()
        try:
            await self.rate.wait()
            pause = self.blocked_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            yield (time.monotonic() - started) * 1000
        finally:
            self.limiter.release()
