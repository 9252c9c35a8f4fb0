"""A durable local spool in front of a remote store: nothing generated is lost in an outage.

A write the remote store refuses lands in the spool (a file store on local disk) and is
uploaded by a background task with exponential backoff once the store answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from .filestore import FileStore
from .store import Store, StoredOriginal, StoreUnavailable, StoreUnreachable

log = logging.getLogger("promptpix.spool")
T = TypeVar("T")


class SpooledStore:
    def __init__(
        self,
        primary: Store,
        spool: FileStore,
        *,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        breaker_s: float = 1.0,
    ) -> None:
        self.primary = primary
        self.spool = spool
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.pending: set[str] = set()
        self.uploaded = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # After the store fails to answer at all, requests skip it for `breaker_s` instead
        # of each waiting out connection retries; the uploader keeps probing.
        self.breaker_s = breaker_s
        self._skip_until = 0.0
        self._store_down = False  # the uploader waits for the store (not for a bad original)

    async def metadata(self) -> AsyncIterator[dict[str, Any]]:
        """The primary store's originals, then those only the spool holds."""
        seen: set[str] = set()
        async for meta in self.primary.metadata():
            seen.add(str(meta.get("key", "")))
            yield meta
        async for meta in self.spool.metadata():
            if meta.get("key") not in seen:
                yield meta

    async def start(self) -> None:
        """Pick up what an earlier run left in the spool."""
        self.pending.update(await asyncio.to_thread(self.spool.keys))
        if self.pending:
            log.info("%d spooled originals to upload", len(self.pending))
            self._kick()

    async def get(self, key: str) -> StoredOriginal | None:
        if key in self.pending:
            found = await self.spool.get(key)
            if found is not None:
                return found
        try:
            found = await self._primary(self.primary.get(key))
        except StoreUnavailable:
            found = await self.spool.get(key)
            if found is not None:
                return found
            raise
        return found

    async def head(self, key: str) -> bool:
        if key in self.pending and await self.spool.head(key):
            return True
        try:
            return bool(await self._primary(self.primary.head(key)))
        except StoreUnavailable:
            if await self.spool.head(key):
                return True
            raise

    async def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        try:
            await self._primary(self.primary.put(key, data, meta))
            return
        except StoreUnavailable as exc:
            self.last_error = str(exc)[:300]
            log.warning("store unavailable, spooling %s: %s", key, exc)
        await self.spool.put(key, data, meta)  # raises only if the local disk fails too
        self.pending.add(key)
        self._kick()

    async def _primary(self, op: Coroutine[Any, Any, T]) -> T:
        if time.monotonic() < self._skip_until:
            op.close()
            raise StoreUnreachable("the object store did not answer a moment ago")
        try:
            result = await op
        except StoreUnreachable:
            self._skip_until = time.monotonic() + self.breaker_s
            raise
        self._alive()
        return result

    def _alive(self) -> None:
        """The store just answered: an upload waiting out its backoff starts now."""
        self._skip_until = 0.0
        if self.pending and self._store_down:
            self._wake.set()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._upload())

    async def _upload(self) -> None:
        delay = self.retry_base_s
        while self.pending:
            failed = self._store_down = False
            for key in sorted(self.pending):
                try:
                    if await self._upload_one(key):
                        delay = self.retry_base_s
                except StoreUnavailable as exc:  # the store is down: wait, then start over
                    self.last_error = str(exc)[:300]
                    failed = self._store_down = True
                    break
                except Exception as exc:  # this one original: kept, tried again next round
                    log.error("spooled original %s not uploaded: %r", key, exc)
                    self.last_error = f"{key}: {exc!r}"[:300]
                    failed = True
            if not failed:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay * (0.5 + random.random()))
            delay = min(delay * 2, self.retry_max_s)
        self.last_error = None

    async def _upload_one(self, key: str) -> bool:
        """Move one spooled original to the store; False if the spool no longer has it."""
        item = await self.spool.get(key)
        if item is None:
            self.pending.discard(key)
            return False
        await self.primary.put(key, item.data, item.meta)
        self._skip_until = 0.0
        await self.spool.delete(key)
        self.pending.discard(key)
        self.uploaded += 1
        return True

    async def flush(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pending and loop.time() < deadline:
            self._kick()
            await asyncio.sleep(0.05)
        return not self.pending

    async def check(self) -> dict[str, Any]:
        state = await self.primary.check()
        state["spooled"] = len(self.pending)
        if state.get("status") == "ok":
            self._alive()
        if state.get("status") == "down":
            state["status"] = "degraded"  # still answering: writes go to the spool
            state["note"] = "object store unreachable; originals are kept in the local spool"
        elif self.pending:
            state["status"] = "degraded"
        if self.pending and self.last_error:
            state["upload_error"] = self.last_error
        return state

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.primary.close()
