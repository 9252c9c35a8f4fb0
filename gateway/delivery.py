"""`GET`/`HEAD /a/{project}/{id or @alias}?...`: an uploaded asset, delivered with every
transform parameter of SPEC §1 and the headers of `/i/`.

Admission (and signing) is that of `/i/`, over the `/a/...` path. The asset's id stands
where an original's key stands: it is `X-Image-Id`, and the variant key (the `ETag`) is
made from it and the transform. `X-Generator` is `upload`; `X-Cache-Status` is `HIT` (the
variant was in memory) or `TRANSFORM` (made now). A generation parameter is a 400 naming it.

Cache-Control: an id URL names bytes that never change, so it gets the year-long,
immutable Cache-Control of `/i/`. An `@alias` URL names whichever asset holds the alias
now, and an upload may move it: it gets `ALIAS_CACHE_CONTROL` (a minute) so that a CDN or
browser shows the new asset soon after a move, and the gateway itself re-reads an alias
at least every `ALIAS_TTL_S` (see assets.py).
"""

from __future__ import annotations

import time

from promptpix.cache.keys import variant_key
from promptpix.cache.library import Asset
from promptpix.cache.singleflight import SingleFlight

from . import errors as err
from .admission import Admission
from .assets import Assets, view_of
from .live import not_get, refuse
from .metrics import Metrics
from .params import ParseRules, Transform, parse_transform, split_query
from .rendering import Renderer
from .responses import (
    conditions,
    etag_matches,
    etag_of,
    image_headers,
    not_modified_headers,
    send,
)
from .responses import server_timing as timing_header
from .tiers import HIT, TRANSFORM, Tiers, Variant
from .types import Receive, Scope, Send

ROUTE = "/a"
PREFIX = ROUTE + "/"
ALIAS_CACHE_CONTROL = b"public, max-age=60"


class AssetImages:
    def __init__(
        self,
        assets: Assets,
        renderer: Renderer,
        tiers: Tiers,
        admission: Admission,
        rules: ParseRules,
        metrics: Metrics,
        *,
        cache_control: str,
    ) -> None:
        self.assets = assets
        self.renderer = renderer
        self.tiers = tiers
        self.admission = admission
        self.rules = rules
        self.metrics = metrics
        self.cache_control = cache_control.encode()
        self.flight: SingleFlight[Variant] = SingleFlight()

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
            slug, ref = _split(path)
            project, signed = await self.admission.live(slug, path, query)
            asset = await self.assets.resolve(project.slug, ref)
            fields = signed if signed is not None else split_query(query)
            wanted = parse_transform(
                fields, self.rules, accept.decode("latin-1"), view=view_of(asset)
            )
            vkey = variant_key(asset.id, wanted.params)
            cache_control = ALIAS_CACHE_CONTROL if ref.startswith("@") else self.cache_control
            if if_none_match and etag_matches(if_none_match, etag_of(vkey)):
                await self._not_modified(send_, vkey, wanted.negotiated, cache_control)
                return
            parsed_ms = (time.perf_counter() - started) * 1000
            variant = self.tiers.variants.get(vkey)
            status = HIT
            if variant is None:
                variant, _ = await self.flight.do(vkey, lambda: self._make(asset, wanted, vkey))
                status = TRANSFORM
        except Exception as exc:  # every failure leaves as a JSON answer, never a bare 500
            await self._fail(send_, exc, head)
            return
        stages = [("parse", parsed_ms)]
        if status != HIT:
            stages.extend(variant.timings.items())
        total = (time.perf_counter() - started) * 1000
        headers = [
            *image_headers(variant, wanted.negotiated, cache_control),
            (b"x-cache-status", status.encode()),
            (b"server-timing", timing_header([*stages, ("total", total)])),
        ]
        await send(send_, 200, headers, variant.data, head=head)
        self.metrics.requests.inc(ROUTE, "200", status)
        self.metrics.stage_ms.observe(total, "request")

    async def _make(self, asset: Asset, wanted: Transform, vkey: str) -> Variant:
        """Once per variant key at a time: the asset's pixels through the transform."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        original = await self.assets.original(asset)
        timings["store_read"] = (time.perf_counter() - started) * 1000
        variant = await self.renderer.render(original, wanted.params, vkey, TRANSFORM, timings)
        self.tiers.variants.put(vkey, variant)
        return variant

    async def _not_modified(
        self, send_: Send, vkey: str, negotiated: bool, cache_control: bytes
    ) -> None:
        headers = not_modified_headers(vkey, negotiated, cache_control)
        await send(send_, 304, headers, b"", head=True)
        self.metrics.requests.inc(ROUTE, "304", "HIT")

    async def _not_get(self, method: str, send_: Send) -> None:
        await not_get(method, send_, self.metrics, ROUTE)

    async def _fail(self, send_: Send, exc: BaseException, head: bool) -> None:
        await refuse(send_, exc, head, self.metrics, ROUTE)


def _split(path: str) -> tuple[str, str]:
    """`/a/{project}/{ref}` into its project and its id or `@alias`."""
    slug, sep, ref = path[len(PREFIX) :].partition("/")
    if not slug:
        raise err.UnknownProject("no project named ''")
    if not sep or not ref or "/" in ref:
        raise err.NotFound("an asset's URL is /a/{project}/{id or @alias}")
    return slug, ref
