"""The offline `local` generator: a deterministic, clearly labelled placeholder.

A placeholder is a scene (a gradient, shapes and a ringed subject where saliency finds the
focal point) with a strip across the top that says what it is: the label, the seed and the
prompt. Scenes are few and cached as pixels; per key, only the strip is drawn, over the
scene's top rows, and the whole placeholder is encoded once. The same key gives the same
bytes.
"""

from __future__ import annotations

import asyncio
import colorsys
import functools
import random
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyvips

from promptpix.transforms.jpeg import encode
from promptpix.transforms.threads import lower_priority

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


QUALITY = 88
# The strip covers whole rows of JPEG blocks (16 pixels tall with 4:2:0 chroma), so the
# rest of a scene is coded the same under every key's strip.
BLOCK_ROWS = 16
LAYOUTS = 16  # scenes per size and palette; the key picks one
SCENES = 16  # scenes cached, as pixels (about 3 MB each)
GRAIN = 2.0  # a little of the fine detail photos have
DRAWING_THREADS = 2
SHADE = 0.35  # how dark the strip behind the label is


class LocalGenerator:
    """Draws a placeholder derived from the prompt: its colours, a scene and its words."""

    id = "local"
    model = "local-placeholder-1"
    placeholder = True  # behind a paid generator it only stands in for one that failed
    takes_references = True  # shown as insets along the bottom edge, in the order given

    def __init__(self, latency_ms: int = 0) -> None:
        self.latency_s = max(0, latency_ms) / 1000
        # Its own threads, at background priority, as a provider's work is elsewhere: a
        # burst of drawings neither queues ahead of the gateway's file reads in the loop's
        # default executor nor takes the cores from the requests it stands in for.
        self._threads = ThreadPoolExecutor(
            DRAWING_THREADS, thread_name_prefix="promptpix-local", initializer=lower_priority
        )

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(self._threads, render, request)
        # A simulated provider answers `latency` after it was asked, its drawing included.
        remaining = self.latency_s - (time.perf_counter() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        return GeneratedImage(
            data=data,
            content_type="image/jpeg",
            generator=self.id,
            model=self.model,
            details={"placeholder": True},
        )

    async def aclose(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def render(request: GenerationRequest) -> bytes:
    width, height = request.size
    plain = request.style in BUILTIN_STYLES and BUILTIN_STYLES[request.style].transparent
    layout = int(request.key[:16], 16) % LAYOUTS
    scene = _scene(width, height, plain, colour_words(request.prompt), layout)
    label = f"{LABEL} · seed {request.seed}" + (f" · {request.style}" if request.style else "")
    strip = _strip(scene, label, request.prompt, plain)
    # The strip is whole rows across the full width: row by row, it is the scene's start.
    pixels = strip.tobytes() + scene.pixels[strip.nbytes :]
    if request.references:
        pixels = _insets(pixels, width, height, request.references)
    return encode(pyvips.Image.new_from_memory(pixels, width, height, 3, "uchar"), QUALITY, pixels)


def _insets(pixels: bytes, width: int, height: int, references: tuple[bytes, ...]) -> bytes:
    """The reference images as framed thumbnails along the bottom edge, right to left: the
    placeholder shows what it was given."""
    canvas = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3).copy()
    side = max(16, min(width, height) // 5)
    margin = max(4, side // 12)
    right = width - margin
    for ref in references:
        thumb = pyvips.Image.thumbnail_buffer(ref, side, height=side)
        if thumb.interpretation not in ("srgb", "b-w"):
            thumb = thumb.colourspace("srgb")
        if thumb.hasalpha():
            thumb = thumb.flatten(background=[255, 255, 255])
        if thumb.bands == 1:
            thumb = thumb.bandjoin([thumb, thumb])
        thumb = thumb.cast("uchar")
        tile = np.ndarray(
            buffer=thumb.write_to_memory(), dtype=np.uint8, shape=(thumb.height, thumb.width, 3)
        )
        left, top = right - thumb.width, height - margin - thumb.height
        if left - margin < 0 or top - margin < 0:
            break
        canvas[top - 2 : top + thumb.height + 2, left - 2 : left + thumb.width + 2] = 255
        canvas[top : top + thumb.height, left : left + thumb.width] = tile[:, :, :3]
        right = left - 2 * margin
    return canvas.tobytes()


def colour_words(prompt: str) -> tuple[tuple[int, int, int], ...]:
    words = [w.strip(".,;:!?\"'()").lower() for w in prompt.split()]
    return tuple(dict.fromkeys(COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS))[:4]


def palette(
    named: tuple[tuple[int, int, int], ...], rng: random.Random
) -> list[tuple[int, int, int]]:
    colours = list(named)
    base_hue = rng.random()
    while len(colours) < 4:
        hue = (base_hue + 0.17 * len(colours) + rng.uniform(-0.04, 0.04)) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 0.85), rng.uniform(0.55, 0.95))
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


@functools.lru_cache(maxsize=1)
def _grain() -> np.ndarray:
    """A fixed grain field shared by every size."""
    rng = np.random.default_rng(7)
    return rng.normal(0.0, GRAIN, size=(1536, 1536, 1)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Scene:
    pixels: bytes  # the whole scene, 8-bit RGB, row by row
    top: np.ndarray  # the rows the strip covers (read-only: a view of `pixels`)
    shaded: np.ndarray  # those rows darkened, as the strip (or the tag) shows them
    size: int  # the strip's font size, in pixels

    @property
    def strip_height(self) -> int:
        return int(self.top.shape[0])


@functools.lru_cache(maxsize=SCENES)
def _scene(
    width: int,
    height: int,
    plain: bool,
    named: tuple[tuple[int, int, int], ...],
    layout: int,
) -> Scene:
    """A scene: drawn once per size, palette and layout, then shared by every key."""
    rng = random.Random(f"{width}x{height}:{plain}:{named}:{layout}")
    c0, c1, c2, c3 = (np.array(c, dtype=np.float32) for c in palette(named, rng)[:4])
    ys = np.arange(height, dtype=np.float32)[:, None, None]
    xs = np.arange(width, dtype=np.float32)[None, :, None]
    ax, ay = rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)
    t = (xs * ax + ys * ay) / (width * ax + height * ay)
    if plain:  # styles that ask for a plain background get one, ready to be removed
        img = np.full((height, width, 3), 255, dtype=np.float32)
    else:
        img = np.asarray(c0 + (c1 - c0) * t, dtype=np.float32)

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
    if plain:  # a clear margin of background all round, as an icon or a logo has
        m = max(2, int(short * 0.04))
        out = out.crop(m, m, width - 2 * m, height - 2 * m).embed(
            m, m, width, height, extend="background", background=[255, 255, 255]
        )
    # The strip holds two lines of text (the label over the prompt) and its margins.
    size = max(14, int(short * 0.024))
    lines = pyvips.Image.text(f"<b>{LABEL}</b>\nAg", font=f"sans {size}px").height
    need = lines + 2 * (size // 2) + (3 * size if plain else 0)
    rows = min(-(-need // BLOCK_ROWS), height // BLOCK_ROWS - 1)
    pixels = out.copy(interpretation="srgb").write_to_memory()
    top = np.frombuffer(pixels, dtype=np.uint8, count=rows * BLOCK_ROWS * width * 3)
    top = top.reshape(rows * BLOCK_ROWS, width, 3)
    shaded = (top.astype(np.float32) * SHADE).astype(np.uint8)
    return Scene(pixels, top, shaded, size)


def _strip(scene: Scene, label: str, prompt: str, plain: bool) -> np.ndarray:
    """The scene's top rows with the label and the prompt on them."""
    size, (height, width, _) = scene.size, scene.top.shape
    pad = size // 2
    room = width - 2 * pad if not plain else width - 4 * size - 2 * pad
    mask = _caption(label, prompt, size, room)
    fits = height - 2 * pad - (3 * size if plain else 0)
    if mask.height > fits:
        mask = mask.crop(0, 0, mask.width, max(1, fits))
    # A plain background stays plain to its edges (it is removed later): the label is a tag
    # inside it instead of a strip across the top.
    return _tag(scene, mask) if plain else _banner(scene, mask)


def _caption(label: str, prompt: str, size: int, room: int) -> pyvips.Image:
    """The label in bold over the prompt, cut short to one line that fits `room` pixels."""
    caption = textwrap.shorten(" ".join(prompt.split()), max(8, room * 2 // size), placeholder=" …")
    for _ in range(4):
        markup = f"<b>{_escape(label)}</b>" + (f"\n{_escape(caption)}" if caption else "")
        mask = pyvips.Image.text(markup, font=f"sans {size}px")
        if mask.width <= room or not caption:
            break
        keep = max(0, len(caption) * room // mask.width - 2)
        caption = (caption[:keep].rstrip() + " …") if keep > 8 else ""
    return mask.crop(0, 0, min(mask.width, room), mask.height) if mask.width > room else mask


def _array(img: pyvips.Image) -> np.ndarray:
    return np.ndarray(
        buffer=img.write_to_memory(), dtype=np.uint8, shape=(img.height, img.width, img.bands)
    )


def _write(under: np.ndarray, mask: pyvips.Image, left: int, top: int) -> None:
    """White text blended onto `under` (in place) where the text mask covers it."""
    m = _array(mask)[..., :1].astype(np.uint16)
    region = under[top : top + m.shape[0], left : left + m.shape[1]]
    region[...] = (m * 255 + region * (255 - m) + 127) // 255


def _banner(scene: Scene, mask: pyvips.Image) -> np.ndarray:
    """A darkened strip across the top that says what this image is."""
    pad = scene.size // 2
    strip = scene.shaded.copy()
    _write(strip, mask, pad, pad)
    return strip


def _tag(scene: Scene, mask: pyvips.Image) -> np.ndarray:
    """The label on a dark tag centred near the top, clear of the image's edges."""
    size, pad = scene.size, scene.size // 2
    out = scene.top.copy()
    tag_w, tag_h = mask.width + 2 * pad, mask.height + 2 * pad
    left, top = (out.shape[1] - tag_w) // 2, 2 * size
    if left < 0 or top + tag_h > out.shape[0]:
        return out
    out[top : top + tag_h, left : left + tag_w] = scene.shaded[
        top : top + tag_h, left : left + tag_w
    ]
    _write(out, mask, left + pad, top + pad)
    return out


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
