"""The original for a key: from memory, from the store, or generated once across every
worker and replica (single-flight in the process, a lease between processes). A new
original's store write runs on while its first variant is made, then releases the lease."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import LRUCache

from promptpix.cache.index import IndexWriter, original_row
from promptpix.cache.leases import Leases, acquire
from promptpix.cache.semantic import SemanticCache
from promptpix.cache.singleflight import SingleFlight
from promptpix.cache.store import Store, StoredOriginal, StoreUnavailable
from promptpix.transforms.source import header

from .errors import UnknownAsset
from .generation import FREE, Generation, NewOriginal, Terms, stage
from .metrics import Metrics
from .params import GenerationParams
from .records import generation_row
from .tiers import MISS, PLACEHOLDER, TRANSFORM, Original, Tiers

log = logging.getLogger("promptpix.originals")

META_ENTRIES = 50_000
LEASE_WAIT_S = 600.0  # after this long waiting for another holder, go ahead without a lease


class Originals:
    def __init__(
        self,
        tiers: Tiers,
        store: Store,
        index: IndexWriter,
        leases: Leases,
        generation: Generation,
        metrics: Metrics,
        *,
        max_source_pixels: int,
        lookup_index: bool = False,
        semantic: SemanticCache | None = None,
        lease_wait_s: float = LEASE_WAIT_S,
    ) -> None:
        self.tiers = tiers
        self.store = store
        self.index = index
        self.leases = leases
        self.generation = generation
        self.metrics = metrics
        self.max_source_pixels = max_source_pixels
        # A remote store with a database index: a read for an original the index does not
        # list waits for the lease (the read after it decides), instead of asking the store.
        self.lookup_index = lookup_index
        self.semantic = semantic
        self.lease_wait_s = lease_wait_s
        self.flight: SingleFlight[tuple[Original, str]] = SingleFlight()
        # What the API answers with about an original (generator, prompt sent, focal point,
        # timings): kept apart from the bytes, so a repeat needs neither memory nor a read.
        self.metas: LRUCache[str, dict[str, Any]] = LRUCache(META_ENTRIES)
        self._storing: set[asyncio.Future[None]] = set()

    async def get(
        self, gen: GenerationParams, timings: dict[str, float], terms: Terms = FREE
    ) -> tuple[Original, str]:
        """The original and how it was found: TRANSFORM (stored), MISS (generated now) or
        PLACEHOLDER (the offline stand-in, for generators that failed: kept nowhere)."""
        key = gen.key
        hot = self.tiers.originals.get(key)
        if hot is not None:
            return hot, TRANSFORM
        found, _ = await self.flight.do(
            key, lambda: self._load_or_generate(gen, key, timings, terms)
        )
        return found

    async def _load_or_generate(
        self, gen: GenerationParams, key: str, timings: dict[str, float], terms: Terms
    ) -> tuple[Original, str]:
        started = time.perf_counter()
        stored = None
        listed = await self.index.known(key) if self.lookup_index else None
        if listed is not False:
            # An original the index lists is not generated again (paid twice, and answered
            # with other bytes than the stored ones) because the store cannot be read now.
            stored = await self.read(key, or_fail=listed is True)
        stage(self.metrics, timings, "store_read", started)
        if stored is not None:
            return self.from_store(stored, gen.ratio), TRANSFORM
        # Other processes and replicas: one lease per key; a waiter that sees the original
        # appear in the store takes it instead of generating again.
        started = time.perf_counter()

        async def stored_elsewhere() -> bool:  # polled while waiting: a HEAD, not a download
            try:
                return await self.store.head(key)
            except StoreUnavailable:
                return False

        lease = await acquire(self.leases, key, stored_elsewhere, max_wait_s=self.lease_wait_s)
        stage(self.metrics, timings, "lease", started)
        if lease is None:
            stored = await self.read(key)
            if stored is None:
                raise StoreUnavailable(f"{key} was stored by another process but cannot be read")
            return self.from_store(stored, gen.ratio), MISS
        handed_over = False  # once generated, the store write releases the lease
        try:
            stored = await self.read(key)  # stored between our read and our lease?
            if stored is not None:
                return self.from_store(stored, gen.ratio), TRANSFORM
            new = await self._generate(gen, key, timings, terms)
            if new.stand_in:  # not the URL's image: not stored, asked for again next time
                return self._original(gen, key, new, None), PLACEHOLDER
            original = self._begin_store(gen, key, new, timings, lease.release)
            handed_over = True
        finally:
            if not handed_over:
                await lease.release()
        analysed = new.analysed
        # The variant asked for may start from the pixels the analysis decoded.
        self.tiers.pixels.put(Tiers.pixels_name(key, analysed.scale), analysed.source)
        self.tiers.originals.put(key, original)
        return original, MISS

    async def _generate(
        self, gen: GenerationParams, key: str, timings: dict[str, float], terms: Terms
    ) -> NewOriginal:
        """Generate, charged to the project: reserved first (a refusal is a 429 and no call
        to any generator), settled at the answering generator's price, or given back."""
        charge = terms.charge
        candidates = self.generation.candidates(gen, terms)  # none that can: a 422, no charge
        references = await self._references(gen)
        if charge is None:
            return await self.generation.generate(gen, key, timings, terms, references)
        started = time.perf_counter()
        held = await charge.reserve(candidates)
        stage(self.metrics, timings, "quota", started)
        try:
            new = await self.generation.generate(gen, key, timings, terms, references)
        except BaseException:
            await charge.release(held)
            raise
        if new.stand_in:
            await charge.release(held)
        else:
            await charge.settle(held, str(new.meta["generator"]))
        return new

    async def _references(self, gen: GenerationParams) -> tuple[bytes, ...]:
        """The reference images' bytes: uploaded assets and a flow's originals, all in the
        store under their keys (a flow's newest are still in memory)."""
        out = []
        for key in gen.references:
            hot = self.tiers.originals.get(key)
            if hot is not None:
                out.append(hot.data)
                continue
            stored = await self.read(key, or_fail=True)
            if stored is None:
                raise UnknownAsset(f"the reference image {key} is not stored", param="references")
            out.append(stored.data)
        return tuple(out)

    async def meta(self, key: str) -> dict[str, Any] | None:
        """An original's stored metadata: from memory, else read from the store."""
        found = self.metas.get(key)
        if found is not None:
            return found
        stored = await self.read(key)
        if stored is None:
            return None
        self.metas[key] = stored.meta
        return stored.meta

    def _original(
        self,
        gen: GenerationParams,
        key: str,
        new: NewOriginal,
        stored: asyncio.Future[None] | None,
    ) -> Original:
        """A new original; `stored`: its store write, which every answer waits for."""
        head, focal = new.analysed.header, new.meta["focal_point"]
        self.metas[key] = new.meta
        return Original(
            key,
            new.data,
            (head.width, head.height),
            head.shrinkable,
            (float(focal["x"]), float(focal["y"])),
            gen.ratio,
            str(new.meta["generator"]),
            new.meta,
            stored,
        )

    async def read(self, key: str, or_fail: bool = False) -> StoredOriginal | None:
        """The stored original, or None if absent or (unless `or_fail`) unreadable."""
        try:
            return await self.store.get(key)
        except StoreUnavailable as exc:
            self.metrics.store_errors.inc("get")
            log.warning("store read failed for %s: %s", key, exc)
            if or_fail:
                raise
            return None

    def from_store(self, stored: StoredOriginal, ratio: tuple[int, int]) -> Original:
        """An original read from the store, kept hot; its pixels wait for a variant."""
        head = header(stored.data, self.max_source_pixels)
        meta = stored.meta
        focal = meta.get("focal_point") or {"x": 0.5, "y": 0.5}
        native = meta.get("native_ratio") or ratio
        original = Original(
            stored.key,
            stored.data,
            (head.width, head.height),
            head.shrinkable,
            (float(focal["x"]), float(focal["y"])),
            (int(native[0]), int(native[1])),
            str(meta.get("generator", "unknown")),
            meta,
        )
        self.tiers.originals.put(stored.key, original)
        self.metas[stored.key] = meta
        return original

    def _begin_store(
        self,
        gen: GenerationParams,
        key: str,
        new: NewOriginal,
        timings: dict[str, float],
        release: Callable[[], Awaitable[None]],
    ) -> Original:
        """Start the store write; answers wait for it (the Original's `stored`), and the task
        goes on to release the lease and index the original."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        storing = asyncio.ensure_future(
            self._store(gen, key, new.data, new.meta, timings, release, written)
        )
        self._storing.add(storing)
        storing.add_done_callback(self._storing.discard)
        return self._original(gen, key, new, written)

    async def _store(
        self,
        gen: GenerationParams,
        key: str,
        data: bytes,
        meta: dict[str, Any],
        timings: dict[str, float],
        release: Callable[[], Awaitable[None]],
        written: asyncio.Future[None],
    ) -> None:
        started = time.perf_counter()
        try:
            try:
                await self.store.put(key, data, meta)
            except StoreUnavailable as exc:  # the spool keeps it, when there is one
                self.metrics.store_errors.inc("put")
                log.error("store write failed for %s (served from memory): %s", key, exc)
            stage(self.metrics, timings, "store", started)
        except asyncio.CancelledError:
            written.cancel()
            raise
        except BaseException as exc:
            written.set_exception(exc)
            raise
        else:
            written.set_result(None)
        finally:
            await release()
        if self.semantic is not None:  # embedded after the answer, off the event loop
            self.semantic.remember(key, gen.prompt, gen.project, gen.ratio)
        self.index.add(original_row(meta))
        timing = {k: round(v, 1) for k, v in timings.items()}
        attempted = list(meta["generators_attempted"])
        self.index.add(
            generation_row(
                key, gen.project, str(meta["generator"]), "success", attempted, timing, None
            )
        )

    async def drain(self) -> None:
        """Wait for the generations and store writes under way (at shutdown: nothing
        generated is lost)."""
        await self.flight.drain()
        if self._storing:
            await asyncio.gather(*self._storing, return_exceptions=True)
