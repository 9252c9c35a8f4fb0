"""Background removal for plain backgrounds: the border colour becomes transparent."""

from __future__ import annotations

import numpy as np
import pyvips

NEAR = 18.0  # colour distance at or below which a pixel is background
FAR = 48.0  # at or above which it is foreground; a soft edge in between


def border_colour(img: pyvips.Image) -> list[float]:
    """The median colour of a thin frame around the image: a caption strip or a subject
    that touches one side does not tint what the rest of the frame agrees on."""
    edge = max(1, min(img.width, img.height) // 64)
    strips = [
        img.crop(0, 0, img.width, edge),
        img.crop(0, img.height - edge, img.width, edge),
        img.crop(0, 0, edge, img.height),
        img.crop(img.width - edge, 0, edge, img.height),
    ]
    frame = np.concatenate([s.cast("uchar").numpy().reshape(-1, s.bands)[:, :3] for s in strips])
    return [float(v) for v in np.median(frame, axis=0)]


def subject_centre(img: pyvips.Image, size: int = 256) -> tuple[float, float] | None:
    """Where what is not background is densest, as fractions; None if nothing stands out."""
    scale = min(1.0, size / max(img.width, img.height))
    small = img.resize(scale) if scale < 1.0 else img
    alpha = remove_background(small)[3]
    if alpha.avg() < 0.5:
        return None
    # Foreground mass blurred over about a sixth of the image: its peak is the main subject.
    dense = alpha.cast("float").gaussblur(max(1.0, min(small.width, small.height) / 12))
    _, at = dense.max(x=True, y=True)
    x = (at["x"] + 0.5) / small.width
    y = (at["y"] + 0.5) / small.height
    return round(min(max(x, 0.0), 1.0), 4), round(min(max(y, 0.0), 1.0), 4)


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
