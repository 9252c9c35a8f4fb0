"""The crop of a new original to its key's ratio, around its focal point.

A generator that cannot make a key's ratio makes its nearest own ratio; this crop gives the
original the ratio its key says before it is stored. It decodes, so it runs on the
transform pool.
"""

from __future__ import annotations

import pyvips

from .focal import find_focal_point
from .source import decode

RATIO_TOLERANCE = 0.01  # relative: an image within 1 % of the ratio is left as it is


def needs_crop(width: int, height: int, ratio: tuple[int, int]) -> bool:
    return abs((width / height) / (ratio[0] / ratio[1]) - 1) > RATIO_TOLERANCE


def crop_to_ratio(
    data: bytes, content_type: str, ratio: tuple[int, int], max_pixels: int
) -> tuple[bytes, str, dict[str, object]]:
    """Crop an image to `ratio` around its focal point; answers the new bytes, their type
    and what was done (empty when the image already has the ratio, returned unchanged).

    Raises `UnreadableImage` or `SourceTooLarge` (transforms.errors).
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
