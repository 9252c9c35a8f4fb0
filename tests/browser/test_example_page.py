"""The example page (examples/landing) as a visitor sees it: served by a real nginx with the
repository's `nginx/promptpix.conf` in front of `promptpix serve`, in a real browser, every
image loads at devicePixelRatio 1 and 2 (and on a phone), each at least as wide as it is
shown, through the image cache."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Response, expect

from tests.browser.conftest import save_screenshot
from tests.live_support import start_gateway
from tests.services import REPO, Gateway, Nginx, free_port, nginx_config

pytestmark = pytest.mark.timeout(120)

EXAMPLE = REPO / "examples" / "landing"
IMAGES = 5  # the hero, three cards and the avatar


@dataclass
class Site:
    gateway: Gateway
    url: str  # the example site, on nginx


def site_config(root: Any, image_port: int, site_port: int, upstream: str) -> str:
    """The test's nginx config: promptpix.conf and the example's site.conf, both as the
    repository has them with their placeholders filled, in one http {} block."""
    main = nginx_config(root, image_port, upstream)
    site = (EXAMPLE / "site.conf").read_text()
    for name, value in {
        "EXAMPLE_PORT": f"127.0.0.1:{site_port}",
        "EXAMPLE_ROOT": str(EXAMPLE),
        "NGINX_PORT": str(image_port),
    }.items():
        site = site.replace("${" + name + "}", value)
    end = main.rstrip().rfind("}")  # the http {} block's end
    return main[:end] + site + "\n}\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("example")
    gateway = start_gateway(root / "gw")
    image_port, site_port = free_port(), free_port()
    conf = site_config(root / "nginx", image_port, site_port, f"127.0.0.1:{gateway.port}")
    proxy = Nginx(root / "nginx", conf)
    try:
        proxy.start(site_port)
        yield Site(gateway, f"http://127.0.0.1:{site_port}")
    finally:
        proxy.stop()
        gateway.stop()


VIEWS = {
    "desktop-dpr1": ({"width": 1000, "height": 800}, 1),
    "desktop-dpr2": ({"width": 1000, "height": 800}, 2),
    "phone-dpr2": ({"width": 390, "height": 844}, 2),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_every_image_loads_sharp_through_nginx(browser: Browser, site: Site, view: str) -> None:
    viewport, dpr = VIEWS[view]
    context = browser.new_context(viewport=viewport, device_scale_factor=dpr)  # type: ignore[arg-type]
    page = context.new_page()
    errors: list[str] = []
    images: list[Response] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda response: images.append(response) if "/i/" in response.url else None,
    )
    try:
        answer = page.goto(site.url + "/")
        assert answer is not None and answer.status == 200
        assert answer.headers["server"].startswith("nginx")
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # the lazy ones too
        found = page.locator("img")
        assert found.count() == IMAGES
        for index in range(IMAGES):
            expect(found.nth(index)).to_have_js_property("complete", True, timeout=60_000)
        # naturalWidth is in CSS pixels (scaled by the candidate's density): the chosen
        # file's own width is read from a plain <img> of it (from the browser's cache).
        shown = page.eval_on_selector_all(
            "img",
            """imgs => Promise.all(imgs.map(async img => {
                const probe = new Image();
                probe.src = img.currentSrc;
                await probe.decode();
                return {src: img.currentSrc, natural: img.naturalWidth, css: img.clientWidth,
                        pixels: probe.naturalWidth};
            }))""",
        )
        for img in shown:
            assert img["natural"] > 0, img  # decoded
            assert urlsplit(img["src"]).path == "/i/demo", img
            # The browser chose a candidate at least as wide as the device pixels shown.
            assert img["pixels"] >= img["css"] * dpr - 1, img
        hero, avatar = shown[0], shown[-1]
        phone = viewport["width"] <= 640
        assert parse_qs(urlsplit(hero["src"]).query)["ar"] == ["4:5" if phone else "21:9"]
        assert ("dpr=2" in avatar["src"]) == (dpr == 2), avatar
        # Every image came through promptpix.conf's cache, answered 200.
        assert {urlsplit(r.url).path for r in images} == {"/i/demo"}
        for response in images:
            assert response.status == 200, response.url
            assert response.headers.get("x-proxy-cache") in ("MISS", "HIT", "EXPIRED"), (
                response.headers
            )
        assert errors == []
        if view == "desktop-dpr1":
            save_screenshot("example-page.png", page, full_page=True)
    finally:
        context.close()


def test_the_page_asks_no_other_host(site: Site) -> None:
    text = httpx.get(site.url + "/", timeout=10).text
    assert "://" not in text  # every URL relative: nothing from another host
    assert text.count("/i/demo?") >= 10  # srcset candidates, not one image per slot
