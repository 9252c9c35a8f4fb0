"""`GET /docs`: Swagger UI over `/openapi.json`, every file of it served by the gateway itself
(nothing from another host), through real HTTP against `promptpix serve`."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.live_support import assert_error, checked_client, start_gateway
from tests.services import Gateway

LINK = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.I)
INLINE = re.compile(r"<script>(.*?)</script>", re.S)
TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(tmp_path_factory.mktemp("docs"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with checked_client(gateway.url) as c:
        yield c


@pytest.fixture(scope="module")
def page(client: httpx.Client) -> httpx.Response:
    answer = client.get("/docs")  # no key: the page is public
    assert answer.status_code == 200, answer.text[:300]
    return answer


def links(page: httpx.Response) -> list[str]:
    found = LINK.findall(page.text)
    assert found, "the page loads nothing"
    return found


def test_the_page_is_html_that_loads_only_its_own_origin(page: httpx.Response) -> None:
    assert page.headers["content-type"].startswith("text/html")
    assert '<div id="swagger-ui">' in page.text
    for link in links(page):
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc, link  # no other host, not even //host
        assert parts.path.startswith("/docs/"), link
    assert not re.search(r"https?:|//[a-z]", page.text, re.I)  # no address of another host
    paths = {urlsplit(link).path for link in links(page)}
    assert {"/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"} <= paths


def test_swagger_ui_reads_our_document_without_the_validator(page: httpx.Response) -> None:
    (init,) = INLINE.findall(page.text)
    assert 'url: "/openapi.json"' in init
    assert "validatorUrl: null" in init  # the default would load a badge from swagger.io


def test_the_content_security_policy_allows_the_page_and_nothing_else(
    page: httpx.Response,
) -> None:
    policy = dict(
        (d.split()[0], d.split()[1:]) for d in page.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    (init,) = INLINE.findall(page.text)
    digest = base64.b64encode(hashlib.sha256(init.encode()).digest()).decode()
    assert policy["script-src"] == ["'self'", f"'sha256-{digest}'"]  # the initializer runs
    for sources in policy.values():
        assert not any("." in s or s.startswith("http") for s in sources), sources


def test_every_file_the_page_loads_is_served_with_its_type(
    client: httpx.Client, page: httpx.Response
) -> None:
    for link in links(page):
        answer = client.get(link)
        assert answer.status_code == 200, link
        suffix = "." + urlsplit(link).path.rsplit(".", 1)[1]
        assert answer.headers["content-type"].startswith(TYPES[suffix]), link
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.content


def test_the_bundle_is_swagger_ui_5(client: httpx.Client, page: httpx.Response) -> None:
    (bundle,) = [x for x in links(page) if urlsplit(x).path == "/docs/swagger-ui-bundle.js"]
    text = client.get(bundle).text
    assert len(text) > 1_000_000
    assert "SwaggerUIBundle" in text and "validatorUrl" in text
    assert re.search(r"openapi.{0,20}3\.1", text)  # Swagger UI 5 reads OpenAPI 3.1
    css = client.get("/docs/swagger-ui.css").text
    assert ".swagger-ui" in css


def test_large_files_are_gzipped_for_clients_that_take_it(gateway: Gateway) -> None:
    with httpx.Client(base_url=gateway.url, timeout=30) as raw:
        plain = raw.get("/docs/swagger-ui-bundle.js", headers={"accept-encoding": "identity"})
        with raw.stream(
            "GET", "/docs/swagger-ui-bundle.js", headers={"accept-encoding": "gzip"}
        ) as packed:
            body = b"".join(packed.iter_raw())
            assert packed.headers["content-encoding"] == "gzip"
            assert packed.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in plain.headers
    assert len(body) < len(plain.content) / 2
    assert gzip.decompress(body) == plain.content
    png = httpx.get(gateway.url + "/docs/favicon-32x32.png", timeout=30)
    assert "content-encoding" not in png.headers and png.content[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "path",
    [
        "/docs/swagger-initializer.js",  # in the folder, but it points at the petstore
        "/docs/swagger-ui.js",
        "/docs/LICENSE",
        "/docs/nosuch.js",
        "/docs/..%2F..%2Fpyproject.toml",
        "/docs/%2e%2e",
        "/docs/swagger-ui.css/x",
    ],
)
def test_only_the_allow_listed_files_are_served(client: httpx.Client, path: str) -> None:
    assert_error(client.get(path), 404)


def test_a_trailing_slash_leads_to_the_page(client: httpx.Client) -> None:
    answer = client.get("/docs/")
    assert answer.status_code == 307
    assert urlsplit(answer.headers["location"]).path == "/docs"


def test_head_and_wrong_methods(client: httpx.Client) -> None:
    head = client.head("/docs/swagger-ui.css")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/css")
    assert client.head("/docs").status_code == 200
    assert_error(client.post("/docs/swagger-ui.css"), 405)
    assert_error(client.post("/docs"), 405)


def test_the_document_lists_the_page_as_public(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    page = doc["paths"]["/docs"]["get"]
    assert "security" not in page
    assert not any(path.startswith("/docs/") for path in doc["paths"])
