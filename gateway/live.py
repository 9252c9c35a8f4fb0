"""`GET`/`HEAD /i/{project}?...`: admission, one parse, the variant, its headers.

A URL answered once is remembered (raw path and query -> variant key and headers) for the
project it was admitted in, so a repeat that the memory tier still holds costs a dict
look-up after admission, not a parse.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass

from promptpix.cache.control import Project
from promptpix.transforms.formats import negotiate

from . import errors as err
from . import hints
from .admission import Admission
from .failures import answer_for
from .images import Images
from .metrics import Metrics
from .params import ImageRequest, ParseRules, parse_fields, split_query
from .references import References
from .responses import (
    PREFLIGHT,
    Headers,
    conditions,
    etag_matches,
    image_headers,
    not_modified_headers,
    send,
    send_error,
)
from .responses import server_timing as timing_header
from .tiers import HIT, PLACEHOLDER, SIMILAR, Variant
from .types import Receive, Scope, Send

ROUTE = "/i"
PREFIX = ROUTE + "/"
REMEMBERED_URLS = 50_000
STAND_INS = frozenset({SIMILAR, PLACEHOLDER})  # answers kept for minutes, asked for again
EMPTY: Headers = []


@dataclass(frozen=True, slots=True)
class Remembered:
    """What a URL resolved to in its project: one variant key, or one per negotiated format."""

    project: Project  # as admitted: a changed project is a new object, and parses again
    by_format: dict[str, str]
    negotiated: bool
    needs_alpha: bool


class LiveImages:
    def __init__(
        self,
        images: Images,
        admission: Admission,
        rules: ParseRules,
        metrics: Metrics,
        *,
        cache_control: str,
        similar_cache_control: str = "public, max-age=300",
        fallback_cache_control: str = "public, max-age=60",
        references: References | None = None,
    ) -> None:
        self.images = images
        self.references = references
        self.admission = admission
        self.rules = rules
        self.metrics = metrics
        self.remembered: dict[tuple[str, bytes], Remembered] = {}
        self.cache_control = cache_control.encode()
        # A stand-in for an image that could not be made is kept for minutes, not a year.
        self.similar_cache_control = similar_cache_control.encode()
        self.fallback_cache_control = fallback_cache_control.encode()
        self._header_cache: dict[tuple[str, bool], Headers] = {}

    async def __call__(self, scope: Scope, receive: Receive, send_: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await self._not_get(method, send_)
            return
        path: str = scope["path"]
        query: bytes = scope["query_string"]
        accept, if_none_match = conditions(scope["headers"])
        try:
            slug = path[len(PREFIX) :]
            if not slug:
                raise err.UnknownProject("no project named ''")
            project, signed = await self.admission.live(slug, path, query)
        except Exception as exc:
            await self._fail(send_, exc, head)
            return

        known = self.remembered.get((path, query))
        if known is not None and known.project is project:
            if known.negotiated:
                fmt = negotiate(accept.decode("latin-1"), known.needs_alpha)
            else:
                fmt = next(iter(known.by_format))
            vkey = known.by_format.get(fmt)
            variant = self.images.cached(vkey) if vkey is not None else None
            if variant is not None:
                await self._answer(
                    send_, variant, HIT, known.negotiated, if_none_match, head, started, ()
                )
                return

        hinted: list[bytes] | None = None  # `ch=1`: the Client Hints this answer used
        try:
            fields = signed if signed is not None else split_query(query)
            if hints.wanted(fields):
                fields, hinted = hints.apply(fields, scope["headers"], self.rules.max_dimension)
            request = parse_fields(fields, project, self.rules, accept.decode("latin-1"))
            if self.references is not None and "@" in request.gen.prompt:
                request = await self._with_references(project, request)
            vkey = request.variant_key
            parsed_ms = (time.perf_counter() - started) * 1000
            extra = hints.answer_headers(hinted) if hinted is not None else []
            if if_none_match and etag_matches(if_none_match, b'"' + vkey.encode() + b'"'):
                await self._not_modified(send_, vkey, request.negotiated, extra)
                return
            peer = scope.get("client") or ("", 0)
            terms = self.admission.terms(project, str(peer[0]), scope["headers"])
            variant, status = await self.images.variant(
                request.gen, request.transform, vkey, reuse=project.semantic_reuse, terms=terms
            )
        except Exception as exc:  # every failure leaves as a JSON answer, never a bare 500
            await self._fail(send_, exc, head)
            return
        # A stand-in: the URL's own image is still to be made, ask again. An `@alias`: the
        # alias may move, and the URL then names another image. Client Hints: the same URL
        # is another image on another device.
        if status not in STAND_INS and not request.gen.references and hinted is None:
            self._remember(path, query, project, vkey, request)
        stages = [("parse", parsed_ms)]
        if status != HIT:
            stages.extend(variant.timings.items())
        await self._answer(
            send_, variant, status, request.negotiated, if_none_match, head, started, stages, extra
        )

    async def _with_references(self, project: Project, request: ImageRequest) -> ImageRequest:
        """The request with the images its prompt's `@alias`es name now."""
        assert self.references is not None
        found = await self.references.resolve(project.slug, request.gen.prompt)
        if not found.keys:
            return request
        gen = dataclasses.replace(request.gen, references=found.keys)
        return dataclasses.replace(request, gen=gen)

    def _remember(
        self, path: str, query: bytes, project: Project, vkey: str, req: ImageRequest
    ) -> None:
        if len(self.remembered) >= REMEMBERED_URLS:
            self.remembered.clear()
        known = self.remembered.get((path, query))
        if known is None or known.project is not project:
            known = Remembered(project, {}, req.negotiated, req.needs_alpha)
            self.remembered[(path, query)] = known
        known.by_format[req.transform.fmt] = vkey

    def _headers(
        self, variant: Variant, negotiated: bool, cache_control: bytes | None = None
    ) -> Headers:
        return image_headers(variant, negotiated, cache_control or self.cache_control)

    async def _answer(
        self,
        send_: Send,
        variant: Variant,
        status: str,
        negotiated: bool,
        if_none_match: bytes,
        head: bool,
        started: float,
        stages: Iterable[tuple[str, float]],
        extra: Headers = EMPTY,
    ) -> None:
        stand_in = status in STAND_INS
        etag = b'"' + variant.key.encode() + b'"'
        if not stand_in and if_none_match and etag_matches(if_none_match, etag):
            await self._not_modified(send_, variant.key, negotiated, extra)
            return
        if status == SIMILAR:
            base = self._headers(variant, negotiated, self.similar_cache_control)
            base.append((b"x-semantic-similarity", f"{variant.similarity or 0:.4f}".encode()))
        elif status == PLACEHOLDER:
            base = self._headers(variant, negotiated, self.fallback_cache_control)
        else:
            key = (variant.key, negotiated)
            cached = self._header_cache.get(key)
            base = cached if cached is not None else self._headers(variant, negotiated)
            if cached is None and status == HIT:  # kept for repeats: one-offs would pile up
                if len(self._header_cache) >= REMEMBERED_URLS:
                    self._header_cache.clear()
                self._header_cache[key] = base
        total = (time.perf_counter() - started) * 1000
        stages = list(stages)
        if stages:
            timing = timing_header([*stages, ("total", total)])
        else:  # a hit: answered from memory
            timing = b"cache;dur=%.2f, total;dur=%.2f" % (total, total)
        headers = [*base, *extra, (b"x-cache-status", status.encode()), (b"server-timing", timing)]
        await send(send_, 200, headers, variant.data, head=head)
        self.metrics.requests.inc(ROUTE, "200", status)
        self.metrics.stage_ms.observe(total, "request")

    async def _not_modified(
        self, send_: Send, vkey: str, negotiated: bool, extra: Headers = EMPTY
    ) -> None:
        headers = [*not_modified_headers(vkey, negotiated, self.cache_control), *extra]
        await send(send_, 304, headers, b"", head=True)
        self.metrics.requests.inc(ROUTE, "304", "HIT")

    async def _not_get(self, method: str, send_: Send) -> None:
        await not_get(method, send_, self.metrics, ROUTE)

    async def _fail(self, send_: Send, exc: BaseException, head: bool) -> None:
        await refuse(send_, exc, head, self.metrics, ROUTE)


async def not_get(method: str, send_: Send, metrics: Metrics, route: str) -> None:
    """An image route's answer to any method but GET and HEAD: a CORS preflight, or 405."""
    if method == "OPTIONS":
        await send(send_, 204, PREFLIGHT, b"", head=True)
        metrics.requests.inc(route, "204", "")
        return
    await refuse(
        send_, err.MethodNotAllowed(f"{method} is not allowed here"), False, metrics, route
    )


async def refuse(send_: Send, exc: BaseException, head: bool, metrics: Metrics, route: str) -> None:
    """Any failure of an image route as the JSON error it maps to, counted."""
    mapped = answer_for(exc)
    await send_error(send_, mapped, head=head)
    metrics.requests.inc(route, str(mapped.status), "")
