"""Uploaded assets over real HTTP (SPEC §2 "Assets and references"): uploads (multipart and
raw), ids that are the BLAKE3 of the bytes, aliases that move, the list a page at a time,
reads, deletes; every refusal from the header (wrong type, garbage, a decompression bomb,
too many bytes) a clear 4xx before any decode; and `/a/{project}/{id or @alias}` with the
transform parameters, the headers of `/i/`, and signing as for `/i/`.
No answer of these gateways may be a server error."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import blake3
import httpx
import pytest
import pyvips
from openapi_spec_validator import validate

from promptpix.cache.s3store import S3Store
from promptpix.gateway.api.bodies import DROP_AT_MOST
from tests import live_support as live
from tests.live_support import (
    YEAR,
    assert_error,
    checked_client,
    eventually,
    magic,
    metrics,
    size_of,
    start_gateway,
)
from tests.services import Gateway

pytestmark = pytest.mark.timeout(120)

ADMIN = "assets-tests-admin-token-0123456789"
MIB = 1 << 20


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def picture(red: int, green: int = 90, width: int = 96, height: int = 64) -> pyvips.Image:
    """A picture with a bright square off-centre: each colour makes other bytes."""
    base = pyvips.Image.black(width, height, bands=3).linear(1, [red, green, 40]).cast("uchar")
    square = pyvips.Image.black(16, 16, bands=3).linear(1, [250, 250, 250]).cast("uchar")
    return base.insert(square, width - 24, 8)


def png(red: int, **size: int) -> bytes:
    return bytes(picture(red, **size).pngsave_buffer())


def jpeg(red: int) -> bytes:
    return bytes(picture(red).jpegsave_buffer(Q=90))


def bomb(width: int = 12000, height: int = 12000) -> bytes:
    """A PNG of a few hundred bytes whose header declares `width` x `height` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4000))  # a row and a bit: never enough
        + chunk(b"IEND", b"")
    )


def new_slug(what: str = "a") -> str:
    return f"{what}-{uuid.uuid4().hex[:10]}"


# --- the gateway, its projects and keys -------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(tmp_path_factory.mktemp("assets"), PROMPTPIX_ADMIN_TOKEN=ADMIN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with checked_client(gateway.url) as http:
        yield http


@dataclass(frozen=True)
class Proj:
    slug: str
    key: str  # every scope
    secret: str | None = None

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.key)


def project(client: httpx.Client, signing: str = "off", *scopes: str) -> Proj:
    slug = new_slug()
    made = client.post(
        "/v1/projects", json={"slug": slug, "signing": signing}, headers=bearer(ADMIN)
    )
    assert made.status_code == 201, made.text
    key = client.post(
        f"/v1/projects/{slug}/keys",
        json={"scopes": list(scopes or ("generate", "read", "assets"))},
        headers=bearer(ADMIN),
    )
    assert key.status_code == 201, key.text
    return Proj(slug, key.json()["key"], made.json().get("signing_secret"))


@pytest.fixture(scope="module")
def open_project(client: httpx.Client) -> Proj:
    return project(client)


def upload(
    client: httpx.Client, proj: Proj, data: bytes, alias: str | None = None, raw: bool = False
) -> httpx.Response:
    if raw:
        kind = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
        params = {"alias": alias} if alias is not None else {}
        return client.post(
            "/v1/assets",
            content=data,
            params=params,
            headers={**proj.auth, "Content-Type": kind},
        )
    form = {"alias": alias} if alias is not None else {}
    files = {"file": ("picture.png", data, "image/png")}
    return client.post("/v1/assets", files=files, data=form, headers=proj.auth)


def uploaded(client: httpx.Client, proj: Proj, data: bytes, **more: Any) -> dict[str, Any]:
    answer = upload(client, proj, data, **more)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- uploads ----------------------------------------------------------------------------------


def test_a_multipart_upload_answers_the_asset_and_its_url(
    client: httpx.Client, open_project: Proj
) -> None:
    data = png(10)
    answer = upload(client, open_project, data, alias="logo")
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["id"] == blake3.blake3(data).hexdigest()
    assert body["alias"] == "logo"
    assert (body["width"], body["height"]) == (96, 64)
    assert body["content_type"] == "image/png"
    assert body["bytes"] == len(data)
    assert urlsplit(body["url"]).path == f"/a/{open_project.slug}/{body['id']}"
    served = client.get(path_of(body["url"]))
    assert served.status_code == 200
    assert served.headers["x-image-id"] == body["id"]
    assert served.headers["x-generator"] == "upload"
    assert size_of(served.content) == (96, 64)


