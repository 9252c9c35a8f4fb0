"""`GET /`, the playground, in a real browser against `promptpix serve`: it loads only from
the gateway with no console error, its preview follows the controls through the real `/i/`
URL, its snippets name that same URL (written byte for byte as the gateway writes it), a
signing project works with a pasted key that never leaves the page's memory, and the
gateway's errors are shown as it gives them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request, expect

from promptpix.cache.control import Project
from promptpix.gateway import urls
from tests.browser.conftest import save_screenshot
from tests.live_support import assert_error, new_project, start_gateway
from tests.services import REPO, Gateway

pytestmark = pytest.mark.timeout(120)

ADMIN = "playground-admin-token-0123456789"
MAX_DIMENSION = 2048
DEFAULTS = {"ar": "16:9", "w": "800"}  # what the page's controls start with
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Visit:
    """A page in its own browser context, with what it logged and asked for."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("playground"),
        PROMPTPIX_ADMIN_TOKEN=ADMIN,
        PROMPTPIX_MAX_DIMENSION=str(MAX_DIMENSION),
    )
    yield server
    server.stop()


def visit(browser: Browser, gateway: Gateway, **options: object) -> Visit:
    options.setdefault("viewport", DESKTOP)
    context = browser.new_context(**options)  # type: ignore[arg-type]
    page = context.new_page()
    seen = Visit(context, page)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))
    page.on("request", lambda request: seen.requests.append(request))
    page.goto(gateway.url + "/")
    ready(page)
    return seen


@pytest.fixture
def demo(browser: Browser, gateway: Gateway) -> Iterator[Visit]:
    seen = visit(browser, gateway)
    yield seen
    seen.context.close()


def ready(page: Page, url_part: str = "") -> None:
    """Waits until the preview shows the image of a URL that contains `url_part`."""
    if url_part:
        expect(page.locator("#preview")).to_have_attribute(
            "data-url", re.compile(re.escape(url_part)), timeout=30_000
        )
    expect(page.locator("body")).to_have_attribute("data-state", "ready", timeout=30_000)


def preview_url(page: Page) -> str:
    found = page.locator("#preview").get_attribute("data-url")
    assert found, "the preview shows no URL"
    return found


def natural_size(page: Page) -> tuple[int, int]:
    size = page.eval_on_selector("#preview", "img => [img.naturalWidth, img.naturalHeight]")
    return int(size[0]), int(size[1])


def snippet(page: Page, name: str) -> str:
    return page.locator(f"#snippet-{name}").text_content() or ""


def snippet_img(page: Page) -> dict[str, str]:
    """The attributes of the `<img>` in the HTML snippet, as a browser parses them."""
    attrs = page.evaluate(
        """text => {
            const img = new DOMParser().parseFromString(text, "text/html").querySelector("img");
            return img ? Object.fromEntries([...img.attributes].map(a => [a.name, a.value])) : {};
        }""",
        snippet(page, "html"),
    )
    assert attrs, "the HTML snippet has no <img>"
    return dict(attrs)


def test_the_page_loads_from_the_gateway_alone_with_no_console_error(
    demo: Visit, gateway: Gateway
) -> None:
    page = demo.page
    answer = httpx.get(gateway.url + "/", timeout=10)
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe" not in policy, policy
    assert natural_size(page)[0] > 0
    assert page.locator("#cache-status").text_content() in ("MISS", "HIT", "TRANSFORM")
    assert page.locator('a[href="/docs"]').count() >= 1
    # Every ratio, every built-in style and every transform control is there.
    assert page.locator("#ar option").count() == 11  # ten native ratios and "custom"
    assert page.locator("#style option").count() == 7  # the project's default and six
    for control in ("w", "h", "dpr", "fit", "anchor", "fmt", "q", "blur", "rmbg", "seed"):
        assert page.locator(f"#{control}").count() == 1, control
    assert demo.errors == []
    own = urlsplit(gateway.url).netloc
    asked = [r.url for r in demo.requests if urlsplit(r.url).scheme in ("http", "https")]
    assert asked and all(urlsplit(url).netloc == own for url in asked), asked
    assert any(urlsplit(url).path == "/i/demo" for url in asked)
    save_screenshot("playground-desktop.png", page, full_page=True)


