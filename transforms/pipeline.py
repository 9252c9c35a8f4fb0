"""A transform is a list of small steps over one context, then an encode.

Each step reads and updates the context; none sees the request. Adding a step is one
function and one line in STEPS.

The pixels may be a reduced decode of the original (JPEG shrink-on-load): every size is
planned in the original's pixels and mapped onto the decoded ones, so the output's size
does not depend on how the original was decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyvips

from .background import remove_background
from .formats import FORMATS, Format
from .geometry import ANCHOR_POINTS, box_size, crop_box, fit_size
from .params import TransformParams
from .source import Source


@dataclass(slots=True)
class Context:
    image: pyvips.Image
    full: tuple[int, int]  # the current image's size in the original's pixels
    focal: tuple[float, float]  # fractions of the current image
    params: TransformParams
    native: tuple[int, int]  # the ratio the original was generated at
    fmt: Format
    limit: int
    box: tuple[int, int] = (0, 0)  # the output box, set by `plan`

    @property
    def has_alpha(self) -> bool:
        return bool(self.image.bands == 4)

    def crop(self, left: int, top: int, width: int, height: int) -> None:
        """Crop to a box given in the original's pixels."""
        img, (full_w, full_h) = self.image, self.full
        sx, sy = img.width / full_w, img.height / full_h
        x, y = min(round(left * sx), img.width - 1), min(round(top * sy), img.height - 1)
        w = max(1, min(img.width - x, round(width * sx)))
        h = max(1, min(img.height - y, round(height * sy)))
        if (x, y, w, h) != (0, 0, img.width, img.height):
            self.image = img.crop(x, y, w, h)
        self.full = (width, height)


Step = Callable[[Context], None]


def crop_to_view(ctx: Context) -> None:
    """A ratio that is not native is a crop of the native original, keeping what `anchor`
    says (by default the focal point), as the `cover` crop to the box does."""
    view, native = ctx.params.view, ctx.native
    if view[0] * native[1] == view[1] * native[0]:  # 21:9 arrives reduced, as 7:3
        return
    _crop_anchored(ctx, *view)


def plan(ctx: Context) -> None:
    p = ctx.params
    ctx.box = box_size(*ctx.full, p.width, p.height, p.fit, ctx.limit)


def resize(ctx: Context) -> None:
    p = ctx.params
    box_w, box_h = ctx.box
    if p.fit == "cover" and (box_w, box_h) != ctx.full:
        _crop_anchored(ctx, box_w, box_h)
    img = ctx.image
    out_w, out_h = fit_size(*ctx.full, box_w, box_h, p.fit)
    if (out_w, out_h) != (img.width, img.height):
        alpha = img.bands == 4
        if alpha:
            img = img.premultiply()
        img = img.resize(out_w / img.width, vscale=out_h / img.height)
        if alpha:
            img = img.unpremultiply().cast("uchar")
    ctx.image = img


def _crop_anchored(ctx: Context, ratio_w: int, ratio_h: int) -> None:
    """Crop to the largest box of ratio `ratio_w:ratio_h`, keeping what the anchor says:
    the focal point, a named side or fractions, or libvips' choice of the most interesting
    region (`attention`, `entropy`)."""
    anchor = ctx.params.anchor
    full_w, full_h = ctx.full
    if anchor in ("attention", "entropy"):
        img = ctx.image
        _, _, crop_w, crop_h = crop_box(img.width, img.height, ratio_w, ratio_h, (0.5, 0.5))
        if (crop_w, crop_h) != (img.width, img.height):
            ctx.image = img.smartcrop(crop_w, crop_h, interesting=anchor)
        _, _, full_w, full_h = crop_box(full_w, full_h, ratio_w, ratio_h, (0.5, 0.5))
        ctx.full = (full_w, full_h)
        return
    if anchor == "focal":
        point = ctx.focal
    elif isinstance(anchor, str):
        point = ANCHOR_POINTS[anchor]
    else:
        point = anchor
    left, top, w, h = crop_box(full_w, full_h, ratio_w, ratio_h, point)
    if (w, h) == (full_w, full_h):
        return
    # The focal point moves with the crop: a later `cover` crop around it still finds it.
    fx = (ctx.focal[0] * full_w - left) / w
    fy = (ctx.focal[1] * full_h - top) / h
    ctx.crop(left, top, w, h)
    ctx.focal = (min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0))


