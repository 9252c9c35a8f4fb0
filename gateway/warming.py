"""Page warming (`/v1/warm`): a page's (or a list's) `/i/` URLs of one project made ahead,
through the live pipeline, each original once and a few at a time; the job's state kept in
the library so that any worker answers its status.

Outcomes, one per URL: `generated` (its original was made by this job), `stored` (it was
already stored: counted as skipped), `failed` (with the error a live request would have
got), `ignored` (another host, another project, not an image URL of this gateway).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import msgspec

from promptpix.cache.control import Project

from .generation import Terms
from .generations import BACKGROUND_WAITS, Generations, error_out, new_id
from .live import PREFIX
from .params import ImageRequest, parse_fields, split_query
from .tiers import MISS

log = logging.getLogger("promptpix.warming")

CONCURRENCY = 4  # originals of one job made at once: a page must not take every generator
SAVE_EVERY_S = 0.5  # the state is rewritten at most this often while the job runs


class WarmItem(msgspec.Struct, omit_defaults=True):
    url: str
    outcome: str  # pending, generated, stored, failed, ignored
    error: dict[str, Any] | None = None


class WarmState(msgspec.Struct):
    """A job as `GET /v1/warm/{id}` answers it. `done` + `failed` + `skipped` reach
    `total` when it is completed; `ignored` URLs are not in `total`."""

    id: str
    status: str  # running, completed
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    ignored: int = 0
    created_at: float = 0.0
    items: list[WarmItem] = msgspec.field(default_factory=list)


@dataclass(slots=True)
class Group:
    """The URLs of one original: the first makes it, the others render from it."""

    items: list[tuple[WarmItem, ImageRequest]] = field(default_factory=list)


@dataclass(slots=True)
class Job:
    project: Project
    state: WarmState
    groups: list[Group]
    terms: Terms
    saved_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def own_bases(request_base: str, public_url: str) -> list[tuple[str, str]]:
    """(host, path prefix) of every base this gateway's URLs start with."""
    out = []
    for base in (public_url, request_base):
        if base:
            parts = urlsplit(base)
            out.append((parts.netloc.lower(), parts.path.rstrip("/")))
    return out


def own_query(url: str, base: str, bases: Sequence[tuple[str, str]], slug: str) -> str | None:
    """The query of `url` when it is a live URL of project `slug` on this gateway (relative
    ones are read against `base`), else None."""
    try:
        parts = urlsplit(urljoin(base, url))
    except ValueError:  # a malformed URL (an unclosed IPv6 host): not one of ours
        return None
    if parts.scheme not in ("http", "https"):
        return None
    for host, prefix in bases:
        if parts.netloc.lower() == host and parts.path == f"{prefix}{PREFIX}{slug}":
            return parts.query
    return None


class Warming:
    def __init__(self, generations: Generations) -> None:
        # The JSON API's own pipeline, parse rules, references, terms and public URL.
        self.images = generations.images
        self.library = generations.library
        self.references = generations.references
        self.rules = generations.rules
        self.terms = generations.terms
        self.public_url = generations.public_url
        self._background: set[asyncio.Task[None]] = set()

    async def start(
        self,
        project: Project,
        urls: Sequence[str],
        *,
        base: str,
        peer: str,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> WarmState:
        """Sort the URLs (each parsed as its live request would be), record the job and
        run it in the background."""
        bases = own_bases(base, self.public_url)
        groups: dict[str, Group] = {}
        state = WarmState(id=new_id("warm"), status="running", total=0, created_at=time.time())
        for url in dict.fromkeys(urls):
            query = own_query(url, base, bases, project.slug)
            if query is None:
                state.ignored += 1
                state.items.append(WarmItem(url, "ignored"))
                continue
            state.total += 1
            item = WarmItem(url, "pending")
            state.items.append(item)
            try:
                request = await self._parse(project, query)
            except Exception as exc:  # a URL a live request would refuse fails alone
                self._finish(state, item, "failed", exc)
                continue
            groups.setdefault(request.gen.key, Group()).items.append((item, request))
        # A warm job spends like the page's own requests would, but never answers with the
        # placeholder: a URL that could not be made is reported failed, not stored.
        terms = dataclasses.replace(self.terms(project, peer, headers), stand_in=False)
        job = Job(project, state, list(groups.values()), terms)
        if not job.groups:
            state.status = "completed"
        await self.library.put_warm_job(project.slug, state.id, msgspec.to_builtins(state))
        if job.groups:
            task = asyncio.create_task(self._run(job))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return state

    async def _parse(self, project: Project, query: str) -> ImageRequest:
        request = parse_fields(split_query(query), project, self.rules)
        if "@" not in request.gen.prompt:
            return request
        found = await self.references.resolve(project.slug, request.gen.prompt)
        if not found.keys:
            return request
        return dataclasses.replace(
            request, gen=dataclasses.replace(request.gen, references=found.keys)
        )

    async def status(self, project: str, id: str) -> WarmState | None:
        raw = await self.library.warm_job(project, id)
        return msgspec.convert(raw, WarmState) if raw is not None else None

    async def _run(self, job: Job) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(group: Group) -> None:
            async with gate:
                await self._group(job, group)

        try:
            await asyncio.gather(*(one(g) for g in job.groups))
        finally:
            job.state.status = "completed"
            await self._save(job, final=True)

    async def _group(self, job: Job, group: Group) -> None:
        made = False
        for i, (item, request) in enumerate(group.items):
            try:
                status = await self._variant(job, request)
            except Exception as exc:
                self._finish(job.state, item, "failed", exc)
            else:
                if i == 0:
                    made = status == MISS
                self._finish(job.state, item, "generated" if made else "stored")
            await self._save(job)

    async def _variant(self, job: Job, request: ImageRequest) -> str:
        """The URL's variant as a live request makes it; a generation slower than a request
        may wait is waited for again (nobody is on the connection)."""
        for attempt in range(BACKGROUND_WAITS):
            try:
                _, status = await self.images.variant(
                    request.gen, request.transform, request.variant_key, terms=job.terms
                )
                return status
            except TimeoutError:
                if attempt + 1 == BACKGROUND_WAITS:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _finish(
        state: WarmState, item: WarmItem, outcome: str, exc: BaseException | None = None
    ) -> None:
        item.outcome = outcome
        if outcome == "failed":
            state.failed += 1
            assert exc is not None
            item.error = msgspec.to_builtins(error_out(exc))
        elif outcome == "stored":
            state.skipped += 1
        else:
            state.done += 1

    async def _save(self, job: Job, final: bool = False) -> None:
        """The state, rewritten at most every SAVE_EVERY_S while running, and at the end."""
        async with job.lock:
            now = time.monotonic()
            if not final and now - job.saved_at < SAVE_EVERY_S:
                return
            job.saved_at = now
            try:
                state = msgspec.to_builtins(job.state)
                await self.library.put_warm_job(job.project.slug, job.state.id, state)
            except Exception as exc:  # the images are made; only the report lags
                log.warning("saving warm job %s: %s", job.state.id, exc)

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
