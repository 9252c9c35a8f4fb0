"""Asks that arrive together share one call: a list of keys in, one answer a key out; and
writes that arrive together share one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class KeyBatch:
    """Calls `run` with every key asked for since its last call began: one call at a time,
    each answering all the asks it took. A True answer whose asker gave up meanwhile goes to
    `abandoned`."""

    def __init__(
        self,
        run: Callable[[list[str]], Awaitable[list[bool]]],
        abandoned: Callable[[str], None] | None = None,
    ) -> None:
        self._run = run
        self._abandoned = abandoned
        self._waiting: list[tuple[str, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    async def ask(self, key: str) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                answers = await self._run([k for k, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (key, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
                elif answer and self._abandoned is not None:
                    self._abandoned(key)


class GroupWrite(Generic[T]):
    """Writes that arrive together share one call (one transaction): each `add` returns once
    the call that took its item has succeeded, or raises what it raised."""

    def __init__(self, run: Callable[[list[T]], Awaitable[None]]) -> None:
        self._run = run
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await asyncio.shield(future)  # a caller that goes away leaves its item written

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._run([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
