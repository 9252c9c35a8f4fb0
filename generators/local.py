"""The offline `local` generator: a deterministic, clearly labelled placeholder."""

from __future__ import annotations

import asyncio
import colorsys
import functools
import random
import textwrap

import numpy as np
import pyvips

from .base import GeneratedImage, GenerationRequest
from .styles import BUILTIN_STYLES

COLOUR_WORDS: dict[str, tuple[int, int, int]] = {
    "red": (214, 48, 49),
    "orange": (243, 134, 48),
    "yellow": (250, 208, 44),
    "gold": (212, 175, 55),
    "green": (46, 160, 67),
    "lime": (160, 220, 60),
    "teal": (0, 128, 128),
    "cyan": (40, 200, 220),
    "blue": (41, 98, 255),
    "navy": (20, 33, 90),
    "purple": (128, 60, 190),
    "violet": (150, 90, 220),
    "pink": (240, 120, 170),
    "magenta": (210, 40, 160),
    "brown": (130, 84, 50),
    "black": (25, 25, 30),
    "white": (245, 245, 245),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "silver": (190, 195, 200),
    "fox": (222, 110, 40),
    "sky": (120, 180, 240),
    "sea": (30, 110, 170),
    "ocean": (20, 90, 160),
    "forest": (34, 100, 50),
    "grass": (90, 170, 70),
    "fire": (240, 90, 30),
    "sun": (255, 200, 60),
    "night": (15, 20, 50),
    "snow": (235, 240, 250),
    "sand": (220, 195, 140),
    "rose": (225, 80, 120),
    "lemon": (245, 230, 80),
}
LABEL = "PLACEHOLDER · promptpix local generator"


class LocalGenerator:
    """Draws a placeholder derived from the prompt: colours, shapes and the prompt's words."""

    id = "local"
    model = "local-placeholder-1"

    def __init__(self, latency_ms: int = 0) -> None:
        self.latency_s = max(0, latency_ms) / 1000

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        data = await asyncio.to_thread(render, request)
        return GeneratedImage(
            data=data,
            content_type="image/jpeg",
            generator=self.id,
            model="local-placeholder-1",
            details={"placeholder": True},
        )


def palette(prompt: str, rng: random.Random) -> list[tuple[int, int, int]]:
    words = [w.strip(".,;:!?\"'()").lower() for w in prompt.split()]
    colours = [COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS]
    base_hue = rng.random()
    while len(colours) < 4:
        hue = (base_hue + 0.17 * len(colours) + rng.uniform(-0.04, 0.04)) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 0.85), rng.uniform(0.55, 0.95))
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


@functools.lru_cache(maxsize=1)
def _grain() -> np.ndarray:
    """A fixed grain field shared by every size: the fine detail that photos have."""
    rng = np.random.default_rng(7)
    return rng.normal(0.0, 14.0, size=(1536, 1536, 1)).astype(np.float32)


