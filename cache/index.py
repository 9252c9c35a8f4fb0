"""The index: originals, variants and generations as rows, for history and rebuilds.

Writes go through a queue that a background task drains in batches, retrying with backoff,
so serving never waits on the database and nothing is dropped while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("promptpix.index")

LOOKUP_TIMEOUT_S = 1.0  # a lookup slower than this is not worth waiting for
LOOKUP_OFF_S = 5.0  # after a failed lookup, reads go to the store directly this long


@dataclass(frozen=True, slots=True)
class Row:
    table: str  # "originals", "variants" or "generations"
    values: dict[str, Any] = field(default_factory=dict)


class IndexBackend(Protocol):
    kind: str

    async def start(self) -> None: ...

    async def write(self, rows: Sequence[Row]) -> None: ...

    async def count(self, table: str) -> int: ...

    async def check(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


def original_row(meta: dict[str, Any]) -> Row:
    focal = meta.get("focal_point") or {}
    return Row(
        "originals",
        {
            "key": meta["key"],
            "project": meta.get("project", ""),
            "prompt": meta.get("prompt", ""),
            "params": meta.get("params", {}),
            "generator": meta.get("generator", ""),
            "model": meta.get("model", ""),
            "content_type": meta.get("content_type", ""),
            "width": int(meta.get("width", 0)),
            "height": int(meta.get("height", 0)),
            "bytes": int(meta.get("bytes", 0)),
            "focal_x": float(focal.get("x", 0.5)),
            "focal_y": float(focal.get("y", 0.5)),
            "meta": meta,
            "created_at": float(meta.get("created_at", 0.0)),
        },
    )


class IndexWriter:
    """Queues rows and drains them into the backend; at most `limit` rows wait in memory."""

    def __init__(
        self,
        backend: IndexBackend,
        limit: int = 100_000,
        batch: int = 500,
        linger_s: float = 0.2,
        *,
        lookup: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.backend = backend
        self.lookup = lookup  # whether the index lists an original; None: no lookups
        self.limit = limit
        self.batch = batch
        self.linger_s = linger_s  # rows that arrive meanwhile share one write
        self.queue: deque[Row] = deque()
        self.dropped = 0
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lookups_off_until = 0.0

    async def start(self) -> None:
        try:
            await self.backend.start()
        except Exception as exc:  # a database that is down at start is caught up later
            self.last_error = str(exc)[:300]
            log.warning("index not ready at start (%s); writes will queue", exc)
        self._task = asyncio.create_task(self._drain())

    def add(self, row: Row) -> None:
        if len(self.queue) >= self.limit:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(row)
        self._wake.set()

    async def _drain(self) -> None:
        delay = 0.2
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.linger_s)
            self._wake.clear()
            while self.queue:
                rows = [self.queue[i] for i in range(min(self.batch, len(self.queue)))]
                try:
                    await self.backend.write(rows)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.last_error = str(exc)[:300]
                    log.warning("index write failed (%d queued): %s", len(self.queue), exc)
                    if await self._reachable():
                        # The database answers, so a row itself is refused: write the rows
                        # one by one and drop only those it refuses, never the whole queue.
                        await self._write_each(rows)
                        continue
                    await asyncio.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 10.0)
                    continue
                for _ in rows:
                    self.queue.popleft()
                self.last_error = None
                delay = 0.2

    async def _reachable(self) -> bool:
        try:
            return (await self.backend.check()).get("status") == "ok"
        except Exception:
            return False

    async def _write_each(self, rows: list[Row]) -> None:
        for row in rows:
            try:
                await self.backend.write([row])
            except Exception as exc:
                if not await self._reachable():
                    return  # down after all: what is left stays queued
                self.dropped += 1
                log.error("index refused a %s row, dropped: %s", row.table, exc)
            self.queue.popleft()
        self.last_error = None

    async def known(self, key: str) -> bool | None:
        """Whether the index lists an original, as a hint: its rows are written a little
        after the store, so False means "most likely not stored", never "not stored". None
        without lookups, or when the backend did not answer (then not asked for a while)."""
        now = asyncio.get_running_loop().time()
        if self.lookup is None or now < self._lookups_off_until:
            return None
        try:
            return bool(await asyncio.wait_for(self.lookup(key), LOOKUP_TIMEOUT_S))
        except Exception as exc:
            if now >= self._lookups_off_until:  # once for the asks that failed together
                log.warning("index lookups off for %.0f s: %s", LOOKUP_OFF_S, exc)
            self._lookups_off_until = now + LOOKUP_OFF_S
            return None

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty (or the timeout passes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.queue and loop.time() < deadline:
            self._wake.set()
            await asyncio.sleep(0.02)
        return not self.queue

    async def check(self) -> dict[str, Any]:
        state = await self.backend.check()
        state["queued"] = len(self.queue)
        if self.last_error and state.get("status") == "ok":
            state["status"] = "degraded"
        if self.last_error:
            state["last_error"] = self.last_error
        return state

    async def close(self) -> None:
        await self.flush(timeout=3.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.backend.close()
