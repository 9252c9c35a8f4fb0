"""Background removal for plain backgrounds: the border colour becomes transparent."""

from __future__ import annotations

import pyvips

NEAR = 18.0  # colour distance at or below which a pixel is background
FAR = 48.0  # at or above which it is foreground; a soft edge in between


def border_colour(img: pyvips.Image) -> list[float]:
    """The mean colour of a thin frame around the image."""
    edge = max(1, min(img.width, img.height) // 64)
    strips = [
        img.crop(0, 0, img.width, edge),
        img.crop(0, img.height - edge, img.width, edge),
        img.crop(0, 0, edge, img.height),
        img.crop(img.width - edge, 0, edge, img.height),
    ]
    sums = [0.0, 0.0, 0.0]
    total = 0
    for strip in strips:
        n = strip.width * strip.height
        for band in range(3):
            sums[band] += strip[band].avg() * n
        total += n
    return [s / total for s in sums]


def remove_background(img: pyvips.Image) -> pyvips.Image:
    """RGB(A) in, RGBA out: pixels near the border colour fade to transparent."""
    rgb = img[:3]
    bg = border_colour(rgb)
    diff = rgb - bg
    dist = (diff * diff).bandmean() * 3
    dist = dist**0.5
    alpha = ((dist - NEAR) * (255.0 / (FAR - NEAR))).cast("uchar")  # cast clamps to 0..255
    if img.bands == 4:
        alpha = (alpha * img[3] / 255).cast("uchar")
    return rgb.bandjoin(alpha).copy(interpretation="srgb")
