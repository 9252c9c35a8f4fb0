"""The MCP server with the official SDK's own client: in memory (the tools over a running
gateway), over real streamable HTTP at `/mcp` (a project key as Bearer, hosts checked), and
over stdio (`promptpix mcp` as a subprocess): the tool list, `generate_image`'s blocks and
their sizes, the quota error as a tool error, and a missing key refused at the HTTP layer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import CallToolResult, ImageContent, TextContent

from promptpix.client import AsyncClient
from promptpix.gateway.mcp_tools import MAX_IMAGE_BLOCK, build
from tests import live_support as live
from tests.live_support import assert_error, generations, magic, size_of
from tests.services import Gateway

pytestmark = pytest.mark.timeout(120)

ADMIN = "mcp-admin-token-0123456789abcdef"
TOOLS = {
    "generate_image",
    "image_url",
    "upload_asset",
    "list_assets",
    "get_generation",
    "list_styles",
}
PNG_2PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000020000000208020000"
    "00fdd49a730000001649444154789c63f8cfc0f09f8181e13f03c3ff0c0c"
    "0c00290a06fbe8b4a3a30000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with live.api_gateway(tmp_path_factory.mktemp("mcp"), ADMIN) as server:
        yield server


def new_key(gateway: Gateway, **fields: Any) -> tuple[str, str]:
    return live.new_project(gateway.url, ADMIN, **fields)


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


async def check_generate_image(session: ClientSession, gateway: Gateway) -> dict[str, Any]:
    """`generate_image`'s three parts: a WebP preview block within 1 MiB, the URL, srcset
    and `<img>` as text and as structured content."""
    result = await session.call_tool(
        "generate_image", {"prompt": "a kingfisher on a reed", "aspect_ratio": "16:9"}
    )
    assert result.isError is False, text_of(result)
    images = [b for b in result.content if isinstance(b, ImageContent)]
    assert len(images) == 1 and images[0].mimeType == "image/webp"
    assert len(images[0].data) <= MAX_IMAGE_BLOCK
    preview = base64.b64decode(images[0].data)
    found = result.structuredContent
    assert found is not None
    # The gateway's own transform at the preview width, the image's own ratio kept.
    assert magic(preview) == "webp"
    assert size_of(preview) == (512, round(512 * found["height"] / found["width"]))
    assert found["url"].startswith(f"{gateway.url}/i/") and "ar=16:9" in found["url"]
    assert (found["width"], found["height"]) == (1344, 768)
    assert found["srcset"].count("w, ") >= 2 and found["img"].startswith("<img src=")
    assert found["placeholder"] is True and found["generator"] == "local"  # the offline one
    text = text_of(result)
    assert found["url"] in text and "placeholder" in text and "<img src=" in text
    # The URL it gave is the image: a browser gets it from the gateway.
    async with httpx.AsyncClient(timeout=30) as browser:
        got = await browser.get(found["url"])
    assert got.status_code == 200 and got.headers["x-image-id"]
    return found


async def check_tools(session: ClientSession, gateway: Gateway) -> None:
    listed = await session.list_tools()
    by_name = {t.name: t for t in listed.tools}
    assert set(by_name) == TOOLS
    ratio = by_name["generate_image"].inputSchema["properties"]["aspect_ratio"]
    described = str(ratio)
    assert "16:9" in described and "21:9" in described
    assert "photorealistic" in str(by_name["generate_image"].inputSchema)
    assert by_name["generate_image"].outputSchema is not None
    made = await check_generate_image(session, gateway)
    again = await session.call_tool("get_generation", {"id": made["id"]})
    assert again.isError is False and again.structuredContent is not None
    assert again.structuredContent["id"] == made["id"]
    styles = await session.call_tool("list_styles", {})
    assert styles.structuredContent is not None
    assert "icon" in {s["name"] for s in styles.structuredContent["styles"]}
    url = await session.call_tool("image_url", {"prompt": "a quiet harbour", "width": 640})
    assert url.isError is False and url.structuredContent is not None
    assert "w=640" in url.structuredContent["url"] and url.structuredContent["html"]
    uploaded = await session.call_tool(
        "upload_asset", {"image_base64": base64.b64encode(PNG_2PX).decode(), "alias": "dot"}
    )
    assert uploaded.isError is False, text_of(uploaded)
    assert uploaded.structuredContent is not None
    assert uploaded.structuredContent["alias"] == "dot"
    listed_assets = await session.call_tool("list_assets", {})
    assert listed_assets.structuredContent is not None
    assert [a["alias"] for a in listed_assets.structuredContent["items"]] == ["dot"]
    bad = await session.call_tool("generate_image", {"prompt": "x", "aspect_ratio": "99:1"})
    assert bad.isError is True and "aspect_ratio" in text_of(bad)


def run_session(connect: Any, check: Any) -> None:
    async def go() -> None:
        async with connect() as session:
            await check(session)

    asyncio.run(go())


def test_in_memory(gateway: Gateway) -> None:
    _, key = new_key(gateway)

    async def go() -> None:
        async with AsyncClient(gateway.url, api_key=key) as client:

            @contextlib.asynccontextmanager
            async def shared(ctx: Any) -> AsyncIterator[AsyncClient]:
                yield client

            server = build(shared, local_files=False, security=None)
            async with create_connected_server_and_client_session(server) as session:
                await check_tools(session, gateway)
                local = await session.call_tool("upload_asset", {"path": "/etc/hostname"})
                assert local.isError is True and "stdio" in text_of(local)

    asyncio.run(go())


@contextlib.asynccontextmanager
async def http_session(gateway: Gateway, key: str) -> AsyncIterator[ClientSession]:
    headers = live.bearer(key)
    async with (
        httpx.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(f"{gateway.url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_streamable_http(gateway: Gateway) -> None:
    _, key = new_key(gateway)

    async def go() -> None:
        async with http_session(gateway, key) as session:
            await check_tools(session, gateway)

    asyncio.run(go())
    log = (gateway.root / f"gateway-{gateway.port}.log").read_text()
    assert key not in log and key.split("_")[-1] not in log
    assert "Processing request" not in log  # the SDK's per-message lines stay out


def test_quota_is_a_tool_error_with_the_gateways_message(gateway: Gateway) -> None:
    _, key = new_key(gateway, quota={"generations_per_month": 1})
    before = generations(gateway.url)

    async def go() -> None:
        async with http_session(gateway, key) as session:
            first = await session.call_tool("generate_image", {"prompt": "the only heron"})
            assert first.isError is False
            over = await session.call_tool("generate_image", {"prompt": "a second heron"})
            assert over.isError is True
            text = text_of(over)
            assert "quota_exceeded" in text and "used up" in text and "retry after" in text

    asyncio.run(go())
    assert generations(gateway.url) == before + 1  # the refused call generated nothing


def test_the_http_layer_wants_a_key_and_a_known_host(gateway: Gateway) -> None:
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    accept = {"accept": "application/json, text/event-stream"}
    no_key = httpx.post(f"{gateway.url}/mcp", json=hello, headers=accept)
    assert_error(no_key, 401, "unauthorized")
    assert no_key.headers["www-authenticate"].startswith("Bearer")
    bad_key = httpx.post(f"{gateway.url}/mcp", json=hello, headers={**accept, **live.bearer("x")})
    assert_error(bad_key, 401, "unauthorized")
    _, key = new_key(gateway)
    good = {**accept, **live.bearer(key)}
    ok = httpx.post(f"{gateway.url}/mcp", json=hello, headers=good)
    assert ok.status_code == 200, ok.text
    rebound = httpx.post(
        f"{gateway.url}/mcp", json=hello, headers={**good, "host": "evil.example:80"}
    )
    assert rebound.status_code == 421
    foreign = httpx.post(
        f"{gateway.url}/mcp", json=hello, headers={**good, "origin": "https://evil.example"}
    )
    assert foreign.status_code == 403


def test_stdio(gateway: Gateway, tmp_path: Path) -> None:
    _, key = new_key(gateway)
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG_2PX)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "promptpix.gateway.cli", "mcp"],
        env={**os.environ, "PROMPTPIX_URL": gateway.url, "PROMPTPIX_API_KEY": key},
    )

    async def go() -> None:
        with (tmp_path / "stderr.log").open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                await check_tools(session, gateway)
                local = await session.call_tool(
                    "upload_asset", {"path": str(logo), "alias": "logo"}
                )
                assert local.isError is False, text_of(local)
                assert local.structuredContent is not None
                assert local.structuredContent["width"] == 2

    asyncio.run(go())
