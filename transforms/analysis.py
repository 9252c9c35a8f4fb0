"""What every transform of a new original needs to know, found once when it is stored:
its upright size, whether it shrinks on load, and its focal point."""

from __future__ import annotations

from dataclasses import dataclass

from .background import subject_centre
from .focal import ANALYSIS_SIZE, find_focal_point
from .source import Header, Source, decode, header


@dataclass(frozen=True, slots=True)
class Analysed:
    header: Header
    scale: int  # how much smaller than the original `source` was decoded
    source: Source  # kept: the first variant may start from these pixels
    focal: tuple[float, float]


def analyse(data: bytes, max_pixels: int, plain: bool = False) -> Analysed:
    """Header, pixels and focal point of a generated image, decoded as small as the analysis
    allows (a JPEG shrinks on load), which also proves the bytes are an image. On a plain
    background (`plain`) the subject is what is left once the background is removed."""
    head = header(data, max_pixels)
    scale = 1
    if head.shrinkable:
        while scale < 8 and max(head.width, head.height) // (scale * 2) >= ANALYSIS_SIZE:
            scale *= 2
    source = decode(data, max_pixels, scale)
    if plain:
        centre = subject_centre(source.image())
        if centre is not None:
            return Analysed(head, scale, source, centre)
    return Analysed(head, scale, source, find_focal_point(source))