def test_typing_a_prompt_updates_the_preview_and_the_snippets(
    demo: Visit, gateway: Gateway
) -> None:
    page = demo.page
    prompt = f"a fox's den, 'café' & 100% (moss) {uuid.uuid4().hex[:8]}"
    page.fill("#prompt", prompt)
    fields = {"prompt": prompt, **DEFAULTS}
    expected = urls.live_url(gateway.url, Project("demo"), fields)
    ready(page, expected)
    assert preview_url(page) == expected  # byte for byte the gateway's own URL
    width, height = natural_size(page)
    assert width == 800 and height > 0
    assert page.locator("#cache-status").text_content() == "MISS"  # a new prompt: generated
    timing = page.locator("#timing").text_content() or ""
    assert "total" in timing and "ms" in timing, timing

    img = snippet_img(page)
    assert img["src"] == preview_url(page)
    assert img["srcset"] == urls.srcset(
        gateway.url, Project("demo"), fields, urls.widths(fields, MAX_DIMENSION)
    )
    assert img["sizes"] == "(max-width: 800px) 100vw, 800px"
    assert (img["width"], img["height"], img["alt"]) == ("800", "450", prompt)
    candidate = httpx.get(img["srcset"].split(", ")[-1].split(" ")[0], timeout=30)
    assert candidate.status_code == 200 and candidate.headers["content-type"] == "image/webp"

    assert f"curl -o image.webp '{expected}'" in snippet(page, "curl")
    assert "$PROMPTPIX_API_KEY" in snippet(page, "curl")
    python = snippet(page, "python")
    assert "from promptpix.client import Client" in python
    assert f'client.generate("{prompt}", aspect_ratio="16:9", seed=0)' in python
    assert f'client.image_url(prompt="{prompt}", ar="16:9", w=800)' in python
    js = snippet(page, "js")
    assert 'import { imageUrl, Client } from "@promptpix/sdk";' in js
    assert f'imageUrl("{gateway.url}", "demo", {{ prompt: "{prompt}"' in js
    assert '"command": "promptpix"' in snippet(page, "mcp")
    assert f"{gateway.url}/mcp" in snippet(page, "mcp")

    # The transform controls reach the URL: a narrower PNG of the same original.
    page.fill("#w", "320")
    page.select_option("#fmt", "png")
    ready(page, "w=320&fmt=png")
    assert natural_size(page)[0] == 320
    assert "image/png" in (page.locator("#size").text_content() or "")
    assert page.locator("#cache-status").text_content() == "TRANSFORM"  # not generated again
    assert demo.errors == []


def test_a_bad_parameter_shows_the_gateways_error(demo: Visit, gateway: Gateway) -> None:
    page = demo.page
    page.fill("#w", "99999")
    expect(page.locator("body")).to_have_attribute("data-state", "error", timeout=30_000)
    prompt = page.locator("#prompt").input_value()
    wrong = urls.live_url(
        gateway.url, Project("demo"), {"prompt": prompt, **DEFAULTS, "w": "99999"}
    )
    error = assert_error(httpx.get(wrong, timeout=30), 400, "invalid_parameter", "w")
    expect(page.locator("#error")).to_be_visible()
    assert page.locator("#error-title").text_content() == "400 invalid_parameter (w)"
    assert error["message"] in (page.locator("#error-message").text_content() or "")
    assert page.locator("#w").get_attribute("aria-invalid") == "true"
    # Fixed, the error goes and the preview is back.
    page.fill("#w", "400")
    ready(page, "w=400")
    expect(page.locator("#error")).to_be_hidden()
    assert page.locator("#w").get_attribute("aria-invalid") is None
    assert natural_size(page)[0] == 400


