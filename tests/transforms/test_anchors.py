"""`anchor` decides what the crop of a native original to a custom `ar` keeps, as it does for
the `cover` crop to the box (SPEC §1), on real libvips renders (no server)."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips

from promptpix.transforms.params import Anchor, TransformParams
from promptpix.transforms.pipeline import render
from promptpix.transforms.source import Source

NATIVE = (9, 16)
SIZE = (180, 320)  # a 9:16 original
VIEW = (1, 3)  # served by cropping it: 107 x 320, the full height kept
CROP_W = 107
RIGHT_EDGE = SIZE[0] - CROP_W  # 73: where a crop flush with the right edge starts


def halves() -> Source:
    """Left half red, right half blue; green is the column's index, so a crop says where it
    was taken from."""
    w, h = SIZE
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:, : w // 2, 0] = 255
    img[:, w // 2 :, 2] = 255
    img[:, :, 1] = np.arange(w, dtype=np.uint8)
    return Source(img.tobytes(), w, h, 3)


def params(anchor: Anchor, **kw: object) -> TransformParams:
    base: dict[str, object] = dict(
        view=VIEW,
        width=None,
        height=None,
        fit="cover",
        anchor=anchor,
        fmt="png",
        quality=None,
        bg=None,
        bg_given=False,
        rmbg=False,
        blur=0.0,
    )
    base.update(kw)
    return TransformParams(**base)  # type: ignore[arg-type]


def crop_of(
    source: Source, anchor: Anchor, focal: tuple[float, float] = (0.5, 0.5), **kw: object
) -> np.ndarray:
    out = render(source, SIZE, focal, NATIVE, params(anchor, **kw), 4096)
    img = pyvips.Image.new_from_buffer(out.data, "")
    return np.asarray(img.numpy(), dtype=np.uint8)


def offset(pixels: np.ndarray) -> int:
    """The original's column the crop starts at (its green channel counts columns)."""
    columns = pixels[0, :, 1].astype(int)
    assert (np.diff(columns) == 1).all(), "the crop is not an unscaled run of columns"
    return int(columns[0])


def red_share(pixels: np.ndarray) -> float:
    return float((pixels[:, :, 0] == 255).mean())


def test_left_keeps_the_left_part_and_right_the_right_part() -> None:
    source = halves()
    left = crop_of(source, "left")
    right = crop_of(source, "right")
    assert left.shape == right.shape == (320, CROP_W, 3)
    assert offset(left) == 0 and red_share(left) > 0.8
    assert offset(right) == RIGHT_EDGE and red_share(right) < 0.2


def test_center_keeps_the_middle() -> None:
    middle = crop_of(halves(), "center")
    assert offset(middle) in (36, 37)  # (180 - 107) / 2
    assert 0.4 < red_share(middle) < 0.6


def test_fractions_place_the_crop() -> None:
    assert offset(crop_of(halves(), (0.6, 0.5))) in (54, 55)  # centred on column 108
    assert offset(crop_of(halves(), (0.0, 1.0))) == 0
    assert crop_of(halves(), (0.5, 0.5)).tobytes() == crop_of(halves(), "center").tobytes()


@pytest.mark.parametrize(
    ("focal", "start"), [((0.65, 0.5), (63, 64)), ((0.1, 0.2), (0,)), ((0.95, 0.5), (RIGHT_EDGE,))]
)
def test_focal_stays_the_default_and_follows_the_focal_point(
    focal: tuple[float, float], start: tuple[int, ...]
) -> None:
    assert offset(crop_of(halves(), "focal", focal)) in start


def test_the_anchor_also_places_the_cover_crop_after_the_view_crop() -> None:
    # 1:3 first (107 x 320), then a square box: the anchor chooses along both crops.
    top_left = crop_of(halves(), "left", width=107, height=107)
    assert top_left.shape == (107, 107, 3) and offset(top_left) == 0
    right = crop_of(halves(), "right", width=107, height=107)
    assert offset(right) == RIGHT_EDGE


def detail_on_the_right() -> Source:
    """A flat grey left half and a busy, saturated right half."""
    w, h = SIZE
    img = np.full((h, w, 3), 128, dtype=np.uint8)
    noise = np.random.default_rng(7).integers(0, 256, size=(h, w // 2, 3), dtype=np.uint8)
    img[:, w // 2 :] = noise
    return Source(img.tobytes(), w, h, 3)


@pytest.mark.parametrize("anchor", ["attention", "entropy"])
def test_smart_anchors_crop_to_the_interesting_region(anchor: str) -> None:
    source = detail_on_the_right()
    full = np.frombuffer(source.pixels, dtype=np.uint8).reshape(SIZE[1], SIZE[0], 3)
    got = crop_of(source, anchor)
    assert got.shape == (320, CROP_W, 3)
    starts = [x for x in range(RIGHT_EDGE + 1) if (full[:, x : x + CROP_W] == got).all()]
    assert starts, "the smart crop is not a crop of the original"
    # Towards the busy right half, away from the flat grey (the centre would start at 36).
    assert starts[0] > RIGHT_EDGE / 2
