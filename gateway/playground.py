"""`GET /`: the playground, one page served whole by the gateway (its script and stylesheet
too, nothing from any other host), filled in with this gateway's ratios, styles, limits
and whether the public `demo` project is open."""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from string import Template
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from promptpix.generators.ratios import NATIVE_SIZES, ratio_text
from promptpix.generators.styles import BUILTIN_STYLES

from .api.routing import Call, Operation, error_answer
from .errors import NotFound
from .responses import COMMON

PATH = "/"
ASSET_PATH = "/playground/{name}"
FOLDER = Path(__file__).resolve().parent / "playground_page"
# The only files served under /playground/: a name is looked up here, never joined into a
# path unchecked.
ASSETS = {
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
# The page names its files with their content's hash, so a year's cache never serves a
# stale one; the page itself is revalidated.
ASSET_CACHE = "public, max-age=31536000, immutable"
PAGE_CACHE = "no-cache"
# Its own origin only; images also as blob: (the preview shows the bytes it fetched) and
# data: (the empty favicon that stops the browser asking for /favicon.ico).
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def options(pairs: list[tuple[str, str]], selected: str) -> str:
    """`<option>`s of (value, label), `selected` chosen."""
    return "\n".join(
        f'<option value="{html.escape(value)}"{" selected" if value == selected else ""}>'
        f"{html.escape(label)}</option>"
        for value, label in pairs
    )


def render(
    template: str,
    versions: dict[str, str],
    *,
    demo: bool,
    max_dimension: int,
    default_format: str,
    public_url: str,
) -> str:
    ratios = [(ratio_text(r), f"{ratio_text(r)} ({w}x{h})") for r, (w, h) in NATIVE_SIZES.items()]
    styles = [("", "the project's default"), *((name, name) for name in BUILTIN_STYLES)]
    return Template(template).substitute(
        ratios=options([*ratios, ("custom", "custom…")], "16:9"),
        styles=options(styles, ""),
        demo="1" if demo else "0",
        max=str(max_dimension),
        fmt=html.escape(default_format),
        fmt_default=html.escape(f"default ({default_format})"),
        base=html.escape(public_url.rstrip("/")),
        js=versions["playground.js"],
        css=versions["playground.css"],
    )


class Playground:
    """The page, rendered once, and its two files, read once."""

    def __init__(
        self, *, demo: bool, max_dimension: int, default_format: str, public_url: str
    ) -> None:
        self.files = {name: (FOLDER / name).read_bytes() for name in ASSETS}
        versions = {
            name: hashlib.sha256(data).hexdigest()[:16] for name, data in self.files.items()
        }
        self.page = render(
            (FOLDER / "index.html").read_text(),
            versions,
            demo=demo,
            max_dimension=max_dimension,
            default_format=default_format,
            public_url=public_url,
        ).encode()

    def operation(self) -> Operation:
        async def page(call: Call) -> Any:
            return answer(
                self.page,
                "text/html; charset=utf-8",
                {"cache-control": PAGE_CACHE, "content-security-policy": POLICY},
            )

        return Operation(
            "GET",
            PATH,
            page,
            "The playground: a prompt's live image, its transforms and copyable snippets",
            auth="public",
            tags=("service",),
        )

    async def asset(self, request: Request) -> Response:
        name = request.path_params.get("name", "")
        if name not in ASSETS:
            return error_answer(NotFound(f"no file {name[:100]!r} under /playground/"))
        return answer(self.files[name], ASSETS[name], {"cache-control": ASSET_CACHE})


def answer(body: bytes, media_type: str, headers: dict[str, str]) -> Response:
    response = Response(body, 200, media_type=media_type, headers=headers)
    for raw_name, raw_val in COMMON:
        response.headers[raw_name.decode()] = raw_val.decode()
    return response