def test_a_signing_project_works_with_a_key_kept_in_memory_only(
    browser: Browser, gateway: Gateway
) -> None:
    slug, key = new_project(gateway.url, ADMIN, signing="required")
    seen = visit(browser, gateway)
    page = seen.page
    try:
        page.fill("#key", key)
        page.click("#key-use")
        ready(page, f"/i/{slug}?")
        signed = preview_url(page)
        assert "&sig=" in signed
        assert natural_size(page)[0] == 800
        assert snippet_img(page)["src"] == signed
        # The gateway signed it (POST /v1/urls, with the key); unsigned it is refused.
        assert httpx.get(signed, timeout=30).status_code == 200
        unsigned = signed.split("&sig=")[0]
        assert_error(httpx.get(unsigned, timeout=30), 403)
        asked = [r for r in seen.requests if urlsplit(r.url).path == "/v1/urls"]
        assert asked and all(r.headers.get("authorization") == f"Bearer {key}" for r in asked)
        assert "signedImageUrl" in snippet(page, "js")
        # The Python snippet, run as it is with the key in its environment, makes the
        # same signed URL.
        ran = subprocess.run(
            [sys.executable, "-c", snippet(page, "python")],
            env={**os.environ, "PROMPTPIX_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr[-2000:]
        live, url = ran.stdout.split()
        assert url == signed
        assert live.startswith(f"{gateway.url}/i/{slug}?") and "&sig=" in live
        assert slug in (page.locator("#project-note").text_content() or "")
        # The key is in no storage, cookie, field, snippet or the page's HTML.
        assert page.evaluate("localStorage.length + sessionStorage.length") == 0
        assert page.evaluate("document.cookie") == ""
        assert seen.context.cookies() == []
        assert page.locator("#key").input_value() == ""
        assert key not in page.content()
        assert seen.errors == []
        # A key the gateway does not know: its 401, shown.
        page.fill("#key", "ppk_not_a_key_of_anyone")
        page.click("#key-use")
        expect(page.locator("body")).to_have_attribute("data-state", "error", timeout=30_000)
        assert page.locator("#error-title").text_content() == "401 unauthorized"
    finally:
        seen.context.close()


def test_the_page_fits_a_phone(browser: Browser, gateway: Gateway) -> None:
    seen = visit(browser, gateway, viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = seen.page
    try:
        assert natural_size(page)[0] > 0
        # Nothing wider than the screen: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        box = page.locator("#preview").bounding_box()
        assert box is not None and 0 < box["width"] <= PHONE["width"]
        assert seen.errors == []
        save_screenshot("playground-phone.png", page)
    finally:
        seen.context.close()


def test_quota_and_permission_errors_are_shown_as_the_api_gives_them(
    browser: Browser, gateway: Gateway
) -> None:
    slug, key = new_project(gateway.url, ADMIN, quota={"generations_per_month": 1})
    _, read_only = new_project(gateway.url, ADMIN, scopes=("read",))
    seen = visit(browser, gateway)
    page = seen.page
    try:
        page.fill("#key", key)
        page.click("#key-use")
        ready(page, f"/i/{slug}?")  # the month's one generation
        page.fill("#prompt", f"one more than the quota {uuid.uuid4().hex[:8]}")
        expect(page.locator("body")).to_have_attribute("data-state", "error", timeout=30_000)
        refused = page.locator("#live-url").text_content() or ""
        answer = httpx.get(refused, timeout=30)
        error = assert_error(answer, 429, "quota_exceeded")
        assert page.locator("#error-title").text_content() == "429 quota_exceeded"
        shown = page.locator("#error-message").text_content() or ""
        assert error["message"] in shown
        # Retry-After counts down to the month's end: the page's and ours a moment apart.
        retry = re.search(r"Retry after (\d+) s\.", shown)
        assert retry is not None, shown
        assert abs(int(retry[1]) - int(answer.headers["retry-after"])) <= 5
        # A key without the `generate` scope: POST /v1/urls answers 403, shown.
        page.fill("#key", read_only)
        page.click("#key-use")
        expect(page.locator("#error-title")).to_have_text(re.compile(r"^403 forbidden"))
    finally:
        seen.context.close()


def test_the_js_snippet_writes_the_previews_url(demo: Visit) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JS SDK needs Node 18+")
    page = demo.page
    page.fill("#prompt", f"a paper boat on a puddle, 'rain' {uuid.uuid4().hex[:8]}")
    page.fill("#h", "300")
    page.select_option("#fit", "contain")
    ready(page, "h=300")
    # The snippet's URL part, run by node with the package name pointing at sdk/js.
    js, _, _ = snippet(page, "js").partition("\n\n// generate")
    sdk = (REPO / "sdk" / "js" / "src" / "index.js").as_uri()
    code = js.replace('"@promptpix/sdk"', json.dumps(sdk)) + "\nconsole.log(url);\n"
    ran = subprocess.run(
        [node, "--input-type=module", "-e", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip() == preview_url(page)
