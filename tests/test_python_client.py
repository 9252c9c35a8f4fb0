"""The Python client (`promptpix.client`): its URLs and signatures on the shared vectors,
and `Client` / `AsyncClient` against a running gateway over real HTTP: generations, waits,
history, assets, signed URLs, styles, and the API's errors raised with code and Retry-After."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptpix.client import (
    AsyncClient,
    Client,
    PromptpixError,
    canonical,
    image_url,
    sign_url,
    srcset,
)
from promptpix.client.urls import _split_query
from tests import live_support as live
from tests.live_support import magic, size_of
from tests.services import Gateway, free_port

pytestmark = pytest.mark.timeout(120)

VECTORS = Path(__file__).parent / "vectors"
ADMIN = "client-admin-token-0123456789abcdef"
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e5273fd7"
    "0000000049454e44ae426082"
)


def signing_vectors() -> list[dict[str, Any]]:
    return list(json.loads((VECTORS / "signing.json").read_text()))


def url_vectors() -> list[dict[str, Any]]:
    return list(json.loads((VECTORS / "urls.json").read_text()))


@pytest.mark.parametrize("case", signing_vectors(), ids=lambda c: c["url"][:40])
def test_sign_url_matches_the_shared_vectors(case: dict[str, Any]) -> None:
    path, _, search = case["url"].partition("?")
    assert canonical(path, _split_query(search), case["mode"]) == case["canonical"]
    signed = sign_url(case["url"], case["secret"], case["mode"])
    assert signed.startswith(case["url"] + "&")
    assert signed.endswith(f"&sig={case['sig']}")
    # A sig already there is replaced, not repeated.
    again = sign_url(signed.replace(case["sig"], "x" * 32), case["secret"], case["mode"])
    assert again == signed


@pytest.mark.parametrize("case", url_vectors(), ids=lambda c: c["url"][:50])
def test_image_url_and_srcset_match_the_shared_vectors(case: dict[str, Any]) -> None:
    signing = {"secret": case["secret"], "mode": case["mode"]} if "secret" in case else {}
    params = case["params"]
    assert image_url(case["base"], case["project"], **signing, **params) == case["url"]
    assert (
        srcset(case["base"], case["project"], case["widths"], **signing, **params)
        == (case["srcset"])
    )


def test_bad_mode_and_base_are_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="mode"):
        sign_url("/i/a?prompt=x", "s", "sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base_url"):
        Client("127.0.0.1:8080")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with live.api_gateway(tmp_path_factory.mktemp("client"), ADMIN) as server:
        yield server


def project(gateway: Gateway, **fields: Any) -> tuple[str, str, dict[str, Any]]:
    """A project, a key with every scope, and the project's answer (its secret if it signs)."""
    slug, key = live.new_project(gateway.url, ADMIN, **fields)
    with httpx.Client(base_url=gateway.url, headers=live.bearer(ADMIN)) as admin:
        shown = admin.get(f"/v1/projects/{slug}").json()
    return slug, key, shown


def test_generate_wait_history_and_download(gateway: Gateway) -> None:
    _, key, _ = project(gateway)
    with Client(gateway.url, api_key=key) as client:
        made = client.generate(
            "a lighthouse at dusk", aspect_ratio="16:9", seed=3, metadata={"page": "home"}
        )
        assert made["status"] == "completed"
        assert made["cache"]["generated"] is True
        assert (made["image"]["width"], made["image"]["height"]) == (1344, 768)
        again = client.generate("a lighthouse at dusk", aspect_ratio="16:9", seed=3)
        assert again["cache"]["generated"] is False and again["cache"]["stored"] is True
        assert client.get_generation(made["id"])["id"] == made["id"]

        live_bytes = client.download(made["urls"]["live"])
        assert magic(live_bytes) == "webp"
        thumb = client.download(made["urls"]["thumb"])
        assert size_of(thumb) == (256, 256)

        queued = client.generate("a lighthouse at dawn", wait=False)
        assert queued["status"] in ("queued", "running", "completed")
        done = client.wait_for(queued["id"], timeout=60)
        assert done["status"] == "completed" and done["image"]["width"] == 1024

        page = client.list_generations(metadata={"page": "home"})
        assert [g["id"] for g in page["items"]] == [made["id"]]
        first = client.list_generations(limit=2)
        assert len(first["items"]) == 2 and first["next_cursor"]
        rest = client.list_generations(limit=2, cursor=first["next_cursor"])
        seen = [g["id"] for g in first["items"] + rest["items"]]
        assert len(set(seen)) == len(seen) == 3  # made, its repeat and the queued one


def test_batch_flow_and_prompt_validation(gateway: Gateway) -> None:
    _, key, _ = project(gateway)
    with Client(gateway.url, api_key=key) as client:
        answer = client.batch([{"prompt": "a red kite"}, {"prompt": "x", "aspect_ratio": "0:1"}])
        assert [item["status"] for item in answer["items"]] == [200, 400]
        flow = client.create_flow(
            "teaser", [{"prompt": "a paper boat"}, {"prompt": "@last on a pond at night"}]
        )
        assert len(flow["steps"]) == 2
        assert (
            client.get_flow(flow["id"])["steps"][1]["parent_id"]
            == flow["steps"][0]["generation"]["id"]
        )
        check = client.validate_prompt("a fox " * 700)
        assert check["action"] == "compact" and check["valid"] is True


