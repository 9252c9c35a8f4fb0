"""`GET`/`HEAD /i/{project}?...`: parse once, resolve the variant, answer with its headers.

A URL answered once is remembered (raw path and query → variant key and headers), so a
repeat that the memory tier still holds costs a dict look-up, not a parse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from promptpix.cache.keys import variant_key
from promptpix.cache.store import StoreUnavailable
from promptpix.generators.base import AllGeneratorsFailed, Refused
from promptpix.generators.styles import is_transparent
from promptpix.transforms.errors import PoolFull, SourceTooLarge, UnreadableImage
from promptpix.transforms.formats import FORMATS, negotiate

from . import errors as err
from .config import Config
from .images import HIT, SIMILAR, ImageService, Variant
from .metrics import Metrics
from .params import ImageRequest, ParseContext, parse
from .projects import Project, Projects
from .responses import COMMON, EXPOSE, TIMING_ALLOW, Headers, etag_matches, send, send_error
from .responses import server_timing as timing_header
from .types import Receive, Scope, Send

log = logging.getLogger("promptpix.live")

ROUTE = "/i"
REMEMBERED_URLS = 50_000


@dataclass(frozen=True, slots=True)
class Remembered:
    """What a URL resolved to: one variant key, or one per negotiated format."""

    by_format: dict[str, str]
    negotiated: bool
    needs_alpha: bool


class LiveImages:
    def __init__(
        self,
        images: ImageService,
        projects: Projects,
        config: Config,
        metrics: Metrics,
        generator_ids: list[str],
        similar_cache_control: str = "public, max-age=300",
    ) -> None:
        self.images = images
        self.config = config
        self.metrics = metrics
        self.contexts = {p.slug: self._context(p, generator_ids) for p in projects}
        self.projects = projects
        self.reuse = {p.slug: p.semantic_reuse for p in projects}
        self.remembered: dict[tuple[str, bytes], Remembered] = {}
        self.cache_control = config.cache_control.encode()
        # A stand-in for an image that could not be made is kept for minutes, not a year.
        self.similar_cache_control = similar_cache_control.encode()
        self._header_cache: dict[tuple[str, bool], Headers] = {}

    def _context(self, project: Project, generator_ids: list[str]) -> ParseContext:
        return ParseContext(
            project=project.slug,
            style_version=project.style_version,
            default_style=project.default_style,
            default_enhance=project.default_enhance,
            generator_ids=frozenset(generator_ids),
            max_dimension=self.config.max_dimension,
            default_format=self.config.default_format,
        )

    async def __call__(self, scope: Scope, receive: Receive, send_: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await self._not_get(method, send_)
            return
        path: str = scope["path"]
        query: bytes = scope["query_string"]
        accept = b""
        if_none_match = b""
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value
            elif name == b"if-none-match":
                if_none_match = value

        known = self.remembered.get((path, query))
        if known is not None:
            fmt = (
                negotiate(accept.decode("latin-1"), known.needs_alpha)
                if known.negotiated
                else next(iter(known.by_format))
            )
            vkey = known.by_format.get(fmt)
            if vkey is not None:
                variant = self.images.cached(vkey)
                if variant is not None:
                    await self._answer(
                        send_, variant, HIT, known.negotiated, if_none_match, head, started, ()
                    )
                    return

        try:
            request, fmt, negotiated = self._parse(path, query, accept)
            vkey = variant_key(request.gen.key, request.transform)
            parsed_ms = (time.perf_counter() - started) * 1000
            if if_none_match and etag_matches(if_none_match, b'"' + vkey.encode() + b'"'):
                await self._not_modified(send_, vkey, negotiated)
                return
            variant, status = await self.images.variant(
                request.gen, request.transform, vkey, reuse=self.reuse[request.gen.project]
            )
        except Exception as exc:  # every failure leaves as a JSON answer, never a bare 500
            await self._fail(send_, exc, head)
            return
        if status != SIMILAR:  # the URL's own image is still to be made: ask again next time
            self._remember(path, query, fmt, vkey, negotiated, request)
        stages = [("parse", parsed_ms)]
        if status != HIT:
            stages.extend(variant.timings.items())
        await self._answer(send_, variant, status, negotiated, if_none_match, head, started, stages)

    def _parse(self, path: str, query: bytes, accept: bytes) -> tuple[ImageRequest, str, bool]:
        slug = path[len(ROUTE) + 1 :]
        ctx = self.contexts.get(slug)
        if ctx is None or not slug:
            raise err.UnknownProject(f"no project named '{slug[:64]}'")
        request = parse(query, ctx)
        tp = request.transform
        negotiated = tp.fmt == "auto"
        fmt = negotiate(accept.decode("latin-1"), _needs_alpha(request)) if negotiated else tp.fmt
        quality = (
            None
            if FORMATS[fmt].default_quality is None
            else (tp.quality or FORMATS[fmt].default_quality)
        )
        resolved = ImageRequest(request.gen, tp.resolved(fmt, quality), request.sig)
        return resolved, fmt, negotiated

    def _remember(
        self, path: str, query: bytes, fmt: str, vkey: str, negotiated: bool, req: ImageRequest
    ) -> None:
        if len(self.remembered) >= REMEMBERED_URLS:
            self.remembered.clear()
        known = self.remembered.get((path, query))
        if known is None:
            known = Remembered({}, negotiated, _needs_alpha(req))
            self.remembered[(path, query)] = known
        known.by_format[fmt] = vkey

    def _headers(
        self, variant: Variant, negotiated: bool, cache_control: bytes | None = None
    ) -> Headers:
        headers = [
            (b"content-type", variant.content_type.encode()),
            (b"content-length", str(len(variant.data)).encode()),
            (b"cache-control", cache_control or self.cache_control),
            (b"etag", b'"' + variant.key.encode() + b'"'),
            (b"x-image-id", variant.original_key.encode()),
            (b"x-generator", variant.generator.encode()),
            *COMMON,
            EXPOSE,
            TIMING_ALLOW,
        ]
        if negotiated:
            headers.append((b"vary", b"Accept"))
        return headers

    async def _answer(
        self,
        send_: Send,
        variant: Variant,
        status: str,
        negotiated: bool,
        if_none_match: bytes,
        head: bool,
        started: float,
        stages: object,
    ) -> None:
        similar = status == SIMILAR
        if (
            not similar
            and if_none_match
            and etag_matches(if_none_match, b'"' + variant.key.encode() + b'"')
        ):
            await self._not_modified(send_, variant.key, negotiated)
            return
        if similar:
            base = self._headers(variant, negotiated, self.similar_cache_control)
            base.append((b"x-semantic-similarity", f"{variant.similarity or 0:.4f}".encode()))
        else:
            key = (variant.key, negotiated)
            cached = self._header_cache.get(key)
            base = cached if cached is not None else self._headers(variant, negotiated)
            if cached is None and status == HIT:  # kept for repeats: one-offs would pile up
                if len(self._header_cache) >= REMEMBERED_URLS:
                    self._header_cache.clear()
                self._header_cache[key] = base
        total = (time.perf_counter() - started) * 1000
        if stages:
            timing = timing_header([*stages, ("total", total)])  # type: ignore[list-item]
        else:  # a hit: answered from memory
            timing = b"cache;dur=%.2f, total;dur=%.2f" % (total, total)
        headers = [*base, (b"x-cache-status", status.encode()), (b"server-timing", timing)]
        await send(send_, 200, headers, variant.data, head=head)
        self.metrics.requests.inc(ROUTE, "200", status)
        self.metrics.stage_ms.observe(total, "request")

    async def _not_modified(self, send_: Send, vkey: str, negotiated: bool) -> None:
        headers = [
            (b"etag", b'"' + vkey.encode() + b'"'),
            (b"cache-control", self.cache_control),
            *COMMON,
        ]
        if negotiated:
            headers.append((b"vary", b"Accept"))
        await send(send_, 304, headers, b"", head=True)
        self.metrics.requests.inc(ROUTE, "304", "HIT")

    async def _not_get(self, method: str, send_: Send) -> None:
        if method == "OPTIONS":
            headers = [
                (b"access-control-allow-origin", b"*"),
                (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
                (b"access-control-allow-headers", b"*"),
                (b"access-control-max-age", b"86400"),
                (b"content-length", b"0"),
            ]
            await send(send_, 204, headers, b"", head=True)
            self.metrics.requests.inc(ROUTE, "204", "")
            return
        await self._fail(send_, err.MethodNotAllowed(f"{method} is not allowed here"), False)

    async def _fail(self, send_: Send, exc: BaseException, head: bool) -> None:
        mapped = map_error(exc)
        if mapped.status >= 500 and not isinstance(exc, err.GatewayError):
            log.error("request failed: %r", exc, exc_info=exc)
        await send_error(send_, mapped, head=head)
        self.metrics.requests.inc(ROUTE, str(mapped.status), "")


def _needs_alpha(req: ImageRequest) -> bool:
    tp = req.transform
    plain = is_transparent(req.gen.style) and not tp.bg_given
    return tp.rmbg or plain or (tp.bg_given and tp.bg is None)


def map_error(exc: BaseException) -> err.GatewayError:
    """Lower-level failures become the public errors of SPEC §1, here and only here."""
    if isinstance(exc, err.GatewayError):
        return exc
    if isinstance(exc, Refused):
        return err.ContentRefused("the generator declined this prompt")
    if isinstance(exc, AllGeneratorsFailed):
        return err.GeneratorsFailed(
            "every generator failed",
            retry_after=30,
            extra={"generators_attempted": exc.attempted},
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return err.GenerationTimeout(
            "the image is taking longer than this request may wait; it is still being made "
            "and will be stored: try again shortly",
            retry_after=5,
        )
    if isinstance(exc, StoreUnavailable):
        return err.StoreDown("the image store cannot be read; try again shortly", retry_after=5)
    if isinstance(exc, PoolFull):
        return err.Busy("too many images are being processed; try again", retry_after=1)
    if isinstance(exc, SourceTooLarge):
        return err.SourceTooLarge(str(exc))
    if isinstance(exc, UnreadableImage):
        return err.BadOriginal("the stored original could not be read")
    return err.GatewayError("internal error")
