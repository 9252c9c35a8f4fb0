"""JPEG through libjpeg-turbo (SIMD) with simplejpeg: plain JPEGs decoded, scaled on load,
and every JPEG output encoded.

A JPEG is plain when it is 8-bit, three components (YCbCr), upright (no EXIF orientation
other than 1) and carries no ICC profile and no Adobe colour transform: what generators
and most encoders write. Anything else is decoded by libvips, which applies the profile
and the orientation. The choice depends on the bytes alone, so one original always
decodes the same way. Decoding here skips libvips' per-operation overhead (about 0.6 ms)
and its slower decoder (about 1.5x): for a generated original at 1/4 scale, about 1.6 ms
instead of 3. Encoding a variant here takes about half of libvips' time, with the settings
libvips would use (4:2:0 chroma below quality 90, standard Huffman tables, no metadata).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyvips
import simplejpeg

SOF_BASELINE_TO_PROGRESSIVE = (0xC0, 0xC1, 0xC2)  # Huffman-coded frames libjpeg decodes
STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # markers without a length
# Segments that need libvips: a colour profile (APP2), an Adobe colour transform (APP14).
NEEDS_LIBVIPS = {0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}


@dataclass(frozen=True, slots=True)
class PlainJpeg:
    width: int
    height: int


def segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """A JPEG's header segments, up to and including its start of scan, as (marker, start,
    end): the segment is `data[start:end]`, its body `data[start + 4:end]`; after the start
    of scan, `end` is where the entropy-coded data begins. Stops at anything malformed."""
    if not data.startswith(b"\xff\xd8"):
        return
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > size:
            return
        yield marker, pos, end
        if marker == 0xDA:
            return
        pos = end


def plain_jpeg(data: bytes) -> PlainJpeg | None:
    """The size of a plain JPEG (see the module), from its markers; None for anything else."""
    size = None
    for marker, start, end in segments(data):
        body = data[start + 4 : end]
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            if _orientation(body[6:]) not in (None, 1):
                return None
        elif marker in NEEDS_LIBVIPS and body.startswith(NEEDS_LIBVIPS[marker]):
            return None
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in SOF_BASELINE_TO_PROGRESSIVE or len(body) < 6:
                return None
            precision, components = body[0], body[5]
            height = int.from_bytes(body[1:3], "big")
            width = int.from_bytes(body[3:5], "big")
            if precision != 8 or components != 3 or not width or not height:
                return None
            size = PlainJpeg(width, height)
        elif marker == 0xDA:  # start of scan: every header marker has been seen
            return size
    return None


def _orientation(tiff: bytes) -> int | None:
    """The EXIF orientation tag of IFD0, if the TIFF block has one."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for i in range(count):
        at = ifd + 2 + 12 * i
        if at + 12 > len(tiff):
            return None
        if int.from_bytes(tiff[at : at + 2], order) == 0x0112:
            return int.from_bytes(tiff[at + 8 : at + 10], order)
    return None


def decode_plain(data: bytes, info: PlainJpeg, shrink: int = 1) -> bytes | None:
    """RGB pixels at 1/`shrink` (1, 2, 4 or 8) of a plain JPEG's size, as libjpeg scales
    them (each side rounded up); None if libjpeg reports the data damaged."""
    want_w, want_h = -(-info.width // shrink), -(-info.height // shrink)
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=want_w, min_height=want_h, min_factor=shrink
        )
    except ValueError:
        return None
    if pixels.shape != (want_h, want_w, 3):
        return None
    return bytes(pixels.tobytes())


def encode(img: pyvips.Image, quality: int, pixels: bytes | None = None) -> bytes:
    """A JPEG of an 8-bit RGB (or grey) image; `pixels`, its pixels if already in memory."""
    array = np.ndarray(
        buffer=img.write_to_memory() if pixels is None else pixels,
        dtype=np.uint8,
        shape=(img.height, img.width, img.bands),
    )
    return bytes(
        simplejpeg.encode_jpeg(
            array,
            quality=quality,
            colorspace="GRAY" if img.bands == 1 else "RGB",
            colorsubsampling="444" if quality >= 90 else "420",
        )
    )