def test_a_raw_upload_with_an_alias_in_the_query(client: httpx.Client, open_project: Proj) -> None:
    data = jpeg(20)
    body = uploaded(client, open_project, data, alias="raw-one", raw=True)
    assert body["id"] == blake3.blake3(data).hexdigest()
    assert body["content_type"] == "image/jpeg" and body["alias"] == "raw-one"
    assert (body["width"], body["height"]) == (96, 64)
    read = client.get("/v1/assets/@raw-one", headers=open_project.auth)
    assert read.status_code == 200 and read.json()["id"] == body["id"]


def test_the_same_bytes_twice_are_one_asset(client: httpx.Client) -> None:
    proj = project(client)
    data = png(30)
    first = uploaded(client, proj, data)
    again = uploaded(client, proj, data, raw=True)
    assert first["id"] == again["id"]
    listed = client.get("/v1/assets", headers=proj.auth).json()["items"]
    assert [a["id"] for a in listed] == [first["id"]]


def test_a_gif_and_a_webp_and_an_avif_are_taken(client: httpx.Client, open_project: Proj) -> None:
    img = picture(40)
    for data, kind in (
        (img.gifsave_buffer(), "image/gif"),
        (img.webpsave_buffer(), "image/webp"),
        (img.heifsave_buffer(compression="av1"), "image/avif"),
    ):
        body = uploaded(client, open_project, bytes(data))
        assert body["content_type"] == kind and (body["width"], body["height"]) == (96, 64)
        served = client.get(f"/a/{open_project.slug}/{body['id']}?w=48&fmt=png")
        assert served.status_code == 200 and size_of(served.content) == (48, 32)


def test_an_alias_that_breaks_the_rule_is_a_400(client: httpx.Client, open_project: Proj) -> None:
    for alias in ("Big", "-dash", "a" * 65, "sp ace", ""):
        answer = upload(client, open_project, png(50), alias=alias)
        assert_error(answer, 400, param="alias")


# --- refusals ---------------------------------------------------------------------------------


def test_garbage_bytes_are_refused_with_a_clear_4xx(
    client: httpx.Client, open_project: Proj
) -> None:
    claims_png = b"\x89PNG\r\n\x1a\n" + os.urandom(600)
    err = assert_error(upload(client, open_project, claims_png, raw=True), 400, "invalid_image")
    assert "image/png" in err["message"]
    claims_jpeg = b"\xff\xd8\xff\xe0" + os.urandom(600)
    assert_error(upload(client, open_project, claims_jpeg, raw=True), 400, "invalid_image")
    nothing = os.urandom(600).replace(b"\xff", b"\x00")  # no signature of any format
    answer = client.post(
        "/v1/assets",
        content=b"\x00" + nothing,
        headers={**open_project.auth, "Content-Type": "image/png"},
    )
    assert_error(answer, 415, "unsupported_image_type", "file")
    assert_error(upload(client, open_project, b"", raw=True), 400, param="file")


def test_a_decompression_bomb_is_refused_from_its_header(
    client: httpx.Client, open_project: Proj
) -> None:
    data = bomb()
    assert len(data) < 500
    for raw in (True, False):
        err = assert_error(upload(client, open_project, data, raw=raw), 413, "image_too_large")
        assert "12000x12000" in err["message"]
    listed = client.get("/v1/assets?limit=100", headers=open_project.auth).json()["items"]
    assert blake3.blake3(data).hexdigest() not in {a["id"] for a in listed}


def test_a_type_that_is_not_an_image_is_a_415(client: httpx.Client, open_project: Proj) -> None:
    text = client.post(
        "/v1/assets",
        content=b"hello, world",
        headers={**open_project.auth, "Content-Type": "text/plain"},
    )
    assert_error(text, 415, "unsupported_media_type")
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    files = {"file": ("doc.pdf", pdf, "application/pdf")}
    answer = client.post("/v1/assets", files=files, headers=open_project.auth)
    assert_error(answer, 415, "unsupported_image_type", "file")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    answer = client.post(
        "/v1/assets", content=svg, headers={**open_project.auth, "Content-Type": "image/svg+xml"}
    )
    assert_error(answer, 415, "unsupported_image_type")


