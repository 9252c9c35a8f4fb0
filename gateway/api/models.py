"""The JSON API's request and answer bodies, as msgspec structs: the handlers decode into
and encode from these, and the OpenAPI document is made from the same types."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

Slug = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="the project's name")]
Text = Annotated[str, Meta(max_length=200)]
Signing = Literal["off", "required", "generation"]
OnFailure = Literal["placeholder", "error"]
Scope = Literal["generate", "read", "assets"]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: unknown fields are refused (400 `unknown_field`)."""


class Quota(Body):
    generations_per_month: Annotated[int, Meta(ge=0, le=1 << 40)]


class RateLimit(Body):
    misses_per_minute: Annotated[int, Meta(ge=1, le=1 << 30)]


class Budget(Body):
    usd_per_month: Annotated[float, Meta(ge=0, le=1e9)]


class ProjectBody(Body):
    slug: Slug
    name: Text = ""
    style: Annotated[str, Meta(max_length=100)] = ""
    system_prompt: Annotated[str, Meta(max_length=10_000)] = ""
    signing: Signing = "off"
    quota: Quota | None = None
    rate_limit: RateLimit | None = None
    budget: Budget | None = None
    generators: list[Annotated[str, Meta(max_length=64)]] | None = None
    enhance: bool = False
    semantic_reuse: bool = False
    on_failure: OnFailure = "placeholder"


class ProjectPatch(Body):
    """Only the fields given change; `null` clears a limit or the generator subset."""

    name: Text | UnsetType = UNSET
    style: Annotated[str, Meta(max_length=100)] | UnsetType = UNSET
    system_prompt: Annotated[str, Meta(max_length=10_000)] | UnsetType = UNSET
    signing: Signing | UnsetType = UNSET
    quota: Quota | UnsetType | None = UNSET
    rate_limit: RateLimit | UnsetType | None = UNSET
    budget: Budget | UnsetType | None = UNSET
    generators: list[Annotated[str, Meta(max_length=64)]] | UnsetType | None = UNSET
    enhance: bool | UnsetType = UNSET
    semantic_reuse: bool | UnsetType = UNSET
    on_failure: OnFailure | UnsetType = UNSET


class SecretOut(msgspec.Struct, kw_only=True):
    id: str
    created_at: int


class ProjectOut(msgspec.Struct, kw_only=True):
    """A project as read: never a secret."""

    slug: str
    name: str
    style: str
    system_prompt: str
    signing: Signing
    quota: Quota | None
    rate_limit: RateLimit | None
    budget: Budget | None
    generators: list[str] | None
    enhance: bool
    semantic_reuse: bool
    on_failure: OnFailure
    style_version: int
    created_at: int
    updated_at: int


class ProjectCreated(ProjectOut, kw_only=True):
    signing_secret: str | None = None  # shown once, when the project signs


class ProjectList(msgspec.Struct, kw_only=True):
    projects: list[ProjectOut]


class SecretCreated(msgspec.Struct, kw_only=True):
    id: str
    signing_secret: str  # shown once


class SecretList(msgspec.Struct, kw_only=True):
    signing_secrets: list[SecretOut]  # oldest first; ids and ages, never a secret's text


class KeyBody(Body):
    name: Text = ""
    scopes: list[Scope] = msgspec.field(default_factory=lambda: ["generate", "read", "assets"])


class KeyOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    scopes: list[Scope]
    created_at: int
    revoked_at: int | None = None


class KeyCreated(KeyOut, kw_only=True):
    key: str  # shown once


class KeyList(msgspec.Struct, kw_only=True):
    keys: list[KeyOut]


class GeneratorUsage(msgspec.Struct, kw_only=True):
    generations: int
    estimated_usd: float


class UsageOut(msgspec.Struct, kw_only=True):
    period: str
    generations: int
    quota: int | None
    estimated_usd: float
    budget: float | None
    by_generator: dict[str, GeneratorUsage]


class Deleted(msgspec.Struct, kw_only=True):
    id: str
    deleted: bool = True


Param = str | int | float | bool


class UrlBody(Body):
    """A live image's parameters (SPEC §1, as given in a URL), or `url` (a `/i/...` path and
    query as a page would write it); and how its srcset and <img> should read."""

    url: Annotated[str, Meta(max_length=16_000)] | None = None
    prompt: Annotated[str, Meta(max_length=10_000)] | None = None
    ar: str | None = None
    style: str | None = None
    neg: str | None = None
    seed: int | None = None
    enhance: bool | None = None
    model: str | None = None
    w: int | None = None
    h: int | None = None
    dpr: float | None = None
    fit: str | None = None
    anchor: str | None = None
    fmt: str | None = None
    q: int | None = None
    bg: str | None = None
    rmbg: bool | None = None
    blur: float | None = None
    ch: bool | None = None  # Client Hints: `Sec-CH-DPR`/`Sec-CH-Width` fill `dpr`/`w`
    widths: list[Annotated[int, Meta(ge=1, le=16384)]] | None = None  # the srcset's widths
    sizes: Annotated[str, Meta(max_length=500)] | None = None
    alt: Annotated[str, Meta(max_length=500)] = ""


