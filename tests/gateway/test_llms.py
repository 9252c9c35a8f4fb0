"""`GET /llms.txt` over real HTTP: it names every parameter, ratio and style the parser
takes, and the HTML it tells a model to write works: each URL of its example answers an
image, every srcset width cut from one original."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from promptpix.gateway.params import GENERATION_PARAMS, TRANSFORM_PARAMS
from promptpix.generators.ratios import NATIVE_SIZES, ratio_text
from promptpix.generators.styles import BUILTIN_STYLES
from tests.live_support import start_gateway
from tests.services import Gateway

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(tmp_path_factory.mktemp("llms"))
    try:
        yield server
    finally:
        server.stop()


def test_it_names_every_parameter_ratio_and_style(gateway: Gateway) -> None:
    answer = httpx.get(f"{gateway.url}/llms.txt")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    text = answer.text
    for name in (*GENERATION_PARAMS, *TRANSFORM_PARAMS, "ch"):
        assert f"`{name}`" in text, name
    for ratio in NATIVE_SIZES:
        assert ratio_text(ratio) in text
    for style in BUILTIN_STYLES:
        assert f"`{style}`" in text
    assert "POST /v1/urls" in text and "signature_required" in text
    assert "open on this gateway" in text  # the demo is on here


def test_the_html_it_shows_works(gateway: Gateway) -> None:
    text = httpx.get(f"{gateway.url}/llms.txt").text
    src = re.search(r'<img src="([^"]+)"', text)
    srcset = re.search(r'srcset="([^"]+)"', text)
    assert src is not None and srcset is not None
    assert src[1].startswith(f"{gateway.url}/i/demo?")
    urls = [src[1]] + [c.strip().rsplit(" ", 1)[0] for c in srcset[1].split(",")]
    originals = set()
    with httpx.Client(timeout=30) as client:
        for url in urls:
            image = client.get(url)
            assert image.status_code == 200, (url, image.text[:200])
            assert image.headers["content-type"].startswith("image/")
            originals.add(image.headers["x-image-id"])
    assert len(urls) == 5 and len(originals) == 1


def test_a_public_url_is_used_in_the_examples(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = start_gateway(
        tmp_path_factory.mktemp("llms-public"),
        PROMPTPIX_PUBLIC_URL="https://img.example.com",
        PROMPTPIX_DEMO="off",
    )
    try:
        text = httpx.get(f"{server.url}/llms.txt").text
    finally:
        server.stop()
    assert '<img src="https://img.example.com/i/demo?' in text
    assert "no open demo project" in text
