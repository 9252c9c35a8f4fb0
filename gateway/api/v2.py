"""`POST /api/v2/generate` and `GET /api/v2/health`: a drop-in for the Image Builder v2 API
(SPEC §2 "Service routes"), made on the JSON API's generations: the same key space, quota,
history and fallbacks as `/i/` and `/v1/generations`.

Requests act in the project `PROMPTPIX_V2_PROJECT` (default `demo`): with a key of that
project with the `generate` scope (`Authorization: Bearer KEY` or `X-API-Key: KEY`; a key of
another project is 403), or without a key when the project's signing is `off`. A key that
is given is always checked. The health route is open to anyone, as the Image Builder's was.

The request, field by field:

- `prompt`: as `/i/`'s (1..10,000 characters; 3,000 and more are compacted).
- `aspect_ratio` (default `16:9`): `W:H`, taken in lowest terms (`1920:1080` is `16:9`),
  each side 1..64 then; anything else is a 400. A native ratio is generated as it is; any
  other is cropped from the original of the nearest native ratio in log scale (SPEC §1),
  which every crop of it shares: `2:7`, `1:3` and `11:18` from 9:16 (the Image Builder
  made `11:18` from 2:3; both are a crop of under a tenth), `9:7` from 5:4.
- `archetype` (default `spot_illustration`): promptpix's `style`, the same six names.
- `negative_prompt`: `neg` (at most 1,000 characters).
- `options.remove_background`: default true for minimalist_vector_art,
  symbolic_representation, icon and logo (the Image Builder's "auto-true" list), false
  otherwise; a value given wins.
- `options.crop_anchor` (default `center`, the Image Builder's; promptpix's own default is
  `focal`): `center`, `top`, `bottom`, `left`, `right`, or `smart` (libvips' attention
  crop); promptpix's `focal`, `attention` and `entropy` are taken too. It places the crop
  to a ratio that is not native; a native ratio is not cropped.
- `options.store_in_cloud` (default true) changes nothing and is echoed in
  `metadata.store_in_cloud`: promptpix always stores the original, which is its cache and
  its key space.
- `options.return_base64`: `base64_data` holds each version's bytes (`original`,
  `cropped`, `transparent`; null where a version does not apply); otherwise it is null.
- `metadata`: free key/values kept in the generation's history (and filterable there:
  `GET /v1/generations?metadata.KEY=VALUE`): strings, numbers and booleans as they are,
  anything else (an array of `topics`, say) as its JSON text. They are echoed as given in
  `metadata.custom_metadata`.
- Fields the Image Builder does not document are ignored, as its server ignored them.

The answer:

- `urls.original`: the original at its native ratio, as PNG. `urls.cropped`: the crop at
  the asked ratio when that is not native, else null. `urls.transparent`: the image at the
  asked ratio (cropped when that is) with its background removed, when it was, else null.
  Each is an absolute live `/i/` URL of this gateway (signed when the project signs) that
  answers the same bytes as `base64_data`. A style that asks for a plain background (icon,
  logo, ...) has it removed wherever the format has alpha, so for those `original` and
  `cropped` are flattened onto white (`bg=ffffff`): the opaque image on its own background.
- `image_id`: the generation's id in the history (`GET /v1/generations/{id}`);
  `created_at`: its time in UTC, ISO 8601 without a zone as the Image Builder wrote it.
- `metadata`: `generator` and `generator_used` (the generator that made the image),
  `model`, `platform` (where it ran: `PLATFORMS`), `fallback_used` and
  `generators_attempted` as recorded when the original was made, `source_aspect_ratio`
  (the native ratio), `target_aspect_ratio` (the asked one, as given), `cropped`,
  `background_removed`, `generation_time_ms` (this whole request), `prompt`, `archetype`,
  `file_sizes` (the bytes each URL answers; null where absent), `store_in_cloud`,
  `custom_metadata`, and where the image came from:
  `source` `generated` (for this request), `cache` (this request's original was stored
  already: nothing was generated), `semantic_cache` (the project's semantic reuse served a
  near-identical stored image before generating, cosine >= 0.85), `semantic_cache_fallback`
  (every generator failed, and a stored image whose prompt is similar, cosine >= 0.70,
  answered: `generators_attempted` lists those that failed) or `placeholder` (the offline
  stand-in answered for failed generators, SPEC §3). `cache_hit` is true when nothing was
  generated for the request; `cache_fallback` is true for `semantic_cache_fallback`;
  `similarity` is given with a similar image. The URLs always name the image asked for:
  while the generators fail they answer the similar image or the stand-in too, and the
  real image once a generator answers again.
- Failures answer the gateway's status (400, 401, 403, 404, 413, 422, 429 with
  `Retry-After`, 503, 504) in the Image Builder's envelope: `success` false, `image_id` and
  `urls` null, `metadata.generators_attempted`, `metadata.cache_fallback_attempted` (every
  generator failed and the semantic tier was searched), `metadata.error_code` (promptpix's
  code), `error` (the message). Rate limits say "Rate limit exceeded", the words the Image
  Builder's clients retry on. A body that is not JSON, or a field of the wrong type, is a
  400 in that envelope too.

`GET /api/v2/health` always answers 200: `status` `healthy`, or `degraded` when the
generators, the store and database, or the transform pool are not all available;
`version` the Image Builder API level served (`2.2.0`) and `promptpix_version` the
gateway's; `services`: `vertex_ai` (a generator of the v2 project's chain can be called:
its circuit is not open), `supabase` (the image store and the database answer),
`image_service` (the transform pool has room), `semantic_cache` (the semantic tier is on;
off by a setting or for want of its model, it is false and degrades nothing);
`generator`: the v2 project's chain (`primary`, `fallbacks`) and
`cache_fallback_threshold` (0.7; null when the semantic tier is off); `timestamp`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
from starlette.responses import Response

from promptpix.cache.backends import Backends
from promptpix.cache.control import Project
from promptpix.cache.keys import variant_key
from promptpix.cache.semantic import REUSE_THRESHOLD, SIMILAR_THRESHOLD
from promptpix.generators.base import AllGeneratorsFailed, Refused
from promptpix.generators.chain import Chain
from promptpix.generators.ratios import nearest_native, ratio_text, reduce_ratio
from promptpix.generators.styles import is_transparent
from promptpix.transforms.params import TransformParams

from ..admission import Admission, presented_key
from ..errors import BadParameter, GatewayError, StoreDown
from ..failures import answer_for
from ..generations import Generations, Outcome, Prepared
from ..params import parse_fields
from ..tiers import MISS, PLACEHOLDER, SIMILAR, Variant
from ..urls import live_url
from .bodies import decode, read_body
from .models import GenerationBody, GenerationOptions, GenerationOut, MetaValue
from .routing import Call, Operation, json_answer

API_VERSION = "2.2.0"  # the Image Builder API level these routes answer as
DEFAULT_RATIO = "16:9"
DEFAULT_ARCHETYPE = "spot_illustration"
AUTO_TRANSPARENT = frozenset({"minimalist_vector_art", "symbolic_representation", "icon", "logo"})
# The Image Builder's anchors by promptpix's names; promptpix's own are taken as they are.
ANCHORS = {
    "center": "center",
    "top": "top",
    "bottom": "bottom",
    "left": "left",
    "right": "right",
    "smart": "attention",
    "focal": "focal",
    "attention": "attention",
    "entropy": "entropy",
}
DEFAULT_ANCHOR = "center"
WHITE = "ffffff"
RATIO = re.compile(r"\s*([0-9]{1,6})\s*:\s*([0-9]{1,6})\s*")
RATIO_MESSAGE = "Invalid aspect ratio format. Use format like '16:9' or '1:1'"
MAX_SIDE = 64
# Where each kind of generator runs, as the Image Builder's `platform` says it.
PLATFORMS = {
    "gemini": "google-gemini-api",
    "imagen": "vertex-ai",
    "openai": "openai-api",
    "comfyui": "comfyui",
    "local": "promptpix-local",
}
# The live parameters' names in messages, as this API calls them.
FIELD_NAMES = {
    "neg": "negative_prompt",
    "ar": "aspect_ratio",
    "style": "archetype",
    "anchor": "options.crop_anchor",
    "rmbg": "options.remove_background",
}
VERSIONS = ("original", "cropped", "transparent")
RATE_CODES = frozenset({"rate_limited", "busy"})


# --- request and answer bodies ------------------------------------------------------------


class V2Options(msgspec.Struct, kw_only=True):
    """How the image is processed. Fields it does not know are ignored."""

    remove_background: bool | None = None  # default: true for the "auto" archetypes
    crop_anchor: Annotated[str, Meta(max_length=40)] | None = None  # default: center
    store_in_cloud: bool | None = None  # default true; promptpix always stores
    return_base64: bool | None = None  # default false


class V2GenerateBody(msgspec.Struct, kw_only=True):
    """An Image Builder v2 request. Fields it does not know are ignored."""

    prompt: Annotated[str, Meta(max_length=20_000)]
    aspect_ratio: Annotated[str, Meta(max_length=20)] | None = None  # default 16:9
    archetype: Annotated[str, Meta(max_length=100)] | None = None  # default spot_illustration
    negative_prompt: Annotated[str, Meta(max_length=2_000)] | None = None
    options: V2Options | None = None
    metadata: dict[str, Any] | None = None


class V2Urls(msgspec.Struct, kw_only=True):
    original: str
    cropped: str | None
    transparent: str | None


class V2Base64(msgspec.Struct, kw_only=True):
    original: str | None
    cropped: str | None
    transparent: str | None


class V2FileSizes(msgspec.Struct, kw_only=True):
    original: int | None
    cropped: int | None
    transparent: int | None


class V2Metadata(msgspec.Struct, kw_only=True):
    """On success, the image's; on failure `generators_attempted`,
    `cache_fallback_attempted` and `error_code` only."""

    model: str | UnsetType = UNSET
    platform: str | UnsetType = UNSET
    generator: str | UnsetType = UNSET
    generator_used: str | UnsetType = UNSET
    fallback_used: bool | UnsetType = UNSET
    generators_attempted: list[str]
    source_aspect_ratio: str | UnsetType = UNSET
    target_aspect_ratio: str | UnsetType = UNSET
    cropped: bool | UnsetType = UNSET
    background_removed: bool | UnsetType = UNSET
    generation_time_ms: int | UnsetType = UNSET
    prompt: str | UnsetType = UNSET
    archetype: str | UnsetType = UNSET
    file_sizes: V2FileSizes | UnsetType = UNSET
    source: str | UnsetType = UNSET  # generated, cache, semantic_cache, ..._fallback, placeholder
    cache_hit: bool | UnsetType = UNSET
    cache_fallback: bool | UnsetType = UNSET
    similarity: float | UnsetType = UNSET
    store_in_cloud: bool | UnsetType = UNSET
    custom_metadata: dict[str, Any] | UnsetType = UNSET
    cache_fallback_attempted: bool | UnsetType = UNSET
    error_code: str | UnsetType = UNSET


class V2GenerateAnswer(msgspec.Struct, kw_only=True):
    """The Image Builder's envelope, for a success (200) and a failure (4xx/5xx) alike."""

    success: bool
    image_id: str | None
    urls: V2Urls | None
    base64_data: V2Base64 | UnsetType | None = UNSET  # success only
    metadata: V2Metadata
    error: str | None
    created_at: str


