"""The image pipeline behind `/i/`: variant key -> memory tier -> (semantic reuse) ->
original -> transform, each stage once per key at a time (single-flight), its own task
finishing (and storing) even when the request that started it goes away."""

from __future__ import annotations

import dataclasses

from promptpix.cache.index import IndexWriter
from promptpix.cache.singleflight import SingleFlight
from promptpix.generators.base import AllGeneratorsFailed
from promptpix.transforms.executor import TransformPool
from promptpix.transforms.params import TransformParams

from .generation import FREE, Terms
from .originals import Originals
from .params import GenerationParams
from .records import variant_row
from .rendering import Renderer
from .reuse import Reuse
from .tiers import HIT, PLACEHOLDER, Tiers, Variant


class Images:
    def __init__(
        self,
        tiers: Tiers,
        originals: Originals,
        renderer: Renderer,
        index: IndexWriter,
        pool: TransformPool,
        *,
        generation_timeout_s: float,
        reuse: Reuse | None = None,
    ) -> None:
        self.tiers = tiers
        self.originals = originals
        self.renderer = renderer
        self.index = index
        self.pool = pool
        self.generation_timeout_s = generation_timeout_s
        self.reuse = reuse
        self.flight: SingleFlight[Variant] = SingleFlight()

    def busy(self) -> bool:
        """Whether answers are being made: background work waits for a quiet moment."""
        return len(self.flight) > 0 or self.pool.pending > 0

    def cached(self, variant_key: str) -> Variant | None:
        return self.tiers.variants.get(variant_key)

    async def variant(
        self,
        gen: GenerationParams,
        transform: TransformParams,
        variant_key: str,
        *,
        reuse: bool = False,
        terms: Terms = FREE,
    ) -> tuple[Variant, str]:
        """The variant and its cache status (HIT, TRANSFORM, MISS, SIMILAR or PLACEHOLDER).
        With `reuse` (the project opted in), a near-identical stored image is served before
        generating; `terms` say what a generation may cost, and who may make it."""
        found = self.tiers.variants.get(variant_key)
        if found is not None:
            return found, HIT
        variant, _ = await self.flight.do(
            variant_key,
            lambda: self._resolve(gen, transform, variant_key, reuse, terms),
            timeout=self.generation_timeout_s,
        )
        return variant, variant.status

    async def _resolve(
        self,
        gen: GenerationParams,
        transform: TransformParams,
        variant_key: str,
        reuse: bool,
        terms: Terms,
    ) -> Variant:
        """Run once per variant key, however many requests wait for it."""
        if reuse and self.reuse is not None:
            reused = await self.reuse.before_generating(gen, transform)
            if reused is not None:
                return reused
        try:
            return await self._make(gen, transform, variant_key, terms)
        except AllGeneratorsFailed:
            similar = await self.reuse.after_failure(gen, transform) if self.reuse else None
            if similar is None:
                raise
            return similar

    async def _make(
        self, gen: GenerationParams, transform: TransformParams, variant_key: str, terms: Terms
    ) -> Variant:
        timings: dict[str, float] = {}
        original, status = await self.originals.get(gen, timings, terms)
        variant = await self.renderer.render(original, transform, variant_key, status, timings)
        if status == PLACEHOLDER:  # kept nowhere: the next request tries the generators again
            # Its own ETag: a client that kept it must never be told the real image is it.
            return dataclasses.replace(variant, key=f"{variant_key}-placeholder")
        self.tiers.variants.put(variant_key, variant)
        size = (variant.width, variant.height)
        n = len(variant.data)
        self.index.add(
            variant_row(variant_key, original.key, transform, variant.content_type, size, n)
        )
        return variant

    async def drain(self) -> None:
        """Wait for what is under way: nothing paid for is lost at shutdown."""
        await self.flight.drain()
        await self.originals.drain()