class UrlOut(msgspec.Struct, kw_only=True):
    url: str
    srcset: str
    html: str
    width: int | None = None  # CSS pixels, when the box is known
    height: int | None = None


# --- Generations and flows ------------------------------------------------------------

Prompt = Annotated[str, Meta(max_length=20_000, description="what to draw (SPEC §1 `prompt`)")]
Reference = Annotated[
    str, Meta(max_length=80, description="`@alias`, an asset's id, or in a flow `@last`/`@first`")
]
MetaValue = str | int | float | bool
Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], MetaValue],
    Meta(max_length=64, description="free key/values, at most 4 KB as JSON"),
]


class GenerationOptions(Body):
    remove_background: bool = False  # the live URL's `rmbg=1`
    # The live URL's `anchor`; `smart` is `attention` (libvips' saliency crop).
    crop_anchor: Annotated[str, Meta(max_length=40)] | None = None
    return_base64: bool = False  # the image's bytes in the answer, base64


class GenerationBody(Body):
    """One image: the live URL's generation parameters by their API names."""

    prompt: Prompt
    aspect_ratio: Annotated[str, Meta(max_length=10)] | None = None
    style: Annotated[str, Meta(max_length=100)] | None = None
    negative_prompt: Annotated[str, Meta(max_length=2_000)] | None = None
    seed: Annotated[int, Meta(ge=0, le=2_147_483_647)] | None = None
    enhance: bool | None = None
    model: Annotated[str, Meta(max_length=64)] | None = None
    references: Annotated[list[Reference], Meta(max_length=3)] = msgspec.field(default_factory=list)
    flow_id: Annotated[str, Meta(max_length=64)] | None = None
    options: GenerationOptions | None = None
    metadata: Annotated[
        dict[Annotated[str, Meta(max_length=64)], MetaValue], Meta(max_length=64)
    ] = msgspec.field(default_factory=dict)


class ImageOut(msgspec.Struct, kw_only=True):
    url: str
    width: int
    height: int
    content_type: str
    bytes: int


class GenerationUrls(msgspec.Struct, kw_only=True):
    original: str  # the original's pixels, lossless (PNG), at its native ratio
    live: str  # the image as asked for: signed when the project signs
    thumb: str  # 256x256
    card: str  # 640x400
    og: str  # 1200x630
    hero: str  # 1920x1080
    srcset: str
    # The whole image 512 px wide in WebP: small enough to show inline (an agent's chat).
    preview: str | None = None


class PromptOut(msgspec.Struct, kw_only=True):
    given: str
    sent: str


class FocalPoint(msgspec.Struct, kw_only=True):
    x: float
    y: float


class CacheOut(msgspec.Struct, kw_only=True):
    hit: bool  # the image was in memory
    stored: bool  # its original was stored before this request
    generated: bool  # its original was generated for this request
    similar: bool  # every generator failed; a semantically similar stored image answered
    placeholder: bool = False  # the offline stand-in answered for failed generators


class ErrorOut(msgspec.Struct, kw_only=True):
    code: str
    message: str
    param: str | None = None
    generators_attempted: list[str] | None = None


class GenerationOut(msgspec.Struct, kw_only=True, omit_defaults=False):
    id: str
    status: Literal["queued", "running", "completed", "failed"]
    created_at: str  # ISO 8601, UTC
    status_url: str
    flow_id: str | None = None
    parent_id: str | None = None
    image: ImageOut | None = None
    urls: GenerationUrls | None = None
    original_key: str | None = None
    generator: str | None = None
    model: str | None = None
    fallback_used: bool | None = None
    generators_attempted: list[str] | None = None
    prompt: PromptOut | None = None
    aspect_ratio: str | None = None
    native_ratio: str | None = None
    style: str | None = None
    seed: int | None = None
    references: list[str] = msgspec.field(default_factory=list)  # content keys, in order
    aliases: list[str] = msgspec.field(default_factory=list)
    focal_point: FocalPoint | None = None
    timings_ms: dict[str, float] = msgspec.field(default_factory=dict)
    cache: CacheOut | None = None
    metadata: dict[str, MetaValue] = msgspec.field(default_factory=dict)
    similarity: float | None = None
    base64: str | None = None  # with `options.return_base64`
    error: ErrorOut | None = None  # `failed`


class GenerationPage(msgspec.Struct, kw_only=True):
    items: list[GenerationOut]
    next_cursor: str | None


class BatchBody(Body):
    items: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=16)]


class BatchItem(msgspec.Struct, kw_only=True):
    """One item's answer: `status` 200 with the generation, or 4xx/5xx with `error`."""

    status: int
    generation: GenerationOut | None = None
    error: ErrorOut | None = None


class BatchOut(msgspec.Struct, kw_only=True):
    items: list[BatchItem]


class FlowBody(Body):
    name: Annotated[str, Meta(max_length=200)] = ""
    steps: Annotated[list[GenerationBody], Meta(max_length=16)] = msgspec.field(
        default_factory=list
    )


class FlowStep(msgspec.Struct, kw_only=True):
    step: int
    parent_id: str | None
    generation: GenerationOut


class FlowOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    created_at: str
    steps: list[FlowStep]
    error: BatchItem | None = None  # the step that failed, when `steps` stopped early
