"""`GET /docs`: the API's docs page, Swagger UI over `/openapi.json`, served whole by the
gateway (the page and Swagger UI's files, from the installed `swagger-ui-py`), so it works
offline and loads nothing from any other host."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import NotFound
from ..responses import COMMON
from .routing import Call, Operation, error_answer

PATH = "/docs"
ASSET_PATH = PATH + "/{name}"
# The only files served from Swagger UI's folder: a name is looked up here, never joined
# into a path unchecked.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-16x16.png": "image/png",
    "favicon-32x32.png": "image/png",
}
COMPRESSIBLE = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})
# The page's URLs carry Swagger UI's version, so a year's cache never serves a stale file.
ASSET_CACHE = "public, max-age=31536000, immutable"
PAGE_CACHE = "no-cache"

INIT = (
    'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", '
    "deepLinking: true, validatorUrl: null, presets: [SwaggerUIBundle.presets.apis], "
    'layout: "BaseLayout"});'
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>promptpix API</title>
<link rel="icon" type="image/png" sizes="32x32" href="/docs/favicon-32x32.png?v={v}">
<link rel="icon" type="image/png" sizes="16x16" href="/docs/favicon-16x16.png?v={v}">
<link rel="stylesheet" href="/docs/swagger-ui.css?v={v}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js?v={v}"></script>
<script>{init}</script>
</body>
</html>
"""


def static_folder() -> Path:
    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def policy(init: str) -> str:
    """The page's Content-Security-Policy: its own origin only (data: and blob: images are
    Swagger UI's icons and rendered responses), and no inline script but the initializer."""
    digest = base64.b64encode(hashlib.sha256(init.encode()).digest()).decode()
    return (
        f"default-src 'self'; script-src 'self' 'sha256-{digest}'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    )


class Docs:
    """The page and its files; each file is read (and gzipped) once, on first use."""

    def __init__(self) -> None:
        self.folder = static_folder()
        self.page = PAGE.format(v=version("swagger-ui-py"), init=INIT).encode()
        self.policy = policy(INIT)
        self._files: dict[str, tuple[bytes, bytes | None]] = {}

    def operation(self) -> Operation:
        async def page(call: Call) -> Any:
            return self._answer(
                self.page,
                "text/html; charset=utf-8",
                {"cache-control": PAGE_CACHE, "content-security-policy": self.policy},
            )

        return Operation(
            "GET",
            PATH,
            page,
            "This API's docs page (Swagger UI over /openapi.json); it works offline",
            auth="public",
            tags=("service",),
        )

    async def asset(self, request: Request) -> Response:
        name = request.path_params.get("name", "")
        if name not in ASSETS:
            return error_answer(NotFound(f"no file {name[:100]!r} under {PATH}"))
        plain, packed = await self._load(name)
        headers = {"cache-control": ASSET_CACHE}
        if name in COMPRESSIBLE:
            headers["vary"] = "Accept-Encoding"
        body = plain
        if packed is not None and _takes_gzip(request.headers.get("accept-encoding", "")):
            body = packed
            headers["content-encoding"] = "gzip"
        return self._answer(body, ASSETS[name], headers)

    async def _load(self, name: str) -> tuple[bytes, bytes | None]:
        found = self._files.get(name)
        if found is None:
            # Off the event loop: the bundle is 1.5 MB to read and compress.
            found = await asyncio.to_thread(self._read, name)
            self._files[name] = found
        return found

    def _read(self, name: str) -> tuple[bytes, bytes | None]:
        data = (self.folder / name).read_bytes()
        packed = gzip.compress(data, 6, mtime=0) if name in COMPRESSIBLE else None
        return data, packed

    @staticmethod
    def _answer(body: bytes, media_type: str, headers: dict[str, str]) -> Response:
        response = Response(body, 200, media_type=media_type, headers=headers)
        for raw_name, raw_val in COMMON:
            response.headers[raw_name.decode()] = raw_val.decode()
        return response


def _takes_gzip(accept: str) -> bool:
    for part in accept.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False
