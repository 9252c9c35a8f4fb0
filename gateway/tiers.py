"""The memory tiers and the values they hold: variants (encoded answers), originals
(encoded, with what every transform of them needs to know), and their decoded pixels."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from promptpix.cache.memory import MemoryTier
from promptpix.transforms.source import Source

# How a variant was answered (`X-Cache-Status`).
MISS, TRANSFORM, HIT, SIMILAR = "MISS", "TRANSFORM", "HIT", "SIMILAR"
PLACEHOLDER = "PLACEHOLDER"  # the offline stand-in, for generators that failed: not stored


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
    status: str  # MISS or TRANSFORM: how it was first made (SIMILAR, PLACEHOLDER: stand-ins)
    timings: dict[str, float] = field(default_factory=dict)
    similarity: float | None = None  # SIMILAR: the cosine of the two prompts


class Tiers:
    """Byte-bounded LRUs. Of the source budget, an eighth keeps originals' encoded bytes and
    the rest their pixels, decoded at each scale asked for (full size, 1/2, 1/4, 1/8)."""

    def __init__(self, variant_bytes: int, source_bytes: int) -> None:
        self.variants: MemoryTier[Variant] = MemoryTier(variant_bytes, lambda v: len(v.data) + 512)
        encoded = source_bytes // 8
        self.originals: MemoryTier[Original] = MemoryTier(encoded, lambda o: len(o.data) + 1024)
        self.pixels: MemoryTier[Source] = MemoryTier(
            source_bytes - encoded, lambda s: s.nbytes + 256
        )

    @staticmethod
    def pixels_name(key: str, scale: int) -> str:
        return f"{key}/{scale}"
