"""The image pipeline behind `/i/`: key → memory tiers → store → generate → transform.

Every stage that costs money or CPU runs once per key at a time (single-flight), and its
own task finishes (and stores) even when the request that started it goes away.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from cache.index import IndexWriter, Row, original_row
from cache.leases import Leases, acquire
from cache.memory import MemoryTier
from cache.singleflight import SingleFlight
from cache.store import Store, StoredOriginal, StoreUnavailable
from generators.base import AllGeneratorsFailed, GeneratedImage, GenerationRequest, Refused
from generators.chain import Chain
from generators.prompts import prepare
from generators.ratios import NATIVE_SIZES, ratio_text
from transforms.executor import TransformPool
from transforms.focal import find_focal_point
from transforms.pipeline import Rendered, render
from transforms.source import Source, decode

from .metrics import Metrics
from .params import GenerationParams, TransformParams

log = logging.getLogger("promptpix.images")

MISS, TRANSFORM, HIT = "MISS", "TRANSFORM", "HIT"


@dataclass(frozen=True, slots=True)
class Original:
    key: str
    source: Source
    focal: tuple[float, float]
    native: tuple[int, int]
    generator: str
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    original_key: str
    data: bytes
    content_type: str
    width: int
    height: int
    generator: str
    status: str  # MISS or TRANSFORM: how it was first made
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImageSettings:
    max_dimension: int
    max_source_pixels: int
    generation_timeout_s: float
    memory_cache_bytes: int
    source_cache_bytes: int
    lease_wait_s: float = 600.0


class ImageService:
    def __init__(
        self,
        settings: ImageSettings,
        store: Store,
        chain: Chain,
        pool: TransformPool,
        metrics: Metrics,
        index: IndexWriter,
        leases: Leases,
    ) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self.leases = leases
        self.chain = chain
        self.pool = pool
        self.metrics = metrics
        self.variants: MemoryTier[Variant] = MemoryTier(
            settings.memory_cache_bytes, lambda v: len(v.data) + 512
        )
        self.sources: MemoryTier[Original] = MemoryTier(
            settings.source_cache_bytes, lambda o: o.source.nbytes + 1024
        )
        self.original_flight: SingleFlight[tuple[Original, str]] = SingleFlight()
        self.variant_flight: SingleFlight[Variant] = SingleFlight()

    def cached(self, variant_key: str) -> Variant | None:
        return self.variants.get(variant_key)

    async def variant(
        self, gen: GenerationParams, transform: TransformParams, variant_key: str
    ) -> tuple[Variant, str]:
        """The variant and its cache status (HIT, TRANSFORM or MISS)."""
        found = self.variants.get(variant_key)
        if found is not None:
            return found, HIT
        variant, _ = await self.variant_flight.do(
            variant_key,
            lambda: self._make_variant(gen, transform, variant_key),
            timeout=self.settings.generation_timeout_s,
        )
        return variant, variant.status

    async def _make_variant(
        self, gen: GenerationParams, transform: TransformParams, variant_key: str
    ) -> Variant:
        timings: dict[str, float] = {}
        original, status = await self.original(gen, timings)
        started = time.perf_counter()
        out: Rendered = await self.pool.run(
            render,
            original.source,
            original.focal,
            original.native,
            transform,
            self.settings.max_dimension,
        )
        self._stage(timings, "transform", started)
        variant = Variant(
            key=variant_key,
            original_key=original.key,
            data=out.data,
            content_type=out.content_type,
            width=out.width,
            height=out.height,
            generator=original.generator,
            status=status,
            timings=timings,
        )
        self.variants.put(variant_key, variant)
        self.index.add(
            Row(
                "variants",
                {
                    "key": variant_key,
                    "original_key": original.key,
                    "params": transform_summary(transform),
                    "content_type": out.content_type,
                    "width": out.width,
                    "height": out.height,
                    "bytes": len(out.data),
                    "created_at": time.time(),
                },
            )
        )
        return variant

    async def original(
        self, gen: GenerationParams, timings: dict[str, float]
    ) -> tuple[Original, str]:
        key = gen.key
        hot = self.sources.get(key)
        if hot is not None:
            return hot, TRANSFORM
        (original, status), _ = await self.original_flight.do(
            key, lambda: self._load_or_generate(gen, key, timings)
        )
        return original, status

    async def _load_or_generate(
        self, gen: GenerationParams, key: str, timings: dict[str, float]
    ) -> tuple[Original, str]:
        started = time.perf_counter()
        stored = await self._read(key)
        self._stage(timings, "store_read", started)
        if stored is not None:
            return await self._from_store(stored, gen, timings), TRANSFORM
        # Other processes and replicas: one lease per key; a waiter that sees the original
        # appear in the store takes it instead of generating again.
        started = time.perf_counter()
        found: list[StoredOriginal] = []

        async def stored_elsewhere() -> bool:
            item = await self._read(key)
            if item is not None:
                found.append(item)
            return item is not None

        lease = await acquire(
            self.leases, key, stored_elsewhere, max_wait_s=self.settings.lease_wait_s
        )
        self._stage(timings, "lease", started)
        if lease is None:
            return await self._from_store(found[0], gen, timings), MISS
        try:
            stored = await self._read(key)  # stored between our read and our lease?
            if stored is not None:
                return await self._from_store(stored, gen, timings), TRANSFORM
            original = await self._generate(gen, key, timings)
        finally:
            await lease.release()
        self.sources.put(key, original)
        return original, MISS

    async def _read(self, key: str) -> StoredOriginal | None:
        try:
            return await self.store.get(key)
        except StoreUnavailable as exc:
            self.metrics.store_errors.inc("get")
            log.warning("store read failed for %s: %s", key, exc)
            return None

    async def _from_store(
        self, stored: StoredOriginal, gen: GenerationParams, timings: dict[str, float]
    ) -> Original:
        started = time.perf_counter()
        source = await self.pool.run(decode, stored.data, self.settings.max_source_pixels)
        self._stage(timings, "decode", started)
        meta = stored.meta
        focal = meta.get("focal_point") or {"x": 0.5, "y": 0.5}
        native = meta.get("native_ratio") or gen.ratio
        original = Original(
            stored.key,
            source,
            (float(focal["x"]), float(focal["y"])),
            (int(native[0]), int(native[1])),
            str(meta.get("generator", "unknown")),
            meta,
        )
        self.sources.put(stored.key, original)
        return original

    async def _generate(
        self, gen: GenerationParams, key: str, timings: dict[str, float]
    ) -> Original:
        prompt = prepare(
            gen.prompt,
            style=gen.style,
            negative=gen.neg,
            enhance=gen.enhance,
            takes_negative=False,
        )
        request = GenerationRequest(
            key=key,
            prompt=prompt.sent,
            ratio=gen.ratio,
            size=NATIVE_SIZES[gen.ratio],
            negative=gen.neg,
            seed=gen.seed,
            style=gen.style,
        )
        analysed: dict[str, tuple[Source, tuple[float, float]]] = {}

        async def validate(image: GeneratedImage) -> None:
            # Decoding proves the bytes are an image; the focal point is found on the way.
            t0 = time.perf_counter()
            analysed["it"] = await self.pool.run(
                _analyse, image.data, self.settings.max_source_pixels, unbounded=True
            )
            self._stage(timings, "analyse", t0)

        started = time.perf_counter()
        try:
            result = await self.chain.generate(request, validate, only=gen.model)
        except Exception as exc:
            outcome = "refused" if isinstance(exc, Refused) else "failure"
            attempted = exc.attempted if isinstance(exc, AllGeneratorsFailed) else []
            self.metrics.generations.inc(gen.model or "chain", outcome)
            self.index.add(
                generation_row(key, gen.project, "", outcome, attempted, {}, str(exc)[:500])
            )
            raise
        generated_ms = self._stage(timings, "generate", started)
        image = result.image
        self.metrics.generations.inc(image.generator, "success")
        source, focal = analysed["it"]
        meta: dict[str, Any] = {
            "key": key,
            "project": gen.project,
            "prompt": gen.prompt,
            "prompt_sent": prompt.sent,
            "prompt_compacted": prompt.compacted,
            "params": {
                "ar": ratio_text(gen.ratio),
                "style": gen.style,
                "neg": gen.neg,
                "seed": gen.seed,
                "enhance": gen.enhance,
                "model": gen.model,
                "style_version": gen.style_version,
            },
            "native_ratio": list(gen.ratio),
            "generator": image.generator,
            "model": image.model,
            "generators_attempted": list(result.attempted),
            "fallback_used": result.fallback_used,
            "content_type": image.content_type,
            "width": source.width,
            "height": source.height,
            "bytes": len(image.data),
            "focal_point": {"x": focal[0], "y": focal[1]},
            "timings_ms": {"generate": round(generated_ms, 1)},
            "created_at": time.time(),
        }
        started = time.perf_counter()
        try:
            await self.store.put(key, image.data, meta)
        except StoreUnavailable as exc:
            self.metrics.store_errors.inc("put")
            log.error("store write failed for %s (served from memory): %s", key, exc)
        self._stage(timings, "store", started)
        self.index.add(original_row(meta))
        self.index.add(
            generation_row(
                key,
                gen.project,
                image.generator,
                "success",
                list(result.attempted),
                {k: round(v, 1) for k, v in timings.items()},
                None,
            )
        )
        return Original(key, source, focal, gen.ratio, image.generator, meta)

    def _stage(self, timings: dict[str, float], stage: str, started: float) -> float:
        ms = (time.perf_counter() - started) * 1000
        timings[stage] = ms
        self.metrics.stage_ms.observe(ms, stage)
        return ms


def _analyse(data: bytes, max_pixels: int) -> tuple[Source, tuple[float, float]]:
    source = decode(data, max_pixels)
    return source, find_focal_point(source)


def generation_row(
    key: str,
    project: str,
    generator: str,
    outcome: str,
    attempted: list[str],
    timings: dict[str, float],
    error: str | None,
) -> Row:
    return Row(
        "generations",
        {
            "original_key": key,
            "project": project,
            "generator": generator,
            "outcome": outcome,
            "attempted": attempted,
            "fallback_used": len(attempted) > 1,
            "timings": timings,
            "error": error,
            "created_at": time.time(),
        },
    )


def transform_summary(t: TransformParams) -> dict[str, Any]:
    return {
        "ar": ratio_text(t.view),
        "w": t.width,
        "h": t.height,
        "fit": t.fit,
        "anchor": t.anchor if isinstance(t.anchor, str) else list(t.anchor),
        "fmt": t.fmt,
        "q": t.quality,
        "rmbg": t.rmbg,
        "blur": t.blur,
        "bg": None if not t.bg_given else ("transparent" if t.bg is None else list(t.bg)),
    }
