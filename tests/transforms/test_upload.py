"""An upload's header check, directly: the format from the first bytes, the size from the
header against the pixel budget, garbage refused, then the focal point (no server)."""

from __future__ import annotations

import struct
import zlib

import pytest
import pyvips

from promptpix.transforms.errors import SourceTooLarge, UnreadableImage, UnsupportedFormat
from promptpix.transforms.upload import check, examine, sniff
from promptpix.transforms.vips import configure

configure()

PICTURE = (
    pyvips.Image.black(60, 40, bands=3)
    .linear(1, [20, 120, 60])
    .cast("uchar")
    .insert(pyvips.Image.black(8, 8, bands=3).linear(1, [255, 255, 255]).cast("uchar"), 48, 4)
)
TAKEN = {
    "image/jpeg": PICTURE.jpegsave_buffer(),
    "image/png": PICTURE.pngsave_buffer(),
    "image/webp": PICTURE.webpsave_buffer(),
    "image/avif": PICTURE.heifsave_buffer(compression="av1"),
    "image/gif": PICTURE.gifsave_buffer(),
}


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("kind", sorted(TAKEN))
def test_each_format_taken_is_told_by_its_bytes_and_measured(kind: str) -> None:
    data = TAKEN[kind]
    assert sniff(data) == kind
    checked = check(data, 1_000_000)
    assert (checked.content_type, checked.width, checked.height) == (kind, 60, 40)
    examined = examine(data, 1_000_000)
    assert examined.checked == checked
    assert examined.focal[0] > 0.5 and examined.focal[1] < 0.5  # the bright square
    assert examined.shrinkable == (kind == "image/jpeg")


def test_a_heif_brand_is_heif() -> None:
    box = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    assert sniff(box + bytes(16)) == "image/heif"
    assert sniff(struct.pack(">I", 20) + b"ftypmp42" + bytes(8) + b"isom") is None  # a video


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        PICTURE.tiffsave_buffer(),
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        b"",
        b"BM" + bytes(60),
    ],
)
def test_anything_else_is_unsupported(data: bytes) -> None:
    assert sniff(data) is None
    with pytest.raises(UnsupportedFormat):
        check(data, 1_000_000)


def test_a_header_over_the_budget_is_refused_before_any_decode() -> None:
    bomb = png_header_only(12000, 12000)
    assert len(bomb) < 200
    with pytest.raises(SourceTooLarge, match="12000x12000"):
        check(bomb, 50_000_000)
    assert check(png_header_only(100, 100), 50_000_000).width == 100  # under it: measured


def test_garbage_behind_a_signature_is_unreadable() -> None:
    for magic in (
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0",
        b"GIF89a",
        b"RIFF\x00\x00\x00\x00WEBP",
    ):
        with pytest.raises(UnreadableImage):
            examine(magic + bytes(range(256)) * 3, 1_000_000)
