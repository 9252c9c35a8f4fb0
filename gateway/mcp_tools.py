"""The MCP server's tools, written for a model, over the Python client: the same calls, keys,
quotas and errors as the JSON API. `/mcp` runs them in-process with the caller's key, and
`promptpix mcp` over stdio against a gateway's URL."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated, Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from promptpix.client import AsyncClient, PromptpixError
from promptpix.generators.ratios import NATIVE_SIZES, ratio_text
from promptpix.generators.styles import BUILTIN_STYLES

from .urls import img_tag

# MCP clients (Claude Desktop among them) refuse a tool result over 1 MiB.
MAX_IMAGE_BLOCK = 1 << 20
RATIOS = ", ".join(ratio_text(r) for r in NATIVE_SIZES)
STYLES = "; ".join(f"`{s.name}` ({s.note})" for s in BUILTIN_STYLES.values())
INSTRUCTIONS = f"""promptpix makes images from prompts and serves them from permanent URLs.
Use `generate_image` to make an image and see it; put its URL (or the `<img>` snippet) in
HTML. Use `image_url` to write URLs for a page without generating: each image is made the
first time a browser asks for it. The same parameters always give the same image.
Native aspect ratios: {RATIOS}. Styles: {STYLES}."""

ClientFor = Callable[[Context[Any, Any, Any]], AbstractAsyncContextManager[AsyncClient]]

Prompt = Annotated[
    str,
    Field(
        description="What to draw, in any language: subject, setting, mood, composition. "
        "Name an uploaded asset as @alias (e.g. 'a mug printed with @logo') to use it as a "
        "reference image.",
        min_length=1,
        max_length=10000,
    ),
]
Ratio = Annotated[
    str | None,
    Field(
        description=f"Aspect ratio W:H. Native (made as is): {RATIOS}. Any other W:H (1..64) "
        "is cut from the nearest native one. Default 1:1.",
        pattern=r"^[0-9]{1,2}:[0-9]{1,2}$",
    ),
]
Style = Annotated[
    str | None,
    Field(description=f"A style preset, or none for the project's default. {STYLES}."),
]
Negative = Annotated[
    str | None, Field(description="What the image must not show.", max_length=1000)
]
Seed = Annotated[
    int | None,
    Field(description="0..2147483647; another seed is another image of the same prompt.", ge=0),
]


class GeneratedImage(BaseModel):
    id: str = Field(description="the generation's id, for get_generation")
    url: str = Field(description="the permanent URL of the image as asked; put it in HTML")
    srcset: str = Field(description="the same image at several widths, for <img srcset>")
    img: str = Field(description="a ready <img> tag with src, srcset, sizes, size and alt")
    width: int
    height: int
    generator: str = Field(description="who made it; `local` is an offline placeholder")
    placeholder: bool = Field(description="true when a stand-in answered, not a real model")
    preview_url: str | None = Field(description="the preview shown with this answer")


class ImageUrls(BaseModel):
    url: str = Field(description="the live URL: the image is made the first time it is asked")
    srcset: str
    html: str = Field(description="an <img> tag for it")


def _error(exc: PromptpixError) -> ToolError:
    """The gateway's own message, with its code and when to retry."""
    text = f"{exc.code}: {exc.message}" if exc.status else exc.message
    if exc.retry_after is not None:
        text += f" (retry after {round(exc.retry_after)} s)"
    return ToolError(text)


