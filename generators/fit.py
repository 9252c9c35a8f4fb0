"""Native sizes: each generator makes its own ratios; the keys use Gemini's ten.

A request for a ratio a generator cannot make is generated at its nearest native ratio (in
log scale) and cropped to the key's ratio around the focal point before the original is
stored, so every original has the ratio its key says.
"""

from __future__ import annotations

import pyvips

from promptpix.transforms.focal import find_focal_point
from promptpix.transforms.source import decode

from .ratios import NATIVE_SIZES, nearest_native

RATIO_TOLERANCE = 0.01  # relative: 1344x768 is 16:9 closely enough


Sizes = dict[tuple[int, int], tuple[int, int]]


def native_for(
    ratio: tuple[int, int], sizes: dict[tuple[int, int], tuple[int, int]] | None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The generator's own ratio and size for a key's ratio."""
    table = sizes or NATIVE_SIZES
    own = nearest_native(ratio, table)
    return own, table[own]


def needs_crop(width: int, height: int, ratio: tuple[int, int]) -> bool:
    return abs((width / height) / (ratio[0] / ratio[1]) - 1) > RATIO_TOLERANCE


def crop_to_ratio(
    data: bytes, content_type: str, ratio: tuple[int, int], max_pixels: int
) -> tuple[bytes, str, dict[str, object]]:
    """Crop an image to `ratio` around its focal point; answers the new bytes and type.

    Raises `transforms.errors.UnreadableImage` when the bytes are not an image.
    """
    source = decode(data, max_pixels)
    if not needs_crop(source.width, source.height, ratio):
        return data, content_type, {}
    fx, fy = find_focal_point(source)
    img: pyvips.Image = source.image()
    want = ratio[0] / ratio[1]
    if source.width / source.height > want:  # too wide: keep the full height
        w, h = max(1, round(source.height * want)), source.height
    else:
        w, h = source.width, max(1, round(source.width / want))
    left = min(max(round(fx * source.width - w / 2), 0), source.width - w)
    top = min(max(round(fy * source.height - h / 2), 0), source.height - h)
    out = img.crop(left, top, w, h).copy(interpretation="srgb")
    details: dict[str, object] = {
        "generated_size": [source.width, source.height],
        "cropped_to": [w, h],
        "crop_offset": [left, top],
    }
    if content_type == "image/png" or source.has_alpha:
        return out.pngsave_buffer(compression=6, keep="none"), "image/png", details
    return out.jpegsave_buffer(Q=95, keep="none"), "image/jpeg", details
