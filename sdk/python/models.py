"""The shapes of the JSON API's bodies and answers (SPEC §2), as typed dictionaries: fields
beyond these come through as the gateway sends them."""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class Options(TypedDict, total=False):
    remove_background: bool
    crop_anchor: str
    return_base64: bool


class GenerationParams(TypedDict, total=False):
    """`POST /v1/generations` beside `prompt`."""

    aspect_ratio: str
    style: str
    negative_prompt: str
    seed: int
    enhance: bool
    model: str
    references: list[str]
    flow_id: str
    options: Options
    metadata: dict[str, str]


class GenerationBody(GenerationParams, total=False):
    prompt: str


class ImageParams(TypedDict, total=False):
    """The live URL's parameters (SPEC §1)."""

    prompt: str
    ar: str
    style: str
    neg: str
    seed: int
    enhance: bool
    model: str
    w: int
    h: int
    dpr: float
    fit: Literal["cover", "contain", "inside", "fill"]
    anchor: str
    fmt: Literal["webp", "avif", "jpeg", "png", "auto"]
    q: int
    bg: str
    rmbg: bool
    blur: float
    ch: bool


class UrlParams(ImageParams, total=False):
    """`POST /v1/urls`: the live parameters (or `url`), and how the srcset and tag are made."""

    url: str
    widths: list[int]
    sizes: str
    alt: str


class ErrorBody(TypedDict, total=False):
    code: str
    message: str
    param: str | None


class Image(TypedDict):
    url: str
    width: int
    height: int
    content_type: str
    bytes: int


class Generation(TypedDict, total=False):
    id: str
    status: Literal["queued", "running", "completed", "failed"]
    image: Image
    urls: dict[str, str]
    generator: str
    fallback_used: bool
    generators_attempted: list[str]
    prompt: dict[str, str]
    focal_point: Any
    timings_ms: dict[str, float]
    cache: dict[str, bool]
    error: ErrorBody
    status_url: str
    metadata: dict[str, str]
    flow_id: str | None
    references: list[str]
    created_at: str


class Page(TypedDict):
    items: list[Generation]
    next_cursor: str | None


class UrlSet(TypedDict, total=False):
    url: str
    srcset: str
    html: str
    width: int | None
    height: int | None


class Asset(TypedDict, total=False):
    id: str
    alias: str | None
    width: int
    height: int
    content_type: str
    bytes: int
    url: str
    created_at: str


class AssetPage(TypedDict):
    items: list[Asset]
    next_cursor: str | None