def render(request: GenerationRequest) -> bytes:
    width, height = request.size
    rng = random.Random(int(request.key[:16], 16))
    c0, c1, c2, c3 = (np.array(c, dtype=np.float32) for c in palette(request.prompt, rng)[:4])

    ys = np.arange(height, dtype=np.float32)[:, None, None]
    xs = np.arange(width, dtype=np.float32)[None, :, None]
    ax, ay = rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)
    t = (xs * ax + ys * ay) / (width * ax + height * ay)
    plain = request.style in BUILTIN_STYLES and BUILTIN_STYLES[request.style].transparent
    if plain:  # styles that ask for a plain background get one, ready to be removed
        img = np.broadcast_to(np.float32(255), (height, width, 3)).copy()
    else:
        img = c0 + (c1 - c0) * t

    def disc(cx: float, cy: float, r: float, colour: np.ndarray) -> None:
        x0, x1 = max(0, int(cx - r)), min(width, int(cx + r) + 1)
        y0, y1 = max(0, int(cy - r)), min(height, int(cy + r) + 1)
        if x0 >= x1 or y0 >= y1:
            return
        inside = (xs[:, x0:x1] - cx) ** 2 + (ys[y0:y1] - cy) ** 2 < r * r
        img[y0:y1, x0:x1] = np.where(inside, colour, img[y0:y1, x0:x1])

    short = min(width, height)
    for _ in range(rng.randint(4, 7)):
        disc(rng.uniform(0, width), rng.uniform(0, height), short * rng.uniform(0.04, 0.12), c3)
    for _ in range(rng.randint(2, 4)):
        bx, by = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        bw, bh = int(rng.uniform(0.1, 0.35) * width), max(2, int(rng.uniform(0.01, 0.04) * height))
        img[by : by + bh, bx : bx + bw] = c2
    # The subject: a ringed disc off-centre, where saliency should find the focal point.
    sx, sy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.3, 0.7) * height
    sr = short * rng.uniform(0.16, 0.24)
    disc(sx, sy, sr * 1.12, np.array((250, 250, 250), dtype=np.float32))
    disc(sx, sy, sr, c2)
    disc(sx, sy, sr * 0.45, c3)

    if not plain:
        img += _grain()[:height, :width]
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    out = pyvips.Image.new_from_memory(pixels.tobytes(), width, height, 3, "uchar")

    caption = "\n".join(textwrap.wrap(request.prompt, 40)[:3])
    out = _text(
        out, caption, int(short * 0.06), width * 0.8, (255, 255, 255), anchor=(sx, sy + sr * 1.25)
    )
    label = f"{LABEL} · seed {request.seed}" + (f" · {request.style}" if request.style else "")
    if plain:  # a clear margin of background all round, as an icon or a logo has
        m = max(2, int(short * 0.04))
        out = out.crop(m, m, width - 2 * m, height - 2 * m).embed(
            m, m, width, height, extend="background", background=[255, 255, 255]
        )
    size = max(14, int(height * 0.024))
    # A plain background stays plain to its edges (it is removed later): the label is a tag
    # inside it instead of a strip across the top.
    out = _tag(out, label, size) if plain else _banner(out, label, size)
    return out.copy(interpretation="srgb").jpegsave_buffer(Q=90, keep="none")


def _text(
    img: pyvips.Image,
    text: str,
    size: int,
    max_width: float,
    colour: tuple[int, int, int],
    *,
    anchor: tuple[float, float],
) -> pyvips.Image:
    if not text:
        return img
    mask = pyvips.Image.text(
        _escape(text), font=f"sans bold {size}px", width=int(max_width), align="centre"
    )
    left = int(min(max(anchor[0] - mask.width / 2, 0), img.width - mask.width))
    top = int(min(max(anchor[1], 0), img.height - mask.height))
    if left < 0 or top < 0:
        return img
    shadow = mask.embed(3, 3, mask.width + 8, mask.height + 8).gaussblur(2)
    shadow = (
        (255 - shadow * 0.6).cast("uchar").embed(left, top, img.width, img.height, extend="white")
    )
    img = img * shadow / 255
    mask = mask.embed(left, top, img.width, img.height)
    return mask.ifthenelse(list(colour), img, blend=True)


def _banner(img: pyvips.Image, text: str, size: int) -> pyvips.Image:
    """A darkened strip across the top that says what this image is."""
    mask = pyvips.Image.text(_escape(text), font=f"sans bold {size}px")
    pad = size // 2
    strip_h = min(img.height, mask.height + 2 * pad)
    strip = img.crop(0, 0, img.width, strip_h) * 0.35
    strip = mask.embed(pad, pad, img.width, strip_h).ifthenelse([255, 255, 255], strip, blend=True)
    return img.insert(strip.cast("uchar"), 0, 0)


def _tag(img: pyvips.Image, text: str, size: int) -> pyvips.Image:
    """The label on a dark tag centred near the top, clear of the image's edges."""
    mask = pyvips.Image.text(_escape(text), font=f"sans bold {size}px")
    pad = size // 2
    tag_w, tag_h = min(img.width - 4 * size, mask.width + 2 * pad), mask.height + 2 * pad
    if tag_w <= 0 or tag_h + 2 * size > img.height:
        return img
    left, top = (img.width - tag_w) // 2, 2 * size
    tag = img.crop(left, top, tag_w, tag_h) * 0.35
    tag = mask.embed(pad, pad, tag_w, tag_h).ifthenelse([255, 255, 255], tag, blend=True)
    return img.insert(tag.cast("uchar"), left, top)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
