"""What defines a variant of an original: the transform parameters, as one frozen value.

The gateway's parse builds it (format, quality and alpha already settled); the pipeline
reads it and never sees the request.
"""

from __future__ import annotations

from dataclasses import dataclass

FITS = frozenset({"cover", "contain", "inside", "fill"})
NAMED_ANCHORS = frozenset(
    {"focal", "center", "top", "bottom", "left", "right", "attention", "entropy"}
)

Anchor = str | tuple[float, float]
Colour = tuple[int, int, int] | None  # None: transparent


@dataclass(frozen=True, slots=True)
class TransformParams:
    """What defines a variant of an original; sizes are in device pixels."""

    view: tuple[int, int]  # exact aspect ratio asked for (a crop of the original if not native)
    width: int | None
    height: int | None
    fit: str
    anchor: Anchor
    fmt: str  # one of FORMATS, or "auto" until negotiated
    quality: int | None  # None: the format's default
    bg: Colour
    bg_given: bool
    rmbg: bool
    blur: float

    def resolved(self, fmt: str, quality: int) -> TransformParams:
        return TransformParams(
            self.view,
            self.width,
            self.height,
            self.fit,
            self.anchor,
            fmt,
            quality,
            self.bg,
            self.bg_given,
            self.rmbg,
            self.blur,
        )
