"""The local generator's placeholders, shrink-on-load planning and the saliency focal point,
on real libvips images (no server)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import pyvips

from promptpix.generators import local
from promptpix.generators.base import GenerationRequest
from promptpix.generators.ratios import NATIVE_SIZES
from promptpix.transforms import jpeg
from promptpix.transforms.focal import _pool, find_focal_point
from promptpix.transforms.params import TransformParams
from promptpix.transforms.pipeline import render, shrink_factor
from promptpix.transforms.source import Source, decode, header


def request(prompt: str, ratio: tuple[int, int] = (1, 1), style: str = "") -> GenerationRequest:
    key = hashlib.sha256(f"{prompt}|{ratio}|{style}".encode()).hexdigest()
    return GenerationRequest(
        key=key,
        prompt=prompt,
        ratio=ratio,
        size=NATIVE_SIZES[ratio],
        negative="",
        seed=7,
        style=style,
    )


def pixels(data: bytes) -> np.ndarray:
    img = pyvips.Image.new_from_buffer(data, "", fail_on="warning")
    return np.ndarray(
        buffer=img.write_to_memory(), dtype=np.uint8, shape=(img.height, img.width, img.bands)
    )


@pytest.mark.parametrize("ratio", list(NATIVE_SIZES))
@pytest.mark.parametrize("style", ["", "icon"])
def test_a_placeholder_is_a_clean_jpeg_of_its_size(ratio: tuple[int, int], style: str) -> None:
    data = local.render(request("a red fox in the snow", ratio, style))
    assert pixels(data).shape == (*reversed(NATIVE_SIZES[ratio]), 3)  # no decoder warning


def test_two_prompts_differ_in_the_strip_only_and_each_is_deterministic() -> None:
    # Two prompts whose keys pick the same scene: the rows below the strip are the same bytes.
    prompts = [p for p in (f"a lighthouse at dusk {i}" for i in range(200))]
    by_layout: dict[int, list[str]] = {}
    for p in prompts:
        by_layout.setdefault(int(request(p).key[:16], 16) % local.LAYOUTS, []).append(p)
    first, second = next(v for v in by_layout.values() if len(v) >= 2)[:2]
    a, b = local.render(request(first)), local.render(request(second))
    assert a == local.render(request(first)) and a != b
    scene = local._scene(1024, 1024, False, (), int(request(first).key[:16], 16) % local.LAYOUTS)
    cut = scene.strip_height
    assert cut % local.BLOCK_ROWS == 0
    pa, pb = pixels(a), pixels(b)
    assert np.array_equal(pa[cut:], pb[cut:])
    assert not np.array_equal(pa[:cut], pb[:cut])


def test_the_placeholder_is_its_scene_under_the_strip_that_labels_it() -> None:
    req = request("a blue whale under a grey sky")
    layout = int(req.key[:16], 16) % local.LAYOUTS  # the scene `render` picks for the key
    scene = local._scene(1024, 1024, False, local.colour_words(req.prompt), layout)
    strip = local._strip(scene, f"{local.LABEL} · seed {req.seed}", req.prompt, False)
    assert strip.shape == scene.top.shape and strip.dtype == np.uint8
    assert not np.array_equal(strip, scene.shaded)  # the words are written on it
    drawn = strip.tobytes() + scene.pixels[strip.nbytes :]
    made = local.render(req)
    # One encode of the scene with its strip, nothing else: the same bytes.
    img = pyvips.Image.new_from_memory(drawn, 1024, 1024, 3, "uchar")
    assert made == jpeg.encode(img, local.QUALITY, drawn)
    got = pixels(made).astype(int)
    want = np.frombuffer(drawn, dtype=np.uint8).reshape(1024, 1024, 3).astype(int)
    assert np.abs(got - want).mean() < 3  # JPEG at Q88 over grain
    top = got[: scene.strip_height]
    assert top.mean() < got[scene.strip_height :].mean() and top.max() > 200  # dark, white words


def params(**kw: object) -> TransformParams:
    base = dict(
        view=(1, 1),
        width=None,
        height=None,
        fit="cover",
        anchor="focal",
        fmt="jpeg",
        quality=80,
        rmbg=False,
        blur=0.0,
        bg=None,
        bg_given=False,
    )
    base.update(kw)
    return TransformParams(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"width": 256}, 4),
        ({"width": 100}, 8),
        ({"width": 500}, 2),
        ({"width": 800}, 1),
        ({}, 1),
        ({"width": 256, "height": 64, "view": (4, 1)}, 4),  # crop to 4:1, then a quarter
        ({"width": 2000, "fit": "inside"}, 1),
        ({"width": 300, "height": 300, "fit": "contain", "view": (16, 9)}, 2),
    ],
)
def test_shrink_factor_keeps_a_decoded_pixel_per_output_pixel(
    kw: dict[str, object], expected: int
) -> None:
    assert shrink_factor((1024, 1024), (1, 1), params(**kw), 4096) == expected


@pytest.mark.parametrize(
    "kw",
    [
        {"width": 256},
        {"width": 300, "height": 100},
        # The anchor places the crop to a custom ratio too; the top holds the label strip,
        # whose fine text no reduced decode keeps within the tolerance.
        {"width": 120, "view": (16, 9), "anchor": "bottom"},
        {"width": 200, "height": 200, "fit": "contain"},
        {"width": 130, "fit": "inside"},
        {"width": 150, "height": 90, "anchor": "attention"},
    ],
)
def test_a_reduced_decode_gives_the_same_size_and_picture(kw: dict[str, object]) -> None:
    data = local.render(request("a green field with a red barn"))
    head = header(data, 10**8)
    p = params(**kw)
    factor = shrink_factor((head.width, head.height), (1, 1), p, 4096)
    assert factor > 1
    full = render(decode(data, 10**8), (head.width, head.height), (0.5, 0.5), (1, 1), p, 4096)
    small = render(
        decode(data, 10**8, factor), (head.width, head.height), (0.5, 0.5), (1, 1), p, 4096
    )
    assert (small.width, small.height) == (full.width, full.height)
    diff = np.abs(pixels(small.data).astype(int) - pixels(full.data).astype(int))
    assert diff.mean() < 4.0


def test_saliency_finds_a_bright_subject_on_a_dull_ground() -> None:
    for fx, fy in ((0.75, 0.25), (0.2, 0.8), (0.5, 0.5)):
        img = np.full((300, 400, 3), 120, dtype=np.uint8)
        yy, xx = np.mgrid[:300, :400]
        img[(xx - fx * 400) ** 2 + (yy - fy * 300) ** 2 < 30**2] = (230, 30, 40)
        x, y = find_focal_point(Source(img.tobytes(), 400, 300, 3))
        assert abs(x - fx) < 0.06 and abs(y - fy) < 0.06, (fx, fy, x, y)


@pytest.mark.parametrize(
    "shape", [(256, 256, 3), (192, 336, 3), (333, 257, 4), (20, 13, 3), (1, 1, 3)]
)
def test_the_grid_is_the_mean_of_each_cell_as_array_split_cuts_them(
    shape: tuple[int, int, int],
) -> None:
    px = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    cells = 32
    want = np.array(
        [
            [
                cell.reshape(-1, shape[2]).mean(axis=0)
                for cell in np.array_split(band, min(cells, shape[1]), axis=1)
            ]
            for band in np.array_split(px, min(cells, shape[0]), axis=0)
        ]
    )
    got = _pool(px, cells)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.allclose(got, want, rtol=0, atol=1e-4)


def test_saliency_flattens_alpha_on_white() -> None:
    img = np.zeros((128, 128, 4), dtype=np.uint8)  # transparent everywhere...
    img[80:110, 10:40] = (20, 60, 220, 255)  # ...but a blue square, bottom left
    x, y = find_focal_point(Source(img.tobytes(), 128, 128, 4))
    assert x < 0.4 and y > 0.55


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_a_decode_that_is_already_the_variant_comes_out_unchanged(fmt: str) -> None:
    data = local.render(request("a yellow kite over a green hill"))
    source = decode(data, 10**8, 4)  # 1024 at 1/4: the 256 px asked for, no step to run
    out = render(source, (1024, 1024), (0.5, 0.5), (1, 1), params(width=256, fmt=fmt), 4096)
    assert (out.width, out.height) == (256, 256)
    got = pixels(out.data)
    want = np.frombuffer(source.pixels, dtype=np.uint8).reshape(256, 256, 3)
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() == 0 if fmt == "png" else diff.mean() < 5  # lossy codecs on grain
    if fmt == "jpeg":  # the same bytes as encoding the decoded pixels themselves
        assert out.data == jpeg.encode(source.image(), 80)
