"""The focal point of an original, found once when it is stored (libvips attention)."""

from __future__ import annotations

from .source import Source

ANALYSIS_SIZE = 256


def find_focal_point(source: Source) -> tuple[float, float]:
    """The most salient spot as fractions (x, y) of the width and height."""
    img = source.image()
    if source.has_alpha:
        img = img.flatten(background=[255, 255, 255])
    scale = min(1.0, ANALYSIS_SIZE / max(img.width, img.height))
    small = img.resize(scale) if scale < 1.0 else img
    crop_w, crop_h = max(1, small.width // 3), max(1, small.height // 3)
    _, found = small.smartcrop(
        crop_w, crop_h, interesting="attention", attention_x=True, attention_y=True
    )
    x = (found["attention_x"] + 0.5) / small.width
    y = (found["attention_y"] + 0.5) / small.height
    return round(min(max(x, 0.0), 1.0), 4), round(min(max(y, 0.0), 1.0), 4)
