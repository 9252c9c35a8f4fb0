"""Output formats: per-format encoder settings, content types and `Accept` negotiation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyvips

from . import jpeg


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    content_type: str
    default_quality: int | None  # None: lossless, `q` does not apply
    alpha: bool

    def encode(self, img: pyvips.Image, quality: int | None, pixels: bytes | None = None) -> bytes:
        """`pixels`: the image's pixels when they are already in memory (JPEG reads them)."""
        q = quality if quality is not None else self.default_quality
        opts: dict[str, Any] = {"keep": "none"}
        if self.name == "jpeg":
            assert q is not None
            return jpeg.encode(img, q, pixels)
        if self.name == "webp":
            # effort 2 of 0..6: about twice as fast as the default 4, a few per cent larger.
            return bytes(img.webpsave_buffer(Q=q, effort=2, **opts))
        if self.name == "avif":
            # effort 2 of 0..9: the default (4) costs ~0.5 s per image, far too slow for a request.
            return bytes(img.heifsave_buffer(Q=q, compression="av1", effort=2, **opts))
        return bytes(img.pngsave_buffer(compression=6, **opts))


FORMATS: dict[str, Format] = {
    "jpeg": Format("jpeg", "image/jpeg", 80, False),
    "webp": Format("webp", "image/webp", 80, True),
    "avif": Format("avif", "image/avif", 55, True),
    "png": Format("png", "image/png", None, True),
}


def negotiate(accept: str, needs_alpha: bool) -> str:
    """The best format the `Accept` header allows: AVIF, then WebP, then PNG or JPEG."""
    accepted: set[str] = set()
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            accepted.add(media.strip().lower())
    if "image/avif" in accepted:
        return "avif"
    if "image/webp" in accepted:
        return "webp"
    return "png" if needs_alpha else "jpeg"