def strip_background(ctx: Context) -> None:
    if ctx.params.rmbg:
        ctx.image = remove_background(ctx.image)


def blur(ctx: Context) -> None:
    sigma = ctx.params.blur
    if sigma <= 0:
        return
    img = ctx.image
    if img.bands == 4:
        ctx.image = img.premultiply().gaussblur(sigma).unpremultiply().cast("uchar")
    else:
        ctx.image = img.gaussblur(sigma).cast("uchar")


def pad(ctx: Context) -> None:
    """`contain` centres the image in its box on the padding colour."""
    box_w, box_h = ctx.box
    img = ctx.image
    if ctx.params.fit != "contain" or (img.width, img.height) == (box_w, box_h):
        return
    colour = ctx.params.bg
    transparent = ctx.fmt.alpha and (colour is None or not ctx.params.bg_given)
    if transparent:
        if img.bands == 3:
            img = img.bandjoin(255)
        background = [0, 0, 0, 0]
    else:
        rgb = list(colour) if colour is not None else [255, 255, 255]
        background = [*rgb, 255] if img.bands == 4 else rgb
    left, top = (box_w - img.width) // 2, (box_h - img.height) // 2
    ctx.image = img.embed(left, top, box_w, box_h, extend="background", background=background)


def flatten(ctx: Context) -> None:
    """Alpha goes where the format cannot carry it, or onto an explicit `bg` colour."""
    if not ctx.has_alpha:
        return
    colour = ctx.params.bg if ctx.params.bg_given else None
    if colour is not None or not ctx.fmt.alpha:
        ctx.image = ctx.image.flatten(background=list(colour or (255, 255, 255))).cast("uchar")


STEPS: tuple[Step, ...] = (crop_to_view, plan, resize, strip_background, blur, pad, flatten)


@dataclass(frozen=True, slots=True)
class Rendered:
    data: bytes
    content_type: str
    width: int
    height: int


def render(
    source: Source,
    size: tuple[int, int],
    focal: tuple[float, float],
    native: tuple[int, int],
    params: TransformParams,
    limit: int,
) -> Rendered:
    """Run every step, then encode in the (already negotiated) output format. `size` is the
    original's size; `source` may be decoded smaller."""
    fmt = FORMATS[params.fmt]
    start = source.image()
    ctx = Context(start, size, focal, params, native, fmt, limit)
    for step in STEPS:
        step(ctx)
    if ctx.image is start:  # the decode is the answer (a JPEG shrunk on load to the size asked)
        img = start.copy(interpretation="srgb")
        data = fmt.encode(img, params.quality, pixels=source.pixels)
        return Rendered(data, fmt.content_type, source.width, source.height)
    img = ctx.image.copy(interpretation="srgb")
    return Rendered(fmt.encode(img, params.quality), fmt.content_type, img.width, img.height)


def shrink_factor(
    size: tuple[int, int], native: tuple[int, int], params: TransformParams, limit: int
) -> int:
    """How much smaller (1, 2, 4 or 8) the original can be decoded for this output and still
    give each output pixel at least one decoded pixel. The sizes are those the steps above
    plan (crop sizes do not depend on where the crop is)."""
    w, h = size
    view = params.view
    if view[0] * native[1] != view[1] * native[0]:
        w, h = crop_box(w, h, view[0], view[1], (0.5, 0.5))[2:]
    box_w, box_h = box_size(w, h, params.width, params.height, params.fit, limit)
    if params.fit == "cover" and (box_w, box_h) != (w, h):
        w, h = crop_box(w, h, box_w, box_h, (0.5, 0.5))[2:]
    out_w, out_h = fit_size(w, h, box_w, box_h, params.fit)
    room = min(w / out_w, h / out_h)
    factor = 1
    while factor < 8 and factor * 2 <= room:
        factor *= 2
    return factor