class V2Services(msgspec.Struct, kw_only=True):
    vertex_ai: bool  # a generator of the chain can be called
    supabase: bool  # the image store and the database answer
    image_service: bool  # the transform pool has room
    semantic_cache: bool  # the semantic tier is on


class V2GeneratorChain(msgspec.Struct, kw_only=True):
    primary: str
    fallbacks: list[str]
    cache_fallback_threshold: float | None


class V2Health(msgspec.Struct, kw_only=True):
    status: Literal["healthy", "degraded"]
    version: str
    services: V2Services
    generator: V2GeneratorChain
    timestamp: str
    promptpix_version: str


# --- the request, mapped ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked v2 request in promptpix's terms: what to make, and which versions of it."""

    prompt: str
    archetype: str
    neg: str
    asked_ratio: str  # as given: `target_aspect_ratio`
    target: tuple[int, int]  # in lowest terms
    native: tuple[int, int]
    anchor: str  # promptpix's name
    rmbg: bool
    store_in_cloud: bool
    return_base64: bool
    metadata: dict[str, Any] | None

    @property
    def cropped(self) -> bool:
        return self.target[0] * self.native[1] != self.target[1] * self.native[0]

    @property
    def principal(self) -> str:
        """The version the generation itself is recorded as: the image as asked for."""
        return "transparent" if self.rmbg else "cropped" if self.cropped else "original"

    def fields(
        self, ratio: str, *, anchor: str | None = None, rmbg: bool = False
    ) -> dict[str, str]:
        """One version's live parameters, PNG as the Image Builder's files were."""
        out = {"prompt": self.prompt, "ar": ratio, "style": self.archetype, "fmt": "png"}
        if self.neg:
            out["neg"] = self.neg
        if anchor is not None:
            out["anchor"] = anchor
        if rmbg:
            out["rmbg"] = "1"
        elif is_transparent(self.archetype):  # else removed wherever the format has alpha
            out["bg"] = WHITE
        return out

    def versions(self) -> dict[str, dict[str, str] | None]:
        """Each version's live parameters, None where it does not apply."""
        native = ratio_text(self.native)
        asked = ratio_text(self.target) if self.cropped else native
        anchor = self.anchor if self.cropped else None
        return {
            "original": self.fields(native),
            "cropped": self.fields(asked, anchor=anchor) if self.cropped else None,
            "transparent": self.fields(asked, anchor=anchor, rmbg=True) if self.rmbg else None,
        }

    def body(self) -> GenerationBody:
        """The JSON API's body for the principal version (its format is set afterwards)."""
        return GenerationBody(
            prompt=self.prompt,
            aspect_ratio=ratio_text(self.target if self.cropped else self.native),
            style=self.archetype,
            negative_prompt=self.neg or None,
            options=GenerationOptions(
                remove_background=self.rmbg,
                crop_anchor=self.anchor if self.cropped else None,
            ),
            metadata=recorded_metadata(self.metadata or {}),
        )


