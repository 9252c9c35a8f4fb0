"""The semantic tier in the live path: a stored image whose prompt is close enough serves
a project that opted in before anything is generated (cosine >= 0.85), and serves anyone,
for minutes, once every generator has failed (>= 0.70: `SIMILAR`)."""

from __future__ import annotations

import dataclasses
import logging
import time

from promptpix.cache.keys import variant_key
from promptpix.cache.semantic import REUSE_THRESHOLD, SIMILAR_THRESHOLD, SemanticCache
from promptpix.cache.store import Store, StoreUnavailable
from promptpix.transforms.params import TransformParams

from .originals import Originals
from .params import GenerationParams
from .rendering import Renderer
from .tiers import SIMILAR, Tiers, Variant

log = logging.getLogger("promptpix.reuse")


class Reuse:
    def __init__(
        self,
        semantic: SemanticCache,
        tiers: Tiers,
        store: Store,
        originals: Originals,
        renderer: Renderer,
    ) -> None:
        self.semantic = semantic
        self.tiers = tiers
        self.store = store
        self.originals = originals
        self.renderer = renderer

    async def before_generating(
        self, gen: GenerationParams, transform: TransformParams
    ) -> Variant | None:
        """A near-identical stored image, unless this key's own original exists."""
        if self.tiers.originals.get(gen.key) is not None:
            return None
        try:
            if await self.store.head(gen.key):
                return None
        except StoreUnavailable:
            return None
        return await self.similar(gen, transform, REUSE_THRESHOLD)

    async def after_failure(
        self, gen: GenerationParams, transform: TransformParams
    ) -> Variant | None:
        return await self.similar(gen, transform, SIMILAR_THRESHOLD)

    async def similar(
        self, gen: GenerationParams, transform: TransformParams, threshold: float
    ) -> Variant | None:
        """The asked variant made from the stored original whose prompt is most similar."""
        started = time.perf_counter()
        match = await self.semantic.find(gen.prompt, gen.project, gen.ratio, threshold)
        timings = {"semantic": (time.perf_counter() - started) * 1000}
        if match is None or match.key == gen.key:
            return None
        original = self.tiers.originals.get(match.key)
        if original is None:
            stored = await self.originals.read(match.key)
            if stored is None:
                return None
            original = self.originals.from_store(stored, gen.ratio)
        variant = await self.renderer.render(
            original, transform, variant_key(match.key, transform), SIMILAR, timings
        )
        log.info("serving %s for %s (similarity %.3f)", match.key, gen.key, match.similarity)
        return dataclasses.replace(variant, similarity=round(match.similarity, 4))
