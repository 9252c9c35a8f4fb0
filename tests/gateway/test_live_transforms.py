"""Output sizes, formats and pixels of the transforms, decoded with libvips."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import pyvips

from tests.conftest import LIVE_MAX_DIMENSION
from tests.live_support import image, magic, size_of

PROMPT = "a blue sea under a yellow sun"


def get(live: httpx.Client, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    r = live.get("/i/demo", params={"prompt": PROMPT, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize(
    ("params", "size"),
    [
        # No size: the original at its native size.
        ({}, (1024, 1024)),
        ({"ar": "16:9"}, (1344, 768)),
        ({"ar": "21:9"}, (1536, 672)),
        ({"ar": "2:3"}, (832, 1248)),
        # Custom ratios: a crop of the nearest native original.
        ({"ar": "2:7"}, (384, 1344)),
        ({"ar": "1:2"}, (672, 1344)),
        ({"ar": "64:1", "w": "640"}, (640, 10)),
        ({"ar": "7:5", "w": "700"}, (700, 500)),
        # One side alone keeps the ratio.
        ({"w": "300"}, (300, 300)),
        ({"h": "120"}, (120, 120)),
        ({"ar": "3:2", "w": "300"}, (300, 200)),
        ({"ar": "3:2", "h": "100"}, (150, 100)),
        # A native original is served as generated (16:9 is 1344x768): one side keeps that.
        ({"ar": "16:9", "w": "320"}, (320, 183)),
        ({"ar": "16:9", "w": "320", "h": "180"}, (320, 180)),
        ({"ar": "2:7", "h": "700"}, (200, 700)),
        # Both sides: the ratio of w:h is the default `ar`.
        ({"w": "300", "h": "200"}, (300, 200)),
        ({"w": "123", "h": "457"}, (123, 457)),
        # Every fit with a box of another ratio than the image.
        ({"ar": "1:1", "w": "300", "h": "200", "fit": "cover"}, (300, 200)),
        ({"ar": "1:1", "w": "300", "h": "200", "fit": "contain"}, (300, 200)),
        ({"ar": "1:1", "w": "300", "h": "200", "fit": "inside"}, (200, 200)),
        ({"ar": "1:1", "w": "300", "h": "200", "fit": "fill"}, (300, 200)),
        ({"ar": "3:2", "w": "200", "h": "200", "fit": "inside"}, (200, 133)),
        ({"ar": "3:2", "w": "200", "h": "200", "fit": "contain"}, (200, 200)),
        # `inside` never enlarges; `cover` and `fill` do.
        ({"ar": "1:1", "w": "1400", "h": "1400", "fit": "inside"}, (1024, 1024)),
        ({"ar": "1:1", "w": "1400", "h": "1400", "fit": "cover", "fmt": "jpeg"}, (1400, 1400)),
        # dpr multiplies the CSS box.
        ({"w": "100", "h": "50", "dpr": "2"}, (200, 100)),
        ({"w": "100", "dpr": "1.5"}, (150, 150)),
        ({"ar": "3:2", "h": "50", "dpr": "4"}, (300, 200)),
        ({"ar": "1:1", "w": "100", "h": "50", "fit": "inside", "dpr": "3"}, (150, 150)),
        # ... and is clamped to the maximum, keeping the ratio.
        ({"w": "1000", "h": "500", "dpr": "4", "fmt": "jpeg"}, (LIVE_MAX_DIMENSION, 750)),
        ({"w": "1000", "dpr": "2", "fmt": "jpeg"}, (LIVE_MAX_DIMENSION, LIVE_MAX_DIMENSION)),
        ({"w": str(LIVE_MAX_DIMENSION), "ar": "3:1", "fmt": "jpeg"}, (LIVE_MAX_DIMENSION, 500)),
        # One side whose ratio makes the other pass the maximum: both shrink together.
        ({"ar": "1:3", "w": "1000", "fmt": "jpeg"}, (500, LIVE_MAX_DIMENSION)),
    ],
)
def test_output_size(live: httpx.Client, params: dict[str, str], size: tuple[int, int]) -> None:
    assert size_of(get(live, **params).content) == size


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "png", "avif"])
def test_format_magic_bytes(live: httpx.Client, fmt: str) -> None:
    r = get(live, w="64", h="48", fmt=fmt)
    assert magic(r.content) == fmt
    assert size_of(r.content) == (64, 48)


def test_default_format_is_webp(live: httpx.Client) -> None:
    assert magic(get(live, w="16").content) == "webp"


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif"),
        ("image/webp,*/*", "webp"),
        ("image/avif;q=0,image/webp", "webp"),
        ("image/jpeg", "jpeg"),
        ("*/*", "jpeg"),
        ("", "jpeg"),
        ("IMAGE/WEBP", "webp"),
    ],
)
def test_auto_format_from_accept(live: httpx.Client, accept: str, fmt: str) -> None:
    r = get(live, {"accept": accept}, w="40", fmt="auto")
    assert magic(r.content) == fmt
    assert r.headers["vary"] == "Accept"


def test_auto_format_with_alpha_falls_back_to_png(live: httpx.Client) -> None:
    r = get(live, {"accept": "image/jpeg,*/*"}, w="40", fmt="auto", rmbg="1")
    assert magic(r.content) == "png"
    assert image(r.content).bands == 4


def test_quality_changes_the_size(live: httpx.Client) -> None:
    low = get(live, w="300", fmt="jpeg", q="10").content
    high = get(live, w="300", fmt="jpeg", q="95").content
    assert len(low) < len(high) * 0.6


def test_contain_pads_transparent_where_the_format_has_alpha(live: httpx.Client) -> None:
    img = image(get(live, ar="1:1", w="300", h="200", fit="contain", fmt="png").content)
    assert img.bands == 4
    assert img(2, 100)[3] == 0  # left padding
    assert img(150, 100)[3] == 255  # the image itself


def test_contain_pads_with_bg(live: httpx.Client) -> None:
    img = image(
        get(live, ar="1:1", w="300", h="200", fit="contain", fmt="png", bg="ff0000").content
    )
    assert img.bands == 3
    assert img(2, 100) == [255, 0, 0]
    img = image(get(live, ar="1:1", w="300", h="200", fit="contain", fmt="jpeg").content)
    r, g, b = img(2, 100)
    assert min(r, g, b) > 245  # white by default where there is no alpha


def test_bg_transparent_keeps_alpha(live: httpx.Client) -> None:
    img = image(
        get(live, ar="16:9", w="200", h="200", fit="contain", fmt="webp", bg="transparent").content
    )
    assert img.bands == 4
    assert img(100, 2)[3] == 0


def _white(style: str, live: httpx.Client) -> tuple[np.ndarray, np.ndarray]:
    """Where the image (seen without alpha) is plain white background."""
    flat = image(get(live, style=style, w="200", fmt="jpeg", q="100").content)
    rgb = flat.numpy().astype(int)
    return (rgb >= 250).all(axis=2), (rgb.max(axis=2) - rgb.min(axis=2)) > 120


def test_rmbg_makes_the_plain_background_transparent(live: httpx.Client) -> None:
    white, vivid = _white("icon", live)
    removed = image(get(live, style="icon", w="200", fmt="png", rmbg="1").content)
    assert removed.bands == 4
    alpha = removed.numpy()[:, :, 3]
    assert white.mean() > 0.3 and vivid.mean() > 0.05  # a plain background and a subject
    assert (alpha[white] == 0).mean() > 0.97
    assert (alpha[vivid] == 255).mean() > 0.95


def test_rmbg_adds_alpha_and_rmbg_0_does_not(live: httpx.Client) -> None:
    assert image(get(live, w="64", fmt="png", rmbg="0").content).bands == 3
    assert image(get(live, w="64", fmt="png").content).bands == 3
    assert image(get(live, w="64", fmt="webp", rmbg="1").content).bands == 4


def test_rmbg_with_bg_colour_flattens_onto_it(live: httpx.Client) -> None:
    white, _ = _white("icon", live)
    img = image(get(live, style="icon", w="200", fmt="png", rmbg="1", bg="00ff00").content)
    assert img.bands == 3
    assert white.mean() > 0.3
    assert (img.numpy()[white] == [0, 255, 0]).all(axis=1).mean() > 0.97


def test_anchors_choose_what_a_crop_keeps(live: httpx.Client) -> None:
    top = image(get(live, ar="1:1", w="200", h="50", anchor="top", fmt="png").content)
    bottom = image(get(live, ar="1:1", w="200", h="50", anchor="bottom", fmt="png").content)
    full = image(get(live, ar="1:1", w="200", h="200", fmt="png").content)
    # Each crop is that end of the whole picture, and not the other end.
    assert (top - full.crop(0, 0, 200, 50)).abs().avg() < 4
    assert (bottom - full.crop(0, 150, 200, 50)).abs().avg() < 4
    assert (top - full.crop(0, 150, 200, 50)).abs().avg() > 10
    # A named anchor and its fractions are the same crop.
    center = get(live, ar="1:1", w="200", h="50", anchor="center", fmt="png").content
    fractions = get(live, ar="1:1", w="200", h="50", anchor="0.5,0.5", fmt="png").content
    assert center == fractions
    for anchor in ("focal", "attention", "entropy", "left", "right", "0,0", "1,1"):
        assert size_of(get(live, ar="1:1", w="200", h="50", anchor=anchor).content) == (200, 50)


def test_anchors_choose_the_crop_to_a_custom_ratio(live: httpx.Client) -> None:
    # ar=1:3 is a 448x1344 crop of the 9:16 original (768x1344): the anchor says which.
    native = image(get(live, ar="9:16", fmt="png").content)
    left = get(live, ar="1:3", anchor="left", fmt="png")
    right = get(live, ar="1:3", anchor="right", fmt="png")
    assert left.content != right.content
    assert left.headers["etag"] != right.headers["etag"]
    assert left.headers["x-image-id"] == right.headers["x-image-id"]  # one original
    assert size_of(left.content) == size_of(right.content) == (448, 1344)
    assert (image(left.content) - native.crop(0, 0, 448, 1344)).abs().avg() < 1
    assert (image(right.content) - native.crop(320, 0, 448, 1344)).abs().avg() < 1
    assert (image(left.content) - native.crop(320, 0, 448, 1344)).abs().avg() > 5


def test_blur_softens(live: httpx.Client) -> None:
    sharp = image(get(live, w="200", fmt="png").content)
    soft = image(get(live, w="200", fmt="png", blur="8").content)
    assert (sharp.width, sharp.height) == (soft.width, soft.height)
    # Blur removes fine detail: neighbouring pixels differ less.
    assert _detail(soft) < _detail(sharp) * 0.5


def _detail(img: pyvips.Image) -> float:
    w, h = img.width - 1, img.height
    return float((img.crop(1, 0, w, h) - img.crop(0, 0, w, h)).abs().avg())


def test_output_is_srgb_without_metadata(live: httpx.Client) -> None:
    img = image(get(live, w="64", fmt="jpeg").content)
    assert img.interpretation == "srgb"
    assert img.get_typeof("exif-data") == 0
    assert img.get_typeof("xmp-data") == 0


def test_image_is_derived_from_the_prompt(live: httpx.Client) -> None:
    a = image(get(live, w="64", fmt="png").content)
    r = live.get("/i/demo", params={"prompt": "a red fire at night", "w": "64", "fmt": "png"})
    b = image(r.content)
    assert (a - b).abs().avg() > 5
