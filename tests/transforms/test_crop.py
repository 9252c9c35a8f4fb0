"""The crop of a new original to its key's ratio, around its focal point, on real images."""

from __future__ import annotations

import pytest
import pyvips

from promptpix.transforms.crop import crop_to_ratio, needs_crop
from promptpix.transforms.errors import SourceTooLarge, UnreadableImage
from promptpix.transforms.source import decode
from tests.generator_fakes import png

BUDGET = 50_000_000


def test_the_crop_keeps_the_focal_point() -> None:
    data = png(300, 200)  # the bright disc sits at (2/3, 1/3)
    out, ctype, details = crop_to_ratio(data, "image/png", (1, 1), BUDGET)
    src = decode(out, BUDGET)
    assert (src.width, src.height) == (200, 200) and ctype == "image/png"
    left = details["crop_offset"][0]  # type: ignore[index]
    assert 75 <= left <= 100  # moved right, towards the disc (centred would be 50)
    assert details["generated_size"] == [300, 200] and details["cropped_to"] == [200, 200]


def test_an_image_at_the_ratio_comes_back_unchanged() -> None:
    data = png(300, 200)
    same, ctype, none = crop_to_ratio(data, "image/png", (3, 2), BUDGET)
    assert same == data and ctype == "image/png" and none == {}
    assert not needs_crop(302, 200, (3, 2))  # within 1 %: the ratio already
    assert needs_crop(1344, 768, (16, 9))  # 1.75 is 1.6 % off 16:9
    assert needs_crop(1536, 1024, (16, 9))


@pytest.mark.parametrize(
    ("size", "ratio", "want"),
    [((192, 128), (16, 9), (192, 108)), ((128, 192), (9, 16), (108, 192))],
)
def test_a_nearest_ratio_is_cropped_across_its_long_side(
    size: tuple[int, int], ratio: tuple[int, int], want: tuple[int, int]
) -> None:
    out, _, _ = crop_to_ratio(png(*size), "image/png", ratio, BUDGET)
    src = decode(out, BUDGET)
    assert (src.width, src.height) == want


def test_a_jpeg_stays_a_jpeg() -> None:
    jpeg = pyvips.Image.new_from_buffer(png(300, 200), "").jpegsave_buffer(Q=90)
    out, ctype, _ = crop_to_ratio(jpeg, "image/jpeg", (1, 1), BUDGET)
    assert ctype == "image/jpeg" and out.startswith(b"\xff\xd8")
    assert (decode(out, BUDGET).width, decode(out, BUDGET).height) == (200, 200)


def test_what_is_not_an_image_or_too_large_is_refused() -> None:
    with pytest.raises(UnreadableImage):
        crop_to_ratio(b"not an image", "image/png", (1, 1), BUDGET)
    with pytest.raises(SourceTooLarge):
        crop_to_ratio(png(300, 200), "image/png", (1, 1), 10_000)
