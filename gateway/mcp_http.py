"""`/mcp`: the MCP tools over streamable HTTP for a project key, run by the host app's
lifespan. A call's tools reach the gateway in-process, with the caller's key and address,
so a tool costs, counts and fails exactly as the JSON API does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from mcp.server.fastmcp import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request

from promptpix.client import AsyncClient

from .admission import Admission, presented_key
from .errors import Unauthorized
from .mcp_tools import build
from .responses import send_error
from .types import ASGIApp, Receive, Scope, Send

PATH = "/mcp"


def security(hosts: tuple[str, ...]) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host must be one of `hosts` and an Origin, when a
    browser sends one, the same host on http or https. `*` turns the check off."""
    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=list(hosts), allowed_origins=origins
    )


class McpEndpoint:
    def __init__(self, gateway: ASGIApp, admission: Admission, hosts: tuple[str, ...]) -> None:
        self.gateway = gateway  # the whole app: the tools' calls go through its routes
        self.admission = admission
        self.server = build(self._client_for, local_files=False, security=security(hosts))
        self.server.streamable_http_app()  # makes the session manager; its routes are ours
        self._running = contextlib.AsyncExitStack()

    async def start(self) -> None:
        await self._running.enter_async_context(self.server.session_manager.run())

    async def stop(self) -> None:
        await self._running.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = presented_key(scope["headers"])
        if scope["method"] != "OPTIONS":
            if not token:
                await send_error(send, Unauthorized("an API key is needed: Bearer KEY"))
                return
            if await self.admission.key(token) is None:
                await send_error(send, Unauthorized("unknown or revoked API key"))
                return
        await self.server.session_manager.handle_request(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _client_for(self, ctx: Context[Any, Any, Any]) -> AsyncIterator[AsyncClient]:
        request = ctx.request_context.request
        assert isinstance(request, Request)
        # The call's own Host, so the URLs the API writes are those the caller reaches (or
        # PROMPTPIX_PUBLIC_URL's, which the API prefers).
        base = str(request.base_url)
        peer = request.client or None
        transport = httpx.ASGITransport(
            app=self.gateway, client=(peer.host, peer.port) if peer else ("127.0.0.1", 0)
        )
        async with httpx.AsyncClient(transport=transport, timeout=None) as http:
            key = presented_key(request.headers.raw)
            yield AsyncClient(base, api_key=key, http=http)