def _read_local(path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None


async def _preview(client: AsyncClient, url: str | None) -> ImageContent | None:
    """The gateway's own WebP at the preview width, when it fits in one block."""
    if not url:
        return None
    data = await client.download(url)
    encoded = base64.b64encode(data).decode("ascii")
    if len(encoded) > MAX_IMAGE_BLOCK:
        return None
    return ImageContent(type="image", data=encoded, mimeType="image/webp")


def build(
    client_for: ClientFor, *, local_files: bool, security: TransportSecuritySettings | None
) -> FastMCP[Any]:
    """The server with its six tools. `local_files` lets `upload_asset` read a path (the
    stdio server, which runs on the user's own machine; never the HTTP one)."""
    # One INFO line per MCP message ("Processing request of type ...") is noise in a log.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    server: FastMCP[Any] = FastMCP(
        "promptpix",
        instructions=INSTRUCTIONS,
        stateless_http=True,  # any worker or replica answers any call
        streamable_http_path="/mcp",
        transport_security=security,
    )

    @server.tool(
        annotations=ToolAnnotations(title="Generate an image", openWorldHint=True),
        structured_output=True,
    )
    async def generate_image(
        ctx: Context[Any, Any, Any],
        prompt: Prompt,
        aspect_ratio: Ratio = None,
        style: Style = None,
        negative_prompt: Negative = None,
        seed: Seed = None,
        references: Annotated[
            list[str] | None,
            Field(
                description="Up to 3 uploaded assets (`@alias` or asset id) to send as "
                "reference images, beside any @alias in the prompt.",
                max_length=3,
            ),
        ] = None,
    ) -> Annotated[CallToolResult, GeneratedImage]:
        """Generate an image from a prompt (or find the one these parameters already made)
        and see it. Answers a small preview, the image's permanent URL, a srcset and an
        <img> tag for HTML. The same parameters always answer the same image at no new
        cost; change the seed for a variation."""
        params: dict[str, Any] = {
            "aspect_ratio": aspect_ratio,
            "style": style,
            "negative_prompt": negative_prompt,
            "seed": seed,
            "references": references,
        }
        async with client_for(ctx) as client:
            try:
                made = await client.generate(prompt, **params)
                urls = made.get("urls") or {}
                image = made.get("image")
                if image is None:
                    raise ToolError(f"generation {made.get('id')} is {made.get('status')}")
                block = await _preview(client, urls.get("preview"))
            except PromptpixError as exc:
                raise _error(exc) from None
        placeholder = made.get("generator") == "local" or bool(made.get("fallback_used"))
        shown = min(image["width"], 800)  # the CSS width the tag's `sizes` asks for
        found = GeneratedImage(
            id=made.get("id", ""),
            url=urls.get("live", image["url"]),
            srcset=urls.get("srcset", ""),
            img=img_tag(
                urls.get("live", image["url"]),
                urls.get("srcset", ""),
                alt=prompt[:200],
                sizes=f"(max-width: {shown}px) 100vw, {shown}px",
                width=image["width"],
                height=image["height"],
            ),
            width=image["width"],
            height=image["height"],
            generator=made.get("generator", ""),
            placeholder=placeholder,
            preview_url=urls.get("preview") if block is not None else None,
        )
        lines = [
            f"Image {found.width}x{found.height} by {found.generator}.",
            f"URL: {found.url}",
            f"srcset: {found.srcset}",
            f"HTML: {found.img}",
        ]
        if placeholder:
            lines.insert(1, "This is an offline placeholder, not a generated picture.")
        if block is None:
            lines.append("(The preview is left out: it is over the 1 MiB a result may hold.)")
        content: list[ContentBlock] = [TextContent(type="text", text="\n".join(lines))]
        if block is not None:
            content.insert(0, block)
        return CallToolResult(content=content, structuredContent=found.model_dump())

    @server.tool(
        annotations=ToolAnnotations(title="Write an image URL", readOnlyHint=True),
        structured_output=True,
    )
    async def image_url(
        ctx: Context[Any, Any, Any],
        prompt: Prompt,
        aspect_ratio: Ratio = None,
        style: Style = None,
        negative_prompt: Negative = None,
        seed: Seed = None,
        width: Annotated[
            int | None, Field(description="Width in CSS pixels (1..4096).", ge=1, le=4096)
        ] = None,
        height: Annotated[
            int | None, Field(description="Height in CSS pixels (1..4096).", ge=1, le=4096)
        ] = None,
        fmt: Annotated[
            str | None, Field(description="webp (default), avif, jpeg, png or auto.")
        ] = None,
    ) -> ImageUrls:
        """Write a live image URL for HTML without generating anything now: the image is
        made the first time a browser asks for it, then cached for a year. Signed when the
        project requires signatures. Use it for every image of a page you write."""
        fields: dict[str, Any] = {
            "prompt": prompt,
            "ar": aspect_ratio,
            "style": style,
            "neg": negative_prompt,
            "seed": seed,
            "w": width,
            "h": height,
            "fmt": fmt,
        }
        async with client_for(ctx) as client:
            try:
                made = await client.urls(**{k: v for k, v in fields.items() if v is not None})
            except PromptpixError as exc:
                raise _error(exc) from None
        return ImageUrls(url=made["url"], srcset=made["srcset"], html=made["html"])

    @server.tool(annotations=ToolAnnotations(title="Upload an asset"))
    async def upload_asset(
        ctx: Context[Any, Any, Any],
        image_base64: Annotated[
            str | None, Field(description="The image file's bytes, base64-encoded.")
        ] = None,
        path: Annotated[
            str | None,
            Field(description="A local image file's path (only on a local, stdio server)."),
        ] = None,
        alias: Annotated[
            str | None,
            Field(
                description="A name (a-z 0-9 _ -) that prompts then use as @alias; "
                "uploading under an existing alias moves it.",
                pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Upload an image (a logo, a product photo) to the project, to use as a reference
        in prompts as @alias. JPEG, PNG, WebP, AVIF, HEIF or GIF."""
        if (image_base64 is None) == (path is None):
            raise ToolError("give either image_base64 or path")
        if path is not None:
            if not local_files:
                raise ToolError("path is only for a local (stdio) server; send image_base64")
            data = await asyncio.to_thread(_read_local, path)
        else:
            try:
                data = base64.b64decode(image_base64 or "", validate=True)
            except binascii.Error:
                raise ToolError("image_base64 is not base64") from None
        async with client_for(ctx) as client:
            try:
                return dict(await client.upload_asset(data, alias=alias))
            except PromptpixError as exc:
                raise _error(exc) from None

    @server.tool(annotations=ToolAnnotations(title="List assets", readOnlyHint=True))
    async def list_assets(
        ctx: Context[Any, Any, Any],
        limit: Annotated[int, Field(description="At most this many (1..100).", ge=1, le=100)] = 20,
        cursor: Annotated[
            str | None, Field(description="`next_cursor` of the previous page.")
        ] = None,
    ) -> dict[str, Any]:
        """The project's uploaded assets, newest first, with their aliases and sizes."""
        async with client_for(ctx) as client:
            try:
                return dict(await client.list_assets(limit=limit, cursor=cursor))
            except PromptpixError as exc:
                raise _error(exc) from None

    @server.tool(annotations=ToolAnnotations(title="Get a generation", readOnlyHint=True))
    async def get_generation(
        ctx: Context[Any, Any, Any],
        id: Annotated[str, Field(description="A generation's id (gen_...).")],
    ) -> dict[str, Any]:
        """One generation: its status, image, URLs, generator and prompt."""
        async with client_for(ctx) as client:
            try:
                return dict(await client.get_generation(id))
            except PromptpixError as exc:
                raise _error(exc) from None

    @server.tool(annotations=ToolAnnotations(title="List styles", readOnlyHint=True))
    async def list_styles(ctx: Context[Any, Any, Any]) -> dict[str, Any]:
        """The style presets (name and look), the project's default style, and the native
        aspect ratios with their pixel sizes."""
        async with client_for(ctx) as client:
            try:
                return await client.list_styles()
            except PromptpixError as exc:
                raise _error(exc) from None

    return server