def parse_ratio(given: str) -> tuple[int, int]:
    found = RATIO.fullmatch(given)
    if not found or not int(found[1]) or not int(found[2]):
        raise BadParameter(RATIO_MESSAGE, param="aspect_ratio")
    ratio = reduce_ratio(int(found[1]), int(found[2]))
    if max(ratio) > MAX_SIDE:
        raise BadParameter(
            f"Aspect ratio {ratio_text(ratio)} is out of range: in lowest terms both sides "
            f"must be 1..{MAX_SIDE}",
            param="aspect_ratio",
        )
    return ratio


def plan_of(body: V2GenerateBody, styles: frozenset[str]) -> Plan:
    """The request checked and its defaults settled (the prompt is checked by the parse)."""
    asked = DEFAULT_RATIO if body.aspect_ratio is None else body.aspect_ratio.strip()
    target = parse_ratio(asked)
    archetype = body.archetype or DEFAULT_ARCHETYPE
    if archetype not in styles:
        raise BadParameter(
            f"Invalid archetype. Use one of: {', '.join(sorted(styles))}", param="archetype"
        )
    options = body.options or V2Options()
    anchor = ANCHORS.get(options.crop_anchor or DEFAULT_ANCHOR)
    if anchor is None:
        raise BadParameter(
            "Invalid crop_anchor. Use one of: center, top, bottom, left, right, smart",
            param="options.crop_anchor",
        )
    rmbg = options.remove_background
    return Plan(
        prompt=body.prompt,
        archetype=archetype,
        neg=body.negative_prompt or "",
        asked_ratio=asked,
        target=target,
        native=nearest_native(target),
        anchor=anchor,
        rmbg=archetype in AUTO_TRANSPARENT if rmbg is None else rmbg,
        store_in_cloud=options.store_in_cloud is not False,
        return_base64=bool(options.return_base64),
        metadata=body.metadata,
    )


