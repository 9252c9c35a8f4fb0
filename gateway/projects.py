"""Projects: the namespaces images live in, and the resolver that finds them by slug.

The resolver keeps what it found in memory, so resolving a project on a hit is a dict
look-up, and polls its source's version: a change made anywhere (another worker, another
replica, the CLI) is seen within `refresh_s`, when everything cached is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from promptpix.cache.control import ControlStore, Project
from promptpix.cache.singleflight import SingleFlight

from .errors import UnknownProject

log = logging.getLogger("promptpix.projects")

REFRESH_S = 1.0  # how often the source's version is asked; a change shows within this
MAX_CACHED = 10_000  # slugs remembered (found or not); past that, all are forgotten


DEMO_SLUG = "demo"


class ProjectSource(Protocol):
    """Where projects live. `version()` changes whenever any project does."""

    async def version(self) -> int: ...

    async def load(self, slug: str) -> Project | None: ...


class StoredProjects:
    """The projects of the control store, and the embedded `demo` when it is on and the
    store has no project of that name."""

    def __init__(self, store: ControlStore, demo: Project | None = None) -> None:
        self.store = store
        self.demo = demo

    async def version(self) -> int:
        return await self.store.version()

    async def load(self, slug: str) -> Project | None:
        try:
            found = await self.store.load(slug)
        except Exception:
            if self.demo is not None and slug == self.demo.slug:  # embedded: needs no database
                return self.demo
            raise
        if found is None and self.demo is not None and slug == self.demo.slug:
            return self.demo
        return found


class Projects:
    """Resolves slugs through a source, cached, refreshed within `refresh_s`."""

    def __init__(self, source: ProjectSource, *, refresh_s: float = REFRESH_S) -> None:
        self.source = source
        self.refresh_s = refresh_s
        self._cached: dict[str, Project | None] = {}
        self._loads: SingleFlight[Project | None] = SingleFlight()
        self._version: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.generation = 0  # raised whenever the cache is dropped: other caches follow it

    def peek(self, slug: str) -> Project | None:
        """The project if it is cached and exists; None means "ask `get`"."""
        return self._cached.get(slug)

    async def get(self, slug: str) -> Project:
        """The project named `slug`, or UnknownProject."""
        if slug in self._cached:
            found = self._cached[slug]
        else:
            found, _ = await self._loads.do(slug, lambda: self._load(slug))
        if found is None:
            raise UnknownProject(f"no project named '{slug[:64]}'")
        return found

    async def _load(self, slug: str) -> Project | None:
        version = self._version
        found = await self.source.load(slug)
        if self._version == version:  # not dropped meanwhile: what was read is current
            if len(self._cached) >= MAX_CACHED:
                self._cached.clear()
            self._cached[slug] = found
        return found

    async def start(self) -> None:
        self._version = await self.source.version()
        self._task = asyncio.create_task(self._poll())

    async def refresh(self) -> None:
        """Drop everything cached if the source changed since last asked."""
        try:
            version = await self.source.version()
        except Exception as exc:  # the source is down: what is cached stays in use
            if not self._failing:
                log.warning("projects cannot be refreshed (%s): the cached ones stay in use", exc)
            self._failing = True
            return
        self._failing = False
        if version != self._version:
            self._version = version
            self._cached.clear()
            self.generation += 1

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
