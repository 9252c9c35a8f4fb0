"""A variant made from an original: its pixels (decoded once per scale, kept hot) through
the transform steps, on the bounded transform pool."""

from __future__ import annotations

import asyncio
import time

from promptpix.cache.singleflight import SingleFlight
from promptpix.transforms.executor import TransformPool
from promptpix.transforms.params import TransformParams
from promptpix.transforms.pipeline import Rendered, render, shrink_factor
from promptpix.transforms.source import Source, decode

from .generation import stage
from .metrics import Metrics
from .tiers import MISS, Original, Tiers, Variant


class Renderer:
    def __init__(
        self,
        tiers: Tiers,
        pool: TransformPool,
        metrics: Metrics,
        *,
        max_dimension: int,
        max_source_pixels: int,
    ) -> None:
        self.tiers = tiers
        self.pool = pool
        self.metrics = metrics
        self.max_dimension = max_dimension
        self.max_source_pixels = max_source_pixels
        self.flight: SingleFlight[Source] = SingleFlight()

    async def render(
        self,
        original: Original,
        transform: TransformParams,
        variant_key: str,
        status: str,
        timings: dict[str, float],
    ) -> Variant:
        started = time.perf_counter()
        limit = self.max_dimension
        unbounded = status == MISS  # a generation already paid for is never turned away
        scale = shrink_factor(original.size, original.native, transform, limit)
        source = await self._pixels(original, scale if original.shrinkable else 1, unbounded)
        out: Rendered = await self.pool.run(
            render,
            source,
            original.size,
            original.focal,
            original.native,
            transform,
            limit,
            unbounded=unbounded,
        )
        stage(self.metrics, timings, "transform", started)
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
        name = Tiers.pixels_name(original.key, scale)
        found = self.tiers.pixels.get(name)
        if found is not None:
            return found

        async def decoded() -> Source:
            source = await self.pool.run(
                decode, original.data, self.max_source_pixels, scale, unbounded=unbounded
            )
            self.tiers.pixels.put(name, source)
            return source

        source, _ = await self.flight.do(name, decoded)
        return source