def recorded_metadata(given: dict[str, Any]) -> dict[str, MetaValue]:
    """Scalars as they are; anything else as its JSON text (the history keeps scalars)."""
    return {
        key: value
        if isinstance(value, str | int | float | bool)
        else msgspec.json.encode(value).decode()
        for key, value in given.items()
    }


def utc_now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


# --- the routes ---------------------------------------------------------------------------


class V2:
    """The two routes over the generations, in the project they act in."""

    def __init__(
        self,
        generations: Generations,
        admission: Admission,
        backends: Backends,
        chain: Chain,
        project: str,
    ) -> None:
        self.generations = generations
        self.admission = admission
        self.backends = backends
        self.chain = chain
        self.slug = project
        self.kinds = {g.id: str(getattr(g, "kind", g.id)) for g in chain.generators}

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "POST",
                "/api/v2/generate",
                self.generate,
                "Image Builder v2: generate (or find) an image, in the project "
                "PROMPTPIX_V2_PROJECT (a key of it, or none when it does not sign); failures "
                "answer the same envelope with `success: false`",
                auth="public",  # the key is optional: checked by the handler
                body=V2GenerateBody,
                answer=V2GenerateAnswer,
                raw_body=True,  # a bad body answers the Image Builder's envelope
                tags=("image-builder-v2",),
            ),
            Operation(
                "GET",
                "/api/v2/health",
                self.health,
                "Image Builder v2: the service's state",
                auth="public",
                answer=V2Health,
                tags=("image-builder-v2",),
            ),
        ]

    # --- generate -------------------------------------------------------------------------

    async def generate(self, call: Call) -> Response:
        started = time.perf_counter()
        try:
            project = await self.admit(call)
            raw = await read_body(call.request)
            plan = plan_of(decode(raw if raw.strip() else b"{}", V2GenerateBody), self.styles)
            prepared = await self.prepare(call, project, plan)
            outcome, out = await self.generations.recorded(prepared)
            made = await self.versions(prepared, plan, outcome)
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            answer = self.answer(prepared, plan, outcome, out, made, elapsed_ms)
        except Exception as exc:  # every failure answers the envelope, never a bare 500
            return self.failure(exc)
        return json_answer(answer, 200, {"x-cache-status": outcome.status})

    @property
    def styles(self) -> frozenset[str]:
        return self.generations.rules.styles

    async def admit(self, call: Call) -> Project:
        """The v2 project, if this caller may act in it."""
        project = await self.admission.projects.get(self.slug)
        headers = call.request.headers.raw
        if presented_key(headers) or project.signing != "off":
            await self.admission.api(headers, "key", "generate", self.slug)
        return project

    async def prepare(self, call: Call, project: Project, plan: Plan) -> Prepared:
        """The JSON API's checks and charge terms; then the principal version's own live
        parameters (PNG, and `bg` for a plain style) stand for the body's, so the
        generation makes, records and links the very version this API answers."""
        request = call.request
        prepared = await self.generations.prepare(
            project,
            plan.body(),
            base=str(request.base_url),
            peer=request.client.host if request.client else "",
            headers=request.headers.raw,
        )
        fields = plan.versions()[plan.principal]
        assert fields is not None  # the principal version always applies
        transform = parse_fields(fields, project, self.generations.rules).transform
        return dataclasses.replace(
            prepared,
            fields=fields,
            request=dataclasses.replace(prepared.request, transform=transform),
        )

    async def versions(
        self, prepared: Prepared, plan: Plan, outcome: Outcome
    ) -> dict[str, Variant | None]:
        """Every version's bytes: the principal's are the outcome's, the others are made
        from the same original (transforms of a stored original, never generations)."""
        made: dict[str, Variant | None] = dict.fromkeys(VERSIONS)
        made[plan.principal] = outcome.variant
        others = [
            (name, fields)
            for name, fields in plan.versions().items()
            if fields is not None and name != plan.principal
        ]
        found = await asyncio.gather(*(self.variant(prepared, f, outcome) for _, f in others))
        for (name, _), variant in zip(others, found, strict=True):
            made[name] = variant
        return made

    async def variant(
        self, prepared: Prepared, fields: dict[str, str], outcome: Outcome
    ) -> Variant:
        transform = parse_fields(fields, prepared.project, self.generations.rules).transform
        gen = prepared.request.gen
        if outcome.status == SIMILAR:  # the similar image's original, as its URL finds it
            return await self.from_original(outcome.variant.original_key, gen.ratio, transform)
        variant, _ = await self.generations.images.variant(
            gen,
            transform,
            variant_key(gen.key, transform),
            reuse=prepared.project.semantic_reuse,
            terms=prepared.terms,
        )
        return variant

    async def from_original(
        self, key: str, ratio: tuple[int, int], transform: TransformParams
    ) -> Variant:
        images = self.generations.images
        original = images.tiers.originals.get(key)
        if original is None:
            stored = await images.originals.read(key)
            if stored is None:
                raise StoreDown("the similar image cannot be read now; try again shortly")
            original = images.originals.from_store(stored, ratio)
        return await images.renderer.render(
            original, transform, variant_key(key, transform), SIMILAR, {}
        )

    def answer(
        self,
        prepared: Prepared,
        plan: Plan,
        outcome: Outcome,
        out: GenerationOut,
        made: dict[str, Variant | None],
        elapsed_ms: int,
    ) -> V2GenerateAnswer:
        project, base = prepared.project, prepared.base
        urls = {
            name: live_url(base, project, fields) if fields is not None else None
            for name, fields in plan.versions().items()
        }
        encoded = None
        if plan.return_base64:
            encoded = V2Base64(
                **{n: base64.b64encode(v.data).decode() if v else None for n, v in made.items()}
            )
        original = urls["original"]
        assert original is not None
        return V2GenerateAnswer(
            success=True,
            image_id=out.id,  # the generation's id in the history
            urls=V2Urls(
                original=original, cropped=urls["cropped"], transparent=urls["transparent"]
            ),
            base64_data=encoded,
            metadata=self.metadata(prepared, plan, outcome, made, elapsed_ms),
            error=None,
            created_at=out.created_at.removesuffix("Z"),  # UTC, as the history says
        )

    def metadata(
        self,
        prepared: Prepared,
        plan: Plan,
        outcome: Outcome,
        made: dict[str, Variant | None],
        elapsed_ms: int,
    ) -> V2Metadata:
        meta, variant = outcome.meta, outcome.variant
        generator = str(meta.get("generator") or variant.generator)
        source = source_of(outcome, prepared.project)
        attempted = [str(g) for g in meta.get("generators_attempted", [generator])]
        fallback = bool(meta.get("fallback_used", False))
        if source == "semantic_cache":  # served before any generator was asked
            attempted, fallback = [], False
        elif source == "semantic_cache_fallback":
            attempted, fallback = self.tried(prepared), True
        similar = variant.similarity if outcome.status == SIMILAR else None
        return V2Metadata(
            model=str(meta.get("model", "")),
            platform=self.platform(generator),
            generator=generator,
            generator_used=generator,
            fallback_used=fallback,
            generators_attempted=attempted,
            source_aspect_ratio=ratio_text(plan.native),
            target_aspect_ratio=plan.asked_ratio,
            cropped=plan.cropped,
            background_removed=plan.rmbg,
            generation_time_ms=elapsed_ms,
            prompt=plan.prompt,
            archetype=plan.archetype,
            file_sizes=V2FileSizes(**{n: len(v.data) if v else None for n, v in made.items()}),
            source=source,
            cache_hit=outcome.status not in (MISS, PLACEHOLDER),
            cache_fallback=source == "semantic_cache_fallback",
            similarity=UNSET if similar is None else similar,
            store_in_cloud=plan.store_in_cloud,
            custom_metadata=UNSET if plan.metadata is None else plan.metadata,
        )

    def platform(self, generator: str) -> str:
        kind = self.kinds.get(generator, generator)
        return PLATFORMS.get(kind, f"promptpix-{kind}")

    def tried(self, prepared: Prepared) -> list[str]:
        """The generators a request that ended in a similar image tried, all failed: the
        project's chain, without a stand-in behind paid ones (it would have answered)."""
        gen, terms = prepared.request.gen, prepared.terms
        ids = self.chain.candidates(gen.model, terms.among, references=bool(gen.references))
        stand_ins = {g.id for g in self.chain.generators if getattr(g, "placeholder", False)}
        return [g for i, g in enumerate(ids) if i == 0 or g not in stand_ins]

    def failure(self, exc: BaseException) -> Response:
        mapped = answer_for(exc)
        headers = dict(mapped.headers)
        if mapped.retry_after is not None:
            headers["retry-after"] = str(mapped.retry_after)
        searched = (
            isinstance(exc, AllGeneratorsFailed) and self.generations.images.reuse is not None
        )
        body = V2GenerateAnswer(
            success=False,
            image_id=None,
            urls=None,
            metadata=V2Metadata(
                generators_attempted=attempted_of(exc, mapped),
                cache_fallback_attempted=searched,
                error_code=mapped.code,
            ),
            error=message_of(exc, mapped),
            created_at=utc_now(),
        )
        return json_answer(body, mapped.status, headers)

    # --- health ---------------------------------------------------------------------------

    async def health(self, call: Call) -> V2Health:
        pool = self.generations.images.pool
        store, database = await asyncio.gather(
            up(self.backends.store.check), up(self.backends.index.check)
        )
        chain = await self.chain_ids()
        circuits = {s.id: s.breaker.current() for s in self.chain.slots}
        services = V2Services(
            vertex_ai=any(circuits.get(g) != "open" for g in chain),
            supabase=store and database,
            image_service=pool.pending < pool.threads + pool.queue,
            semantic_cache=self.generations.images.reuse is not None,
        )
        healthy = services.vertex_ai and services.supabase and services.image_service
        return V2Health(
            status="healthy" if healthy else "degraded",
            version=API_VERSION,
            services=services,
            generator=V2GeneratorChain(
                primary=chain[0] if chain else "",
                fallbacks=chain[1:],
                cache_fallback_threshold=SIMILAR_THRESHOLD if services.semantic_cache else None,
            ),
            timestamp=utc_now(),
            promptpix_version=version("promptpix"),
        )

    async def chain_ids(self) -> list[str]:
        """The generators the v2 project's requests are tried with, in order; the whole
        chain when the project cannot be read now."""
        try:
            project = await self.admission.projects.get(self.slug)
        except Exception:  # health reports what it can; the route itself stays up
            return self.chain.ids
        ids = self.chain.candidates("", project.generators)
        if project.on_failure == "error":  # no stand-in behind the paid generators
            stand_ins = {g.id for g in self.chain.generators if getattr(g, "placeholder", False)}
            ids = [g for i, g in enumerate(ids) if i == 0 or g not in stand_ins]
        return ids


