"""The ten native aspect ratios that key every original, and the nearest-ratio rule."""

from __future__ import annotations

import math
from collections.abc import Mapping

# Native ratio -> generated size (Gemini 2.5 Flash Image's own sizes).
NATIVE_SIZES: dict[tuple[int, int], tuple[int, int]] = {
    (1, 1): (1024, 1024),
    (2, 3): (832, 1248),
    (3, 2): (1248, 832),
    (3, 4): (864, 1184),
    (4, 3): (1184, 864),
    (4, 5): (896, 1152),
    (5, 4): (1152, 896),
    (9, 16): (768, 1344),
    (16, 9): (1344, 768),
    (21, 9): (1536, 672),
}


def reduce_ratio(w: int, h: int) -> tuple[int, int]:
    g = math.gcd(w, h)
    return w // g, h // g


def nearest_native(
    ratio: tuple[int, int], sizes: Mapping[tuple[int, int], object] = NATIVE_SIZES
) -> tuple[int, int]:
    """The ratio of `sizes` nearest to `ratio` in log scale (ties go to the squarer one)."""
    if ratio in sizes:
        return ratio
    target = math.log(ratio[0] / ratio[1])
    return min(
        sizes,
        key=lambda r: (round(abs(math.log(r[0] / r[1]) - target), 12), abs(math.log(r[0] / r[1]))),
    )


def native_for(
    ratio: tuple[int, int], sizes: Mapping[tuple[int, int], tuple[int, int]] | None = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """A generator's own ratio nearest to a key's ratio, and its size (`sizes`: the
    generator's table; none: the ten native sizes)."""
    table = sizes or NATIVE_SIZES
    own = nearest_native(ratio, table)
    return own, table[own]


def ratio_text(ratio: tuple[int, int]) -> str:
    return f"{ratio[0]}:{ratio[1]}"
