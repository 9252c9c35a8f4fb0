"""Decoded originals: pixels in memory, upright, 8-bit sRGB, checked against a pixel budget.

A JPEG can be decoded at 1/2, 1/4 or 1/8 of its size for little more than the cost of
reading its bytes (shrink-on-load): small outputs and the focal-point analysis use that.
A plain JPEG (no profile, upright) takes the fast path of `jpeg.py`; the rest, libvips.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyvips

from .errors import SourceTooLarge, UnreadableImage
from .jpeg import decode_plain, plain_jpeg


@dataclass(frozen=True, slots=True)
class Source:
    """An original decoded once and kept hot: every transform starts from these pixels."""

    pixels: bytes
    width: int
    height: int
    bands: int  # 3 (RGB) or 4 (RGBA)

    def image(self) -> pyvips.Image:
        return pyvips.Image.new_from_memory(
            self.pixels, self.width, self.height, self.bands, "uchar"
        )

    @property
    def nbytes(self) -> int:
        return len(self.pixels)

    @property
    def has_alpha(self) -> bool:
        return self.bands == 4


def probe(data: bytes, max_pixels: int) -> pyvips.Image:
    """Read the header only and refuse an image over the pixel budget before any decode."""
    try:
        img = pyvips.Image.new_from_buffer(data, "", access="random")
    except pyvips.Error as exc:
        raise UnreadableImage("not an image in an allowed format") from exc
    _check_budget(img.width, img.height, max_pixels)
    return img


def _check_budget(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise SourceTooLarge(f"source has {width}x{height} pixels; the budget is {max_pixels}")


@dataclass(frozen=True, slots=True)
class Header:
    width: int  # upright, as decoded
    height: int
    shrinkable: bool  # decodes smaller on load (JPEG)


def header(data: bytes, max_pixels: int) -> Header:
    """The upright size and whether it shrinks on load, from the header alone."""
    plain = plain_jpeg(data)
    if plain is not None:
        _check_budget(plain.width, plain.height, max_pixels)
        return Header(plain.width, plain.height, True)
    img = probe(data, max_pixels)
    width, height = img.width, img.height
    if img.get_typeof("orientation") != 0 and img.get("orientation") in (5, 6, 7, 8):
        width, height = height, width
    return Header(width, height, _shrinkable(img))


def _shrinkable(img: pyvips.Image) -> bool:
    return img.get_typeof("vips-loader") != 0 and str(img.get("vips-loader")).startswith("jpegload")


def decode(data: bytes, max_pixels: int, shrink: int = 1) -> Source:
    """Decode to pixels; `shrink` (2, 4 or 8) decodes a JPEG that much smaller."""
    plain = plain_jpeg(data)
    if plain is not None:
        _check_budget(plain.width, plain.height, max_pixels)
        pixels = decode_plain(data, plain, shrink)
        if pixels is not None:
            return Source(pixels, -(-plain.width // shrink), -(-plain.height // shrink), 3)
    img = probe(data, max_pixels)
    try:
        if shrink > 1 and _shrinkable(img):
            img = pyvips.Image.new_from_buffer(data, "", access="random", shrink=shrink)
        img = to_srgb(img.autorot())
        pixels = img.write_to_memory()
    except pyvips.Error as exc:
        raise UnreadableImage("the image could not be decoded") from exc
    return Source(pixels, img.width, img.height, img.bands)


def to_srgb(img: pyvips.Image) -> pyvips.Image:
    """Convert to 8-bit sRGB through the embedded ICC profile when there is one."""
    if img.get_typeof("icc-profile-data") != 0:
        try:
            img = img.icc_transform("srgb", embedded=True, intent="perceptual")
        except pyvips.Error:
            img = img.colourspace("srgb")
    elif img.interpretation not in ("srgb",):
        img = img.colourspace("srgb")
    if img.format != "uchar":
        img = img.cast("uchar")
    if img.bands == 2:  # grey + alpha after an odd colourspace: make it RGBA
        img = img[0].bandjoin([img[0], img[0], img[1]])
    elif img.bands == 1:
        img = img.bandjoin([img, img])
    elif img.bands > 4:
        img = img[:4]
    return img.copy(interpretation="srgb")