async def up(check: Callable[[], Awaitable[dict[str, Any]]]) -> bool:
    try:
        return (await check()).get("status") == "ok"
    except Exception:  # a check that fails says the dependency is not up
        return False


def source_of(outcome: Outcome, project: Project) -> str:
    """Where the image came from. A similar image that passes the reuse threshold in a
    project that reuses was found before generating (reuse is asked first, with the same
    prompt and ratio)."""
    if outcome.status == SIMILAR:
        similarity = outcome.variant.similarity or 0.0
        if project.semantic_reuse and similarity >= REUSE_THRESHOLD:
            return "semantic_cache"
        return "semantic_cache_fallback"
    if outcome.status == MISS:
        return "generated"
    if outcome.status == PLACEHOLDER:
        return "placeholder"
    return "cache"


def attempted_of(exc: BaseException, mapped: GatewayError) -> list[str]:
    if isinstance(exc, AllGeneratorsFailed):
        return list(exc.attempted)
    if isinstance(exc, Refused):
        return [exc.generator]
    listed = mapped.extra.get("generators_attempted")
    return [str(g) for g in listed] if isinstance(listed, list) else []


def message_of(exc: BaseException, mapped: GatewayError) -> str:
    """The message in the Image Builder's words where its clients read them."""
    if isinstance(exc, AllGeneratorsFailed):
        last = exc.errors[-1][:300] if exc.errors else "no generator could answer"
        if "429" in last:
            last = f"Rate limit exceeded ({last})"
        return f"All generators failed. Last error: {last}"
    text = mapped.message
    if mapped.code in RATE_CODES:
        wait = f" Try again in {mapped.retry_after} s." if mapped.retry_after else ""
        return f"Rate limit exceeded: {text}.{wait}"
    for ours, theirs in FIELD_NAMES.items():
        text = text.replace(f"'{ours}'", f"'{theirs}'")
    return text


def operations(
    generations: Generations, admission: Admission, backends: Backends, chain: Chain, project: str
) -> list[Operation]:
    return V2(generations, admission, backends, chain, project).operations()