def test_assets_by_bytes_and_by_path(gateway: Gateway, tmp_path: Path) -> None:
    _, key, _ = project(gateway)
    with Client(gateway.url, api_key=key) as client:
        first = client.upload_asset(PNG_1PX, alias="dot")
        assert first["alias"] == "dot" and (first["width"], first["height"]) == (1, 1)
        path = tmp_path / "dot.png"
        path.write_bytes(PNG_1PX)
        assert client.upload_asset(path)["id"] == first["id"]  # same bytes, same asset
        assert client.get_asset("@dot")["id"] == first["id"]
        assert [a["id"] for a in client.list_assets(limit=10)["items"]] == [first["id"]]
        made = client.generate("a mug printed with @dot")
        assert made["references"] == [first["id"]]
        client.delete_asset(first["id"])
        with pytest.raises(PromptpixError) as gone:
            client.get_asset(first["id"])
        assert (gone.value.status, gone.value.code) == (404, "unknown_asset")


def test_signed_urls_from_the_gateway_and_from_sign_url(gateway: Gateway) -> None:
    slug, key, _ = project(gateway, signing="required")
    with httpx.Client(base_url=gateway.url, headers=live.bearer(ADMIN)) as admin:
        secret = admin.post(f"/v1/projects/{slug}/signing-secrets").json()["signing_secret"]
    with Client(gateway.url, api_key=key) as client:
        url = client.image_url(prompt="a signed fox", ar="3:2", w=300)
        assert "sig=" in url and url.startswith(f"{gateway.url}/i/{slug}?")
        assert size_of(client.download(url)) == (300, 200)
        unsigned = f"{gateway.url}/i/{slug}?prompt=a+signed+fox&w=120"
        with pytest.raises(PromptpixError) as refused:
            client.download(unsigned)
        assert refused.value.status == 403 and refused.value.code == "signature_required"
        assert size_of(client.download(sign_url(unsigned, secret))) == (120, 120)
        made = client.urls(prompt="a signed fox", w=300, widths=[300, 600])
        assert made["srcset"].count("sig=") == 2 and made["html"].startswith("<img ")


def test_image_url_without_a_key_is_the_public_projects(gateway: Gateway) -> None:
    with Client(gateway.url) as client:
        url = client.image_url(prompt="a public fox", w=64, fmt="png")
        assert url == f"{gateway.url}/i/demo?prompt=a%20public%20fox&w=64&fmt=png"
        assert magic(client.download(url)) == "png"


def test_styles(gateway: Gateway) -> None:
    _, key, _ = project(gateway, style="icon")
    with Client(gateway.url, api_key=key) as client:
        found = client.list_styles()
    assert found["default"] == "icon"
    names = {s["name"] for s in found["styles"]}
    assert {"photorealistic", "icon", "logo", "spot_illustration"} <= names
    assert {"16:9", "9:16", "21:9", "1:1"} <= {r["ratio"] for r in found["aspect_ratios"]}


def test_errors_carry_the_code_and_retry_after(gateway: Gateway) -> None:
    _, key, _ = project(gateway, quota={"generations_per_month": 1})
    stranger = Client(gateway.url, api_key="pk_not_a_key")
    with stranger, pytest.raises(PromptpixError) as unknown:
        stranger.generate("a fox")
    assert (unknown.value.status, unknown.value.code) == (401, "unauthorized")
    with Client(gateway.url, api_key=key) as client:
        client.generate("the one allowed image")
        with pytest.raises(PromptpixError) as over:
            client.generate("one image too many")
        with pytest.raises(PromptpixError) as bad:
            client.generate("a fox", aspect_ratio="99:1")
    assert (over.value.status, over.value.code) == (429, "quota_exceeded")
    assert over.value.retry_after is not None and over.value.retry_after >= 1
    assert "used up" in over.value.message and str(over.value).startswith("quota_exceeded: ")
    assert (bad.value.status, bad.value.param) == (400, "aspect_ratio")
    nowhere = Client(f"http://127.0.0.1:{free_port()}", api_key=key, timeout=5)
    with nowhere, pytest.raises(PromptpixError) as down:
        nowhere.list_styles()
    assert (down.value.status, down.value.code) == (0, "unreachable")


def test_async_client(gateway: Gateway) -> None:
    _, key, _ = project(gateway, quota={"generations_per_month": 2})

    async def run() -> None:
        async with AsyncClient(gateway.url, api_key=key) as client:
            made = await asyncio.gather(
                client.generate("an async heron", aspect_ratio="3:4"),
                client.generate("an async heron", aspect_ratio="3:4"),
            )
            assert made[0]["id"] != made[1]["id"]
            assert made[0]["image"] == made[1]["image"]  # one original
            queued = await client.generate("an async crane", wait=False)
            done = await client.wait_for(queued["id"], timeout=60)
            assert done["status"] == "completed"
            assert magic(await client.download(done["urls"]["card"])) == "webp"
            url = await client.image_url(prompt="an async heron", w=100)
            assert url.startswith(gateway.url + "/i/")
            styles = await client.list_styles()
            assert styles["default"] is None
            with pytest.raises(PromptpixError) as over:
                await client.generate("a third image")
            assert over.value.code == "quota_exceeded" and over.value.retry_after

    asyncio.run(run())
