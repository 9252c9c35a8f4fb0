"""An uploaded image, checked from its header before anything is decoded: its format from
its first bytes (JPEG, PNG, WebP, AVIF, HEIF or GIF, nothing else), its size from the
header against the pixel budget; then, once it passed, decoded once for its focal point.

A decompression bomb (a few hundred bytes whose header declares 144 million pixels) is
refused here by its header; bytes that name a supported format and are not a readable
image of it are refused when libvips reads the header, or at the latest by the decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyvips

from .analysis import analyse
from .errors import UnreadableImage, UnsupportedFormat
from .source import header

FORMATS = "JPEG, PNG, WebP, AVIF, HEIF or GIF"
# The brands of an ISO-BMFF (`ftyp`) file that make it AVIF, or HEIF (HEVC and friends).
AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})


def sniff(data: bytes) -> str | None:
    """The content type that the first bytes say, among the formats taken; else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[4:8] == b"ftyp":
        return _iso_brand(data)
    return None


def _iso_brand(data: bytes) -> str | None:
    """AVIF or HEIF by the major brand, else by the compatible brands of the `ftyp` box."""
    size = int.from_bytes(data[:4], "big")
    end = min(max(size, 16), len(data), 256)
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, end - 3, 4)]
    if any(b in AVIF_BRANDS for b in brands):
        return "image/avif"
    if any(b in HEIF_BRANDS for b in brands):
        return "image/heif"
    return None


@dataclass(frozen=True, slots=True)
class Checked:
    content_type: str
    width: int  # upright, from the header
    height: int


def check(data: bytes, max_pixels: int) -> Checked:
    """The format and size from the header alone: UnsupportedFormat for anything but the
    formats taken, SourceTooLarge over the pixel budget, UnreadableImage for a header that
    is not one."""
    content_type = sniff(data)
    if content_type is None:
        raise UnsupportedFormat(f"not an image the gateway takes ({FORMATS})")
    try:
        head = header(data, max_pixels)
    except pyvips.Error as exc:  # header() maps its own; an odd header can fail elsewhere
        raise UnreadableImage(f"not a readable {content_type} image") from exc
    except UnreadableImage:
        raise UnreadableImage(f"not a readable {content_type} image") from None
    if head.width < 1 or head.height < 1:
        raise UnreadableImage(f"not a readable {content_type} image")
    return Checked(content_type, head.width, head.height)


@dataclass(frozen=True, slots=True)
class Examined:
    checked: Checked
    focal: tuple[float, float]  # fractions of the upright image
    shrinkable: bool  # decodes smaller on load (JPEG)


def examine(data: bytes, max_pixels: int) -> Examined:
    """`check`, then one decode (as small as the analysis allows) for the focal point; the
    decode also proves the bytes are the image their header says."""
    checked = check(data, max_pixels)
    try:
        analysed = analyse(data, max_pixels)
    except pyvips.Error as exc:
        raise UnreadableImage(f"the {checked.content_type} image could not be decoded") from exc
    except UnreadableImage:
        raise UnreadableImage(f"the {checked.content_type} image could not be decoded") from None
    return Examined(checked, analysed.focal, analysed.header.shrinkable)