def test_a_form_without_a_file_or_with_unknown_fields_is_a_400(
    client: httpx.Client, open_project: Proj
) -> None:
    answer = client.post(
        "/v1/assets", files={"other": ("x.png", png(60), "image/png")}, headers=open_project.auth
    )
    assert_error(answer, 400, "unknown_field", "other")
    answer = client.post(
        "/v1/assets",
        content=b'--b\r\nContent-Disposition: form-data; name="alias"\r\n\r\nx\r\n--b--\r\n',
        headers={**open_project.auth, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert_error(answer, 400, param="file")
    answer = client.post(
        "/v1/assets?colour=red",
        content=png(61),
        headers={**open_project.auth, "Content-Type": "image/png"},
    )
    assert_error(answer, 400, param="colour")


def test_keys_without_the_assets_scope_are_refused(client: httpx.Client) -> None:
    proj = project(client, "off", "generate", "read")
    assert_error(upload(client, proj, png(70)), 403, "forbidden", "assets")
    assert_error(client.get("/v1/assets", headers=proj.auth), 403, "forbidden")
    assert_error(client.get("/v1/assets/@x", headers=proj.auth), 403, "forbidden")
    assert_error(client.delete(f"/v1/assets/{'0' * 64}", headers=proj.auth), 403, "forbidden")
    anonymous = client.post("/v1/assets", content=png(71), headers={"Content-Type": "image/png"})
    assert_error(anonymous, 401, "unauthorized")


# --- aliases, list, read, delete --------------------------------------------------------------


def test_an_alias_moves_and_its_url_follows(client: httpx.Client) -> None:
    proj = project(client)
    first = uploaded(client, proj, png(80), alias="hero")
    by_alias = f"/a/{proj.slug}/@hero?w=32&fmt=png"
    seen = client.get(by_alias)
    assert seen.status_code == 200 and seen.headers["x-image-id"] == first["id"]
    assert seen.headers["cache-control"] == "public, max-age=60"  # never a year: it moves
    by_id = client.get(f"/a/{proj.slug}/{first['id']}?w=32&fmt=png")
    assert by_id.headers["cache-control"] == YEAR

    second = uploaded(client, proj, png(81), raw=True, alias="hero")
    assert second["id"] != first["id"] and second["alias"] == "hero"
    eventually(lambda: client.get(by_alias).headers["x-image-id"] == second["id"], within=3)
    moved = client.get(by_alias)
    assert moved.content == client.get(f"/a/{proj.slug}/{second['id']}?w=32&fmt=png").content
    assert moved.content != by_id.content
    # the old asset is still there under its id, without the alias
    old = client.get(f"/a/{proj.slug}/{first['id']}?w=32&fmt=png")
    assert old.status_code == 200 and old.content == by_id.content
    assert client.get(f"/v1/assets/{first['id']}", headers=proj.auth).json()["alias"] is None
    assert client.get("/v1/assets/@hero", headers=proj.auth).json()["id"] == second["id"]


def test_the_list_comes_a_page_at_a_time_newest_first(client: httpx.Client) -> None:
    proj = project(client)
    ids = [uploaded(client, proj, png(100 + i))["id"] for i in range(5)]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = client.get("/v1/assets", params=params, headers=proj.auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["items"]) <= 2
        seen += [a["id"] for a in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))
    item = client.get("/v1/assets?limit=1", headers=proj.auth).json()["items"][0]
    assert set(item) >= {"id", "alias", "width", "height", "content_type", "bytes", "url"}
    assert_error(client.get("/v1/assets?limit=101", headers=proj.auth), 400, param="limit")
    assert_error(client.get("/v1/assets?limit=0", headers=proj.auth), 400, param="limit")
    assert_error(client.get("/v1/assets?cursor=nonsense", headers=proj.auth), 400, param="cursor")
    assert_error(client.get("/v1/assets?sort=asc", headers=proj.auth), 400, param="sort")
    # another project sees none of them
    other = project(client)
    assert client.get("/v1/assets", headers=other.auth).json() == {
        "items": [],
        "next_cursor": None,
    }


def test_one_is_read_by_id_or_by_alias(client: httpx.Client) -> None:
    proj = project(client)
    made = uploaded(client, proj, png(120), alias="brand_mark")
    for ref in (made["id"], "@brand_mark"):
        answer = client.get(f"/v1/assets/{ref}", headers=proj.auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == made["id"] and answer.json()["url"] == made["url"]
    for ref in ("@nobody", "0" * 64, "not-an-id"):
        assert_error(client.get(f"/v1/assets/{ref}", headers=proj.auth), 404, "unknown_asset")
    other = project(client)  # another project's key does not see it
    assert_error(client.get(f"/v1/assets/{made['id']}", headers=other.auth), 404, "unknown_asset")


def test_a_deleted_asset_is_gone_with_its_alias(client: httpx.Client) -> None:
    proj = project(client)
    made = uploaded(client, proj, png(140), alias="gone")
    delivered = f"/a/{proj.slug}/{made['id']}?w=20&fmt=png"
    assert client.get(delivered).status_code == 200
    answer = client.delete(f"/v1/assets/{made['id']}", headers=proj.auth)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": made["id"], "deleted": True}
    assert_error(client.get(f"/v1/assets/{made['id']}", headers=proj.auth), 404, "unknown_asset")
    assert_error(client.get("/v1/assets/@gone", headers=proj.auth), 404, "unknown_asset")
    assert_error(client.get(f"/a/{proj.slug}/@gone"), 404, "unknown_asset")
    assert_error(client.get(delivered), 404, "unknown_asset")
    again = client.delete(f"/v1/assets/{made['id']}", headers=proj.auth)
    assert_error(again, 404, "unknown_asset")
    assert client.get("/v1/assets", headers=proj.auth).json()["items"] == []
    by_alias = client.delete("/v1/assets/@gone", headers=proj.auth)
    assert_error(by_alias, 400, param="id")
    # uploaded again: the same id, and the alias is free to take
    assert uploaded(client, proj, png(140), alias="gone")["id"] == made["id"]


# --- delivery at /a/ --------------------------------------------------------------------------


def test_a_transform_of_an_asset_with_the_headers_of_live_images(
    client: httpx.Client, open_project: Proj
) -> None:
    made = uploaded(client, open_project, png(160, width=200, height=100))
    url = f"/a/{open_project.slug}/{made['id']}?w=64&fmt=png"
    first = client.get(url)
    assert first.status_code == 200
    assert magic(first.content) == "png" and first.headers["content-type"] == "image/png"
    assert size_of(first.content) == (64, 32)
    assert first.headers["x-cache-status"] == "TRANSFORM"
    assert first.headers["cache-control"] == YEAR
    assert first.headers["x-image-id"] == made["id"]
    assert first.headers["x-generator"] == "upload"
    assert first.headers["access-control-allow-origin"] == "*"
    assert first.headers["x-content-type-options"] == "nosniff"
    assert int(first.headers["content-length"]) == len(first.content)
    assert "transform;dur=" in first.headers["server-timing"]
    assert "vary" not in first.headers
    etag = first.headers["etag"]
    assert etag.startswith('"') and len(etag) == 66

    again = client.get(url)
    assert again.headers["x-cache-status"] == "HIT" and again.content == first.content
    assert again.headers["etag"] == etag
    reordered = client.get(f"/a/{open_project.slug}/{made['id']}?fmt=png&dpr=1&w=64")
    assert reordered.headers["x-cache-status"] == "HIT" and reordered.headers["etag"] == etag

    cached = client.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag

    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == etag

    box = client.get(f"/a/{open_project.slug}/{made['id']}?w=50&h=50&fit=contain&bg=ff0000&fmt=png")
    assert size_of(box.content) == (50, 50)
    cover = client.get(f"/a/{open_project.slug}/{made['id']}?w=50&h=50&fmt=jpeg&q=70")
    assert size_of(cover.content) == (50, 50) and magic(cover.content) == "jpeg"
    blurred = client.get(f"/a/{open_project.slug}/{made['id']}?w=64&fmt=png&blur=3")
    assert blurred.status_code == 200 and blurred.content != first.content
    wide = client.get(f"/a/{open_project.slug}/{made['id']}?w=32&dpr=2&fmt=webp")
    assert size_of(wide.content) == (64, 32) and magic(wide.content) == "webp"

    auto = client.get(
        f"/a/{open_project.slug}/{made['id']}?w=64&fmt=auto", headers={"Accept": "image/avif"}
    )
    assert auto.headers["vary"] == "Accept" and magic(auto.content) == "avif"

    counted = metrics(client)
    for status, cache in (("200", "HIT"), ("200", "TRANSFORM"), ("304", "HIT")):
        labels = frozenset({("route", "/a"), ("status", status), ("cache", cache)})
        assert counted[("promptpix_requests_total", labels)] >= 1


def test_generation_parameters_and_bad_values_at_a_are_400s(
    client: httpx.Client, open_project: Proj
) -> None:
    made = uploaded(client, open_project, png(170))
    base = f"/a/{open_project.slug}/{made['id']}"
    for query, param in (
        ("prompt=a%20fox", "prompt"),
        ("ar=16:9", "ar"),
        ("seed=3", "seed"),
        ("style=icon", "style"),
        ("w=0", "w"),
        ("fit=squash", "fit"),
        ("fmt=gif", "fmt"),
        ("colour=red", "colour"),
        ("blur=101", "blur"),
    ):
        assert_error(client.get(f"{base}?{query}"), 400, param=param)
    assert_error(client.get(f"/a/{open_project.slug}/{'0' * 64}"), 404, "unknown_asset")
    assert_error(client.get(f"/a/{open_project.slug}/@nobody"), 404, "unknown_asset")
    assert_error(client.get(f"/a/{open_project.slug}/short"), 404, "unknown_asset")
    assert_error(client.get(f"/a/no-such-{uuid.uuid4().hex[:6]}/{made['id']}"), 404)
    assert_error(client.get(f"/a/{open_project.slug}"), 404)
    assert_error(client.post(base), 405)
    preflight = client.options(base)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"


def test_a_signing_project_serves_the_urls_it_gave(client: httpx.Client) -> None:
    required = project(client, "required")
    made = uploaded(client, required, png(180), alias="signed")
    assert "sig=" in made["url"]
    plain = f"/a/{required.slug}/{made['id']}"
    assert_error(client.get(plain), 403, "signature_required", "sig")
    assert_error(client.get(plain + "?sig=" + "A" * 32), 403, "signature_invalid")
    given = client.get(path_of(made["url"]))
    assert given.status_code == 200 and given.headers["x-image-id"] == made["id"]
    assert client.get(path_of(made["url"])).headers["x-cache-status"] == "HIT"  # checked too
    assert_error(client.get(path_of(made["url"]) + "&w=10"), 403, "signature_invalid")

    generation = project(client, "generation")
    made = uploaded(client, generation, png(181))
    assert_error(client.get(f"/a/{generation.slug}/{made['id']}"), 403, "signature_required")
    # the signature covers the path: every width of that asset is served with it
    wider = client.get(path_of(made["url"]) + "&w=30&fmt=png")
    assert wider.status_code == 200 and size_of(wider.content)[0] == 30
    other = uploaded(client, generation, png(182))
    sig = path_of(made["url"]).split("sig=")[1]
    assert_error(client.get(f"/a/{generation.slug}/{other['id']}?sig={sig}"), 403)


def test_the_api_document_lists_the_asset_routes(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    validate(doc)
    paths = doc["paths"]
    assert {"post", "get"} <= set(paths["/v1/assets"])
    assert {"get", "delete"} <= set(paths["/v1/assets/{ref}"])
    posted = paths["/v1/assets"]["post"]
    assert "assets" in posted["description"]
    assert set(posted["requestBody"]["content"]) == {"multipart/form-data", "image/*"}
    assert set(posted["responses"]) >= {"201", "400", "401", "403", "413", "415"}


# --- a gateway with a small upload limit ------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("assets-small"),
        PROMPTPIX_ADMIN_TOKEN=ADMIN,
        PROMPTPIX_MAX_UPLOAD_MB="1",
    )
    yield server
    server.stop()


def noise(side: int) -> bytes:
    """A PNG that does not compress: about 3 bytes a pixel."""
    img = pyvips.Image.gaussnoise(side, side, mean=128, sigma=80).cast("uchar")
    return bytes(img.bandjoin([img.rotate(90), img.flip("horizontal")]).pngsave_buffer())


def test_a_body_over_the_limit_is_a_413(small: Gateway) -> None:
    with checked_client(small.url) as client:
        proj = project(client)
        fits = noise(560)
        assert 0.7 * MIB < len(fits) < MIB
        assert uploaded(client, proj, fits, raw=True)["bytes"] == len(fits)
        big = noise(840)
        assert len(big) > 1.5 * MIB
        for raw in (True, False):
            # Declared too large: read and dropped, so the client (still sending) gets the 413.
            answer = upload(client, proj, big, raw=raw)
            err = assert_error(answer, 413, "upload_too_large", "file")
            assert "PROMPTPIX_MAX_UPLOAD_MB" in err["message"]
        listed = client.get("/v1/assets", headers=proj.auth).json()["items"]
        assert [a["bytes"] for a in listed] == [len(fits)]  # nothing of the big ones kept


# What the gateway reads, and what the sockets' buffers may hold beside it.
READ_AT_MOST = DROP_AT_MOST + 16 * MIB


def test_a_body_over_the_limit_is_refused_before_it_is_all_read(small: Gateway) -> None:
    """No Content-Length (chunked): past the limit the gateway keeps nothing, reads and
    drops at most DROP_AT_MOST in all so that the client can read its 413, and answers
    while the client is still sending (64 MiB)."""
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 64 MiB, if it were all read
            sent += MIB
            yield b"\x89PNG\r\n\x1a\n" + bytes(MIB - 8)

    with checked_client(small.url) as client:
        proj = project(client)
        try:
            answer = client.post(
                "/v1/assets", content=body(), headers={**proj.auth, "Content-Type": "image/png"}
            )
        except httpx.TransportError:  # the gateway closed while we sent: also a refusal
            assert sent < READ_AT_MOST
            return
        assert_error(answer, 413, "upload_too_large")
    assert sent < READ_AT_MOST


def test_reindex_leaves_assets_out(small: Gateway) -> None:
    with checked_client(small.url) as client:
        proj = project(client)
        uploaded(client, proj, png(200))
    run = subprocess.run(
        [sys.executable, "-m", "promptpix.gateway.cli", "reindex"],
        env={**os.environ, **small.env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=small.root,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("reindexed 0 originals"), run.stdout


# --- two replicas on PostgreSQL and S3 (SeaweedFS) --------------------------------------------


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway, str]]:
    """Two gateway processes on one PostgreSQL database and one S3 bucket; and its endpoint."""
    root = tmp_path_factory.mktemp("assets-replicas")
    with live.replicas(root, "assets", PROMPTPIX_ADMIN_TOKEN=ADMIN) as started:
        yield started


def stored_in_s3(endpoint: str, key: str) -> dict[str, Any] | None:
    async def run() -> dict[str, Any] | None:
        store = S3Store("assets", "images", endpoint=endpoint, access_key="a", secret_key="b")
        try:
            found = await store.get(key)
            return None if found is None else found.meta
        finally:
            await store.close()

    return asyncio.run(run())


def test_replicas_share_assets_and_aliases(replicas: tuple[Gateway, Gateway, str]) -> None:
    one, two, endpoint = replicas
    with checked_client(one.url) as a, checked_client(two.url) as b:
        proj = project(a)
        eventually(lambda: b.get("/v1/assets", headers=proj.auth).status_code == 200)
        first = uploaded(a, proj, png(220), alias="shared")
        meta = stored_in_s3(endpoint, first["id"])
        assert meta is not None and meta["kind"] == "asset" and meta["project"] == proj.slug
        assert b.get("/v1/assets/@shared", headers=proj.auth).json()["id"] == first["id"]
        alias_url = f"/a/{proj.slug}/@shared?w=32&fmt=png"
        served = b.get(alias_url)
        assert served.status_code == 200 and served.headers["x-image-id"] == first["id"]
        assert a.get(alias_url).headers["x-image-id"] == first["id"]

        second = uploaded(b, proj, jpeg(221), alias="shared", raw=True)  # moved on the other
        eventually(lambda: a.get(alias_url).headers["x-image-id"] == second["id"], within=3)
        assert a.get(f"/a/{proj.slug}/{first['id']}?w=32&fmt=png").status_code == 200

        more = [uploaded(a if i % 2 else b, proj, png(230 + i))["id"] for i in range(3)]
        page = b.get("/v1/assets?limit=2", headers=proj.auth).json()
        rest = b.get(
            "/v1/assets", params={"limit": 10, "cursor": page["next_cursor"]}, headers=proj.auth
        ).json()
        listed = [x["id"] for x in page["items"] + rest["items"]]
        assert listed == [*reversed(more), second["id"], first["id"]]
        assert rest["next_cursor"] is None

        by_id = f"/a/{proj.slug}/{second['id']}?w=16&fmt=png"
        assert b.get(by_id).status_code == 200
        assert a.delete(f"/v1/assets/{second['id']}", headers=proj.auth).status_code == 200
        assert_error(b.get(f"/v1/assets/{second['id']}", headers=proj.auth), 404, "unknown_asset")
        assert_error(a.get(alias_url), 404, "unknown_asset")
        eventually(lambda: b.get(by_id).status_code == 404, within=12)  # its id, remembered 10 s
