"""`promptpix mcp`: the MCP tools over stdio, for a desktop client, against the gateway at
`PROMPTPIX_URL` with the key in `PROMPTPIX_API_KEY`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

from mcp.server.fastmcp import Context

from promptpix.client import AsyncClient

from .mcp_tools import build

DEFAULT_URL = "http://127.0.0.1:8080"


def settings(env: Mapping[str, str]) -> tuple[str, str] | str:
    """(url, key), or the one line that says which variable is wrong."""
    url = env.get("PROMPTPIX_URL", "").strip() or DEFAULT_URL
    key = env.get("PROMPTPIX_API_KEY", "").strip()
    if not url.startswith(("http://", "https://")):
        return "PROMPTPIX_URL: must be the gateway's http:// or https:// URL"
    if not key:
        return "PROMPTPIX_API_KEY: is not set (a key of the project the tools act in)"
    return url, key


def run(env: Mapping[str, str]) -> int:
    found = settings(env)
    if isinstance(found, str):
        print(f"promptpix: {found}", file=sys.stderr)
        return 2
    url, key = found
    client = AsyncClient(url, api_key=key)

    @contextlib.asynccontextmanager
    async def shared(ctx: Context[Any, Any, Any]) -> AsyncIterator[AsyncClient]:
        yield client

    # A local server: `upload_asset` may read a path on this machine.
    build(shared, local_files=True, security=None).run("stdio")
    return 0
