"""libvips as the gateway sets it up: only the allow-listed loaders read anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pyvips

from promptpix.transforms.errors import UnreadableImage
from promptpix.transforms.source import decode, header
from promptpix.transforms.vips import CONCURRENCY, configure

configure()

SAMPLE = pyvips.Image.black(48, 32, bands=3).linear(1, [10, 200, 30]).cast("uchar")
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
    b'<rect width="40" height="40"/></svg>'
)
PPM = b"P6\n2 2\n255\n" + bytes(12)
ALLOWED = {
    "jpeg": SAMPLE.jpegsave_buffer(),
    "png": SAMPLE.pngsave_buffer(),
    "webp": SAMPLE.webpsave_buffer(),
    "avif": SAMPLE.heifsave_buffer(compression="av1"),
    "gif": SAMPLE.gifsave_buffer(),  # an upload may be one
}
REFUSED = {
    "tiff": SAMPLE.tiffsave_buffer(),
    "svg": SVG,
    "ppm": PPM,
}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_allowed_loaders_decode(name: str) -> None:
    source = decode(ALLOWED[name], 1_000_000)
    assert (source.width, source.height) == (48, 32)
    assert header(ALLOWED[name], 1_000_000).width == 48


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_every_other_loader_is_blocked(name: str) -> None:
    data = REFUSED[name]
    with pytest.raises(UnreadableImage):
        header(data, 1_000_000)
    with pytest.raises(UnreadableImage):
        decode(data, 1_000_000)
    with pytest.raises(pyvips.Error):  # libvips itself refuses it, not only our checks
        pyvips.Image.new_from_buffer(data, "")


def test_the_refused_formats_are_real_images_libvips_could_read(tmp_path: Path) -> None:
    """Without the gateway's set-up libvips reads them: the test above checks the block,
    not bytes that were never an image."""
    (tmp_path / "tiff").write_bytes(REFUSED["tiff"])
    probe = "import pyvips, sys; print([pyvips.Image.new_from_file(p).width for p in sys.argv[1:]])"
    run = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "tiff")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[48]"


def test_one_thread_an_image() -> None:
    assert CONCURRENCY == 1 and pyvips.concurrency_get() == 1
