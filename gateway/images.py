"""The image pipeline behind `/i/`: key → memory tiers → store → generate → transform.

Every stage that costs money or CPU runs once per key at a time (single-flight), and its
own task finishes (and stores) even when the request that started it goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptpix.cache.index import IndexWriter, Row, original_row
from promptpix.cache.keys import variant_key
from promptpix.cache.leases import Leases, acquire
from promptpix.cache.memory import MemoryTier
from promptpix.cache.semantic import REUSE_THRESHOLD, SIMILAR_THRESHOLD
from promptpix.cache.singleflight import SingleFlight
from promptpix.cache.store import Store, StoredOriginal, StoreUnavailable
from promptpix.generators.base import (
    AllGeneratorsFailed,
    GeneratedImage,
    GenerationRequest,
    Refused,
)
from promptpix.generators.chain import Chain
from promptpix.generators.llm import TextLLM
from promptpix.generators.prompts import prepare
from promptpix.generators.ratios import NATIVE_SIZES, ratio_text
from promptpix.generators.styles import is_transparent
from promptpix.generators.vision import Analysis, GeminiVision
from promptpix.transforms.background import subject_centre
from promptpix.transforms.crop import crop_to_ratio
from promptpix.transforms.executor import TransformPool
from promptpix.transforms.focal import ANALYSIS_SIZE, find_focal_point
from promptpix.transforms.formats import FORMATS
from promptpix.transforms.params import TransformParams
from promptpix.transforms.pipeline import Rendered, render, shrink_factor
from promptpix.transforms.source import Header, Source, decode, header

from .metrics import Metrics
from .params import GenerationParams

if TYPE_CHECKING:
    from promptpix.cache.semantic import SemanticCache

log = logging.getLogger("promptpix.images")

MISS, TRANSFORM, HIT, SIMILAR = "MISS", "TRANSFORM", "HIT", "SIMILAR"


@dataclass(frozen=True, slots=True)
class Original:
    """An original as stored (encoded) with what every transform of it needs to know."""

    key: str
    data: bytes
    size: tuple[int, int]  # upright pixels
    shrinkable: bool  # decodes smaller on load: small variants start from fewer pixels
    focal: tuple[float, float]
    native: tuple[int, int]
    generator: str
    meta: dict[str, Any]
    # A new original's store write, under way while its first variant is made: every
    # answer made from it waits for it, so nothing is answered before it is stored.
    stored: asyncio.Future[None] | None = None


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    original_key: str
    data: bytes
    content_type: str
    width: int
    height: int
    generator: str
    status: str  # MISS or TRANSFORM: how it was first made (SIMILAR: a stand-in)
    timings: dict[str, float] = field(default_factory=dict)
    similarity: float | None = None  # SIMILAR: the cosine of the two prompts


@dataclass(frozen=True, slots=True)
class ImageSettings:
    max_dimension: int
    max_source_pixels: int
    generation_timeout_s: float
    memory_cache_bytes: int
    source_cache_bytes: int
    lease_wait_s: float = 600.0
    # A remote store with a database index: a read for an original the index does not list
    # waits for the lease (the read after it decides), instead of a request to the store.
    lookup_index: bool = False


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
        *,
        llm: TextLLM | None = None,
        semantic: SemanticCache | None = None,
        vision: GeminiVision | None = None,
    ) -> None:
        self.settings = settings
        self.llm = llm  # prompt compaction and enhancement; None: deterministic
        self.semantic = semantic
        self.vision = vision
        self.store = store
        self.index = index
        self.leases = leases
        self.chain = chain
        self.pool = pool
        self.metrics = metrics
        self.variants: MemoryTier[Variant] = MemoryTier(
            settings.memory_cache_bytes, lambda v: len(v.data) + 512
        )
        # Originals hot in memory: their encoded bytes, and their pixels decoded at each
        # scale asked for (full size, or 1/2, 1/4, 1/8 for smaller variants).
        encoded_budget = settings.source_cache_bytes // 8
        self.originals: MemoryTier[Original] = MemoryTier(
            encoded_budget, lambda o: len(o.data) + 1024
        )
        self.pixels: MemoryTier[Source] = MemoryTier(
            settings.source_cache_bytes - encoded_budget, lambda s: s.nbytes + 256
        )
        self.original_flight: SingleFlight[tuple[Original, str]] = SingleFlight()
        self._storing: set[asyncio.Future[None]] = set()
        self.pixel_flight: SingleFlight[Source] = SingleFlight()
        self.variant_flight: SingleFlight[Variant] = SingleFlight()

    def busy(self) -> bool:
        """Whether answers are being made: background work waits for a quiet moment."""
        return len(self.variant_flight) > 0 or self.pool.pending > 0

    def cached(self, variant_key: str) -> Variant | None:
        return self.variants.get(variant_key)

    async def variant(
        self,
        gen: GenerationParams,
        transform: TransformParams,
        variant_key: str,
        *,
        reuse: bool = False,
    ) -> tuple[Variant, str]:
        """The variant and its cache status (HIT, TRANSFORM, MISS or SIMILAR). With `reuse`
        (the project opted in), a near-identical stored image is served before generating."""
        found = self.variants.get(variant_key)
        if found is not None:
            return found, HIT
        variant, _ = await self.variant_flight.do(
            variant_key,
            lambda: self._resolve(gen, transform, variant_key, reuse),
            timeout=self.settings.generation_timeout_s,
        )
        return variant, variant.status

    async def _resolve(
        self, gen: GenerationParams, transform: TransformParams, variant_key: str, reuse: bool
    ) -> Variant:
        """Run once per variant key, however many requests wait for it."""
        if reuse and self.semantic is not None:
            reused = await self._reuse(gen, transform)
            if reused is not None:
                return reused
        try:
            return await self._make_variant(gen, transform, variant_key)
        except AllGeneratorsFailed:
            similar = await self.similar(gen, transform, SIMILAR_THRESHOLD)
            if similar is None:
                raise
            return similar

    async def _reuse(self, gen: GenerationParams, transform: TransformParams) -> Variant | None:
        """A project that opts in gets a near-identical stored image instead of a generation."""
        if self.originals.get(gen.key) is not None:
            return None
        try:
            if await self.store.head(gen.key):
                return None
        except StoreUnavailable:
            return None
        return await self.similar(gen, transform, REUSE_THRESHOLD)

    async def similar(
        self, gen: GenerationParams, transform: TransformParams, threshold: float
    ) -> Variant | None:
        """The asked variant made from the stored original whose prompt is most similar."""
        if self.semantic is None:
            return None
        started = time.perf_counter()
        match = await self.semantic.find(gen.prompt, gen.project, gen.ratio, threshold)
        timings = {"semantic": (time.perf_counter() - started) * 1000}
        if match is None or match.key == gen.key:
            return None
        original = self.originals.get(match.key)
        if original is None:
            stored = await self._read(match.key)
            if stored is None:
                return None
            original = await self._from_store(stored, gen)
        style = str(original.meta.get("params", {}).get("style", ""))
        variant = await self._render(
            original, transform, style, variant_key(match.key, transform), SIMILAR, timings
        )
        log.info("serving %s for %s (similarity %.3f)", match.key, gen.key, match.similarity)
        return dataclasses.replace(variant, similarity=round(match.similarity, 4))

    @staticmethod
    def _effective(transform: TransformParams, style: str) -> TransformParams:
        """Styles that ask for a plain background lose it wherever the format has alpha."""
        if transform.rmbg or not is_transparent(style) or not FORMATS[transform.fmt].alpha:
            return transform
        return dataclasses.replace(transform, rmbg=True)

    async def _render(
        self,
        original: Original,
        transform: TransformParams,
        style: str,
        variant_key: str,
        status: str,
        timings: dict[str, float],
    ) -> Variant:
        started = time.perf_counter()
        params = self._effective(transform, style)
        limit = self.settings.max_dimension
        unbounded = status == MISS  # a generation already paid for is never turned away
        scale = shrink_factor(original.size, original.native, params, limit)
        source = await self._pixels(original, scale if original.shrinkable else 1, unbounded)
        out: Rendered = await self.pool.run(
            render,
            source,
            original.size,
            original.focal,
            original.native,
            params,
            limit,
            unbounded=unbounded,
        )
        self._stage(timings, "transform", started)
        if original.stored is not None:  # a new original: answered once it is stored
            await asyncio.shield(original.stored)
        return Variant(
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

    async def _pixels(self, original: Original, scale: int, unbounded: bool) -> Source:
        """The original's pixels decoded at 1/`scale`, from memory or decoded once."""
        name = f"{original.key}/{scale}"
        found = self.pixels.get(name)
        if found is not None:
            return found

        async def decoded() -> Source:
            source = await self.pool.run(
                decode, original.data, self.settings.max_source_pixels, scale, unbounded=unbounded
            )
            self.pixels.put(name, source)
            return source

        source, _ = await self.pixel_flight.do(name, decoded)
        return source

    async def _make_variant(
        self, gen: GenerationParams, transform: TransformParams, variant_key: str
    ) -> Variant:
        timings: dict[str, float] = {}
        original, status = await self.original(gen, timings)
        variant = await self._render(original, transform, gen.style, variant_key, status, timings)
        self.variants.put(variant_key, variant)
        self.index.add(
            Row(
                "variants",
                {
                    "key": variant_key,
                    "original_key": original.key,
                    "params": transform_summary(transform),
                    "content_type": variant.content_type,
                    "width": variant.width,
                    "height": variant.height,
                    "bytes": len(variant.data),
                    "created_at": time.time(),
                },
            )
        )
        return variant

    async def original(
        self, gen: GenerationParams, timings: dict[str, float]
    ) -> tuple[Original, str]:
        key = gen.key
        hot = self.originals.get(key)
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
        stored = None
        listed = await self.index.known(key) if self.settings.lookup_index else None
        if listed is not False:
            # An original the index lists is not generated again (paid twice, and answered
            # with other bytes than the stored ones) because the store cannot be read now.
            stored = await self._read(key, or_fail=listed is True)
        self._stage(timings, "store_read", started)
        if stored is not None:
            return await self._from_store(stored, gen), TRANSFORM
        # Other processes and replicas: one lease per key; a waiter that sees the original
        # appear in the store takes it instead of generating again.
        started = time.perf_counter()

        async def stored_elsewhere() -> bool:  # polled while waiting: a HEAD, not a download
            try:
                return await self.store.head(key)
            except StoreUnavailable:
                return False

        lease = await acquire(
            self.leases, key, stored_elsewhere, max_wait_s=self.settings.lease_wait_s
        )
        self._stage(timings, "lease", started)
        if lease is None:
            stored = await self._read(key)
            if stored is None:
                raise StoreUnavailable(f"{key} was stored by another process but cannot be read")
            return await self._from_store(stored, gen), MISS
        handed_over = False  # once generated, the store write releases the lease
        try:
            stored = await self._read(key)  # stored between our read and our lease?
            if stored is not None:
                return await self._from_store(stored, gen), TRANSFORM
            original = await self._generate(gen, key, timings, lease.release)
            handed_over = True
        finally:
            if not handed_over:
                await lease.release()
        self.originals.put(key, original)
        return original, MISS

    async def _read(self, key: str, or_fail: bool = False) -> StoredOriginal | None:
        """The stored original, or None if absent or (unless `or_fail`) unreadable."""
        try:
            return await self.store.get(key)
        except StoreUnavailable as exc:
            self.metrics.store_errors.inc("get")
            log.warning("store read failed for %s: %s", key, exc)
            if or_fail:
                raise
            return None

    async def _from_store(self, stored: StoredOriginal, gen: GenerationParams) -> Original:
        head = header(stored.data, self.settings.max_source_pixels)  # pixels wait for a variant
        meta = stored.meta
        focal = meta.get("focal_point") or {"x": 0.5, "y": 0.5}
        native = meta.get("native_ratio") or gen.ratio
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
        self.originals.put(stored.key, original)
        return original

    async def _generate(
        self,
        gen: GenerationParams,
        key: str,
        timings: dict[str, float],
        release: Callable[[], Awaitable[None]],
    ) -> Original:
        """Generate and analyse; the store write starts here and runs on (then `release`s
        the lease) while the first variant is made."""
        started = time.perf_counter()
        prompt = await prepare(
            gen.prompt,
            style=gen.style,
            negative=gen.neg,
            enhance=gen.enhance,
            takes_negative=self._takes_negative(gen.model),
            llm=self.llm,
        )
        self._stage(timings, "prompt", started)
        request = GenerationRequest(
            key=key,
            prompt=prompt.sent,
            ratio=gen.ratio,
            size=NATIVE_SIZES[gen.ratio],
            negative=gen.neg,
            seed=gen.seed,
            style=gen.style,
        )
        started = time.perf_counter()
        try:
            result = await self.chain.generate(request, only=gen.model)
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
        t0 = time.perf_counter()
        if result.ratio != gen.ratio:  # made at the generator's nearest ratio: the key's crop
            data, ctype, details = await self.pool.run(
                crop_to_ratio,
                image.data,
                image.content_type,
                gen.ratio,
                self.settings.max_source_pixels,
                unbounded=True,
                later=True,
            )
            details = {**image.details, **details, "native_ratio": ratio_text(result.ratio)}
            image = dataclasses.replace(image, data=data, content_type=ctype, details=details)
        # Decoding proves the bytes are an image; the focal point is found on the way.
        head, scale, source, focal = await self.pool.run(
            _analyse,
            image.data,
            self.settings.max_source_pixels,
            is_transparent(gen.style),
            unbounded=True,
            later=True,  # answers whose variant is being made leave first
        )
        self._stage(timings, "analyse", t0)
        self.pixels.put(f"{key}/{scale}", source)  # the variant asked for may start from it
        analysis = await self._vision(image, timings)
        if analysis is not None and analysis.focal is not None:
            focal = analysis.focal
        meta: dict[str, Any] = {
            "key": key,
            "project": gen.project,
            "prompt": gen.prompt,
            "prompt_sent": prompt.sent,
            "prompt_compacted": prompt.compacted,
            "prompt_work": {
                "optimizer": prompt.optimizer,
                "enhancer": prompt.enhancer,
                "fallbacks": dict(prompt.fallbacks),
                "timings_ms": dict(prompt.timings_ms),
            },
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
            "width": head.width,
            "height": head.height,
            "bytes": len(image.data),
            "focal_point": {"x": focal[0], "y": focal[1]},
            "focal_source": analysis.source if analysis and analysis.focal else "saliency",
            "alt_text": analysis.alt_text if analysis else "",
            "tags": list(analysis.tags) if analysis else [],
            "timings_ms": {"generate": round(generated_ms, 1)},
            "generator_timings_ms": dict(result.timings),
            "generator_details": dict(image.details),
            "created_at": time.time(),
        }
        # Answers wait for `written` (the store write); the task goes on to release the
        # lease and index the original.
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        storing = asyncio.ensure_future(
            self._store(
                key, image.data, meta, gen, list(result.attempted), timings, release, written
            )
        )
        self._storing.add(storing)
        storing.add_done_callback(self._storing.discard)
        return Original(
            key,
            image.data,
            (head.width, head.height),
            head.shrinkable,
            focal,
            gen.ratio,
            image.generator,
            meta,
            written,
        )

    async def _store(
        self,
        key: str,
        data: bytes,
        meta: dict[str, Any],
        gen: GenerationParams,
        attempted: list[str],
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
            self._stage(timings, "store", started)
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
        self.index.add(
            generation_row(
                key,
                gen.project,
                str(meta["generator"]),
                "success",
                attempted,
                {k: round(v, 1) for k, v in timings.items()},
                None,
            )
        )

    async def drain(self) -> None:
        """Wait for the store writes under way (at shutdown: nothing generated is lost)."""
        if self._storing:
            await asyncio.gather(*self._storing, return_exceptions=True)

    def _takes_negative(self, only: str) -> bool:
        """Whether every generator that may answer takes a negative prompt of its own."""
        candidates = [g for g in self.chain.generators if not only or g.id == only]
        return bool(candidates) and all(getattr(g, "takes_negative", False) for g in candidates)

    async def _vision(self, image: GeneratedImage, timings: dict[str, float]) -> Analysis | None:
        """The vision model's focal point, alt text and tags, when one is configured."""
        if self.vision is None:
            return None
        started = time.perf_counter()
        found = await self.vision.analyse(image.data, image.content_type)
        self._stage(timings, "vision", started)
        return found

    def _stage(self, timings: dict[str, float], stage: str, started: float) -> float:
        ms = (time.perf_counter() - started) * 1000
        timings[stage] = ms
        self.metrics.stage_ms.observe(ms, stage)
        return ms


Analysed = tuple[Header, int, Source, tuple[float, float]]


def _analyse(data: bytes, max_pixels: int, plain: bool = False) -> Analysed:
    """Header, scale, pixels and focal point of a generated image: decoded as small as the
    analysis allows (a JPEG shrinks on load), which also proves the bytes are an image."""
    head = header(data, max_pixels)
    scale = 1
    if head.shrinkable:
        while scale < 8 and max(head.width, head.height) // (scale * 2) >= ANALYSIS_SIZE:
            scale *= 2
    source = decode(data, max_pixels, scale)
    if plain:  # on a plain background the subject is what is left once it is removed
        centre = subject_centre(source.image())
        if centre is not None:
            return head, scale, source, centre
    return head, scale, source, find_focal_point(source)


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
