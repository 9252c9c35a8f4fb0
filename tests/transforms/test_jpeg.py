"""The JPEG fast path: which JPEGs it takes, that it decodes them as libvips would, that
everything else still gets its orientation and colour profile applied, and the encoder."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips

from promptpix.transforms import jpeg
from promptpix.transforms.errors import SourceTooLarge, UnreadableImage
from promptpix.transforms.source import decode, header
from promptpix.transforms.vips import configure

configure()


def photo(width: int = 320, height: int = 200) -> pyvips.Image:
    """A smooth picture with a bright block top left, so orientation shows."""
    ys, xs = np.mgrid[:height, :width]
    rgb = np.stack([xs * 255 // width, ys * 255 // height, np.full_like(xs, 90)], axis=-1).astype(
        np.uint8
    )
    rgb[: height // 4, : width // 4] = (250, 250, 250)
    return pyvips.Image.new_from_memory(rgb.tobytes(), width, height, 3, "uchar").copy(
        interpretation="srgb"
    )


def as_array(source_or_image: object) -> np.ndarray:
    if isinstance(source_or_image, pyvips.Image):
        img = source_or_image
        return np.ndarray(
            buffer=img.write_to_memory(),
            dtype=np.uint8,
            shape=(img.height, img.width, img.bands),
        )
    s = source_or_image
    return np.frombuffer(s.pixels, dtype=np.uint8).reshape(s.height, s.width, s.bands)  # type: ignore[attr-defined]


def libvips_decode(data: bytes, shrink: int = 1) -> np.ndarray:
    return as_array(pyvips.Image.new_from_buffer(data, "", shrink=shrink))


def test_a_plain_jpeg_is_recognised_with_its_size() -> None:
    data = photo().jpegsave_buffer(Q=85, keep="none")
    assert jpeg.plain_jpeg(data) == jpeg.PlainJpeg(320, 200)
    progressive = photo().jpegsave_buffer(Q=85, keep="none", interlace=True)
    assert jpeg.plain_jpeg(progressive) == jpeg.PlainJpeg(320, 200)


def with_orientation(data: bytes, orientation: int) -> bytes:
    img = pyvips.Image.new_from_buffer(data, "").copy()
    img.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return bytes(img.jpegsave_buffer(Q=85))


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("not a JPEG", lambda: photo().pngsave_buffer()),
        ("grey", lambda: photo().colourspace("b-w").jpegsave_buffer(keep="none")),
        ("CMYK", lambda: photo().icc_transform("cmyk").jpegsave_buffer(keep="icc")),
        ("ICC profile", lambda: photo().icc_transform("p3").jpegsave_buffer(keep="icc")),
        ("rotated", lambda: with_orientation(photo().jpegsave_buffer(keep="none"), 6)),
        ("truncated header", lambda: photo().jpegsave_buffer(keep="none")[:120]),
        ("garbage", lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64),
    ],
)
def test_anything_else_is_left_to_libvips(name: str, make: object) -> None:
    assert jpeg.plain_jpeg(make()) is None, name  # type: ignore[operator]


def test_orientation_1_stays_on_the_fast_path() -> None:
    upright = with_orientation(photo().jpegsave_buffer(keep="none"), 1)
    assert jpeg.plain_jpeg(upright) == jpeg.PlainJpeg(320, 200)


@pytest.mark.parametrize("shrink", [1, 2, 4, 8])
def test_the_fast_path_decodes_as_libvips_does(shrink: int) -> None:
    data = photo(1024, 768).jpegsave_buffer(Q=88, keep="none")
    fast = decode(data, 10**8, shrink)
    slow = libvips_decode(data, shrink)
    assert (fast.width, fast.height, fast.bands) == (slow.shape[1], slow.shape[0], 3)
    diff = np.abs(as_array(fast).astype(int) - slow.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.5


def test_sizes_that_do_not_divide_round_up_as_libjpeg_does() -> None:
    data = photo(1001, 333).jpegsave_buffer(Q=85, keep="none")
    source = decode(data, 10**8, 4)
    assert (source.width, source.height) == (251, 84)  # every original pixel is covered


def test_rotated_jpegs_are_decoded_upright() -> None:
    data = with_orientation(photo().jpegsave_buffer(keep="none"), 6)  # rotate 90 clockwise
    head = header(data, 10**8)
    assert (head.width, head.height) == (200, 320)
    pixels = as_array(decode(data, 10**8))
    assert pixels.shape == (320, 200, 3)
    # The bright block, top left before rotating, is now top right.
    assert pixels[:40, -40:].mean() > 240 and pixels[:40, :40].mean() < 200


def test_a_wide_gamut_profile_is_converted_not_dropped() -> None:
    # sRGB's pure green, stored in Display P3 numbers: decoded, it is sRGB's green again.
    green = pyvips.Image.black(64, 64, bands=3).new_from_image([0, 255, 0]).cast("uchar")
    p3 = green.copy(interpretation="srgb").icc_transform("p3").jpegsave_buffer(keep="icc", Q=95)
    raw = libvips_decode(p3)  # the P3 numbers as stored, no conversion
    converted = as_array(decode(p3, 10**8))
    assert raw[..., 0].mean() > 60  # in P3, sRGB's green has a good deal of red
    assert converted[..., 0].mean() < 20 and converted[..., 1].mean() > 240


def test_a_damaged_plain_jpeg_falls_back_to_libvips() -> None:
    data = photo(512, 512).jpegsave_buffer(Q=85, keep="none")
    cut = data[: len(data) // 2] + b"\xff\xd9"  # the scan ends half way
    assert jpeg.plain_jpeg(cut) is not None
    assert jpeg.decode_plain(cut, jpeg.PlainJpeg(512, 512), 1) is None
    source = decode(cut, 10**8)  # libvips decodes what it can, as before
    assert (source.width, source.height) == (512, 512)


def test_the_pixel_budget_is_checked_on_the_fast_path_too() -> None:
    data = photo(400, 300).jpegsave_buffer(keep="none")
    with pytest.raises(SourceTooLarge):
        header(data, 100_000)
    with pytest.raises(SourceTooLarge):
        decode(data, 100_000)
    with pytest.raises(UnreadableImage):
        decode(b"not an image at all", 100_000)


@pytest.mark.parametrize(("quality", "chroma"), [(80, (2, 2)), (95, (1, 1))])
def test_the_encoder_writes_a_clean_jpeg_with_libvips_settings(
    quality: int, chroma: tuple[int, int]
) -> None:
    img = photo()
    data = jpeg.encode(img, quality)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    back = pyvips.Image.new_from_buffer(data, "", fail_on="warning")
    assert (back.width, back.height, back.bands) == (320, 200, 3)
    assert _sampling(data) == chroma  # luma sampling factors: 2x2 is 4:2:0, 1x1 is 4:4:4
    diff = np.abs(as_array(back).astype(int) - as_array(img).astype(int))
    assert diff.mean() < 3
    grey = jpeg.encode(img.colourspace("b-w"), 80)
    assert pyvips.Image.new_from_buffer(grey, "").bands == 1


def _sampling(data: bytes) -> tuple[int, int]:
    at = data.index(b"\xff\xc0")  # baseline frame header: components follow the size
    factors = data[at + 11]  # first component's sampling byte: H << 4 | V
    return factors >> 4, factors & 0x0F
