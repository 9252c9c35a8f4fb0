"""Parsing: one strict pass from a query string into immutable generation and transform
values, with the output format, quality and background removal settled once, here."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import overload
from urllib.parse import unquote_plus

from promptpix.cache.control import Project
from promptpix.cache.keys import original_key, variant_key
from promptpix.generators.prompts import MAX_PROMPT_CHARS
from promptpix.generators.ratios import nearest_native, reduce_ratio
from promptpix.generators.styles import BUILTIN_STYLES, is_transparent
from promptpix.transforms.formats import FORMATS, negotiate
from promptpix.transforms.params import FITS, NAMED_ANCHORS, Anchor, Colour, TransformParams

from .errors import BadParameter, PromptTooLong, UnknownParameter

MAX_NEG = 1_000
MAX_SEED = 2_147_483_647
MAX_QUERY_FIELDS = 32

FORMAT_ALIASES = {"jpg": "jpeg"}
AUTO = "auto"

GENERATION_PARAMS = ("prompt", "ar", "style", "neg", "seed", "enhance", "model")
TRANSFORM_PARAMS = ("w", "h", "dpr", "fit", "anchor", "fmt", "q", "bg", "rmbg", "blur")
KNOWN_PARAMS = frozenset((*GENERATION_PARAMS, *TRANSFORM_PARAMS, "sig", "ch"))

_INT = re.compile(r"[0-9]{1,10}")
_NUM = re.compile(r"[0-9]{1,4}(\.[0-9]{1,6})?")
_RATIO = re.compile(r"([0-9]{1,3}):([0-9]{1,3})")
_HEX = re.compile(r"[0-9a-fA-F]{6}")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ParseRules:
    """What parsing needs to know of the deployment (the project comes as itself)."""

    generator_ids: frozenset[str] = frozenset({"local"})
    max_dimension: int = 4096
    default_format: str = "webp"
    styles: frozenset[str] = frozenset(BUILTIN_STYLES)


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """What defines an original."""

    project: str
    style_version: int
    prompt: str
    ratio: tuple[int, int]  # native ratio the original is generated at
    style: str
    neg: str
    seed: int
    enhance: bool
    model: str
    # The stored images sent as references (assets' ids, or a flow's originals' keys), in
    # the order the prompt names them: the key covers their content, never their names.
    references: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return original_key(
            self.project,
            self.style_version,
            self.prompt,
            self.ratio,
            self.style,
            self.neg,
            self.seed,
            self.enhance,
            self.model,
            self.references,
        )


@dataclass(frozen=True, slots=True)
class ImageRequest:
    gen: GenerationParams
    transform: TransformParams  # format negotiated, quality and background removal settled
    sig: str | None
    negotiated: bool  # `fmt=auto`: the format came from `Accept` (answers carry `Vary`)
    needs_alpha: bool  # what `fmt=auto` negotiates with: PNG rather than JPEG without AVIF/WebP

    @property
    def variant_key(self) -> str:
        return variant_key(self.gen.key, self.transform)


def split_query(query: bytes | str) -> dict[str, str]:
    """Decode a query string; every name at most once ('+' and '%20' are both a space)."""
    if isinstance(query, bytes):
        try:
            query = query.decode("utf-8")
        except UnicodeDecodeError:
            raise BadParameter("the query string is not valid UTF-8") from None
    out: dict[str, str] = {}
    if not query:
        return out
    fields = query.split("&")
    if len(fields) > MAX_QUERY_FIELDS:
        raise BadParameter(f"at most {MAX_QUERY_FIELDS} query parameters")
    for field in fields:
        if not field:
            continue
        name, _, value = field.partition("=")
        try:
            name = unquote_plus(name, errors="strict")
        except UnicodeDecodeError:
            raise BadParameter("a parameter name is not valid UTF-8 once decoded") from None
        try:
            value = unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            raise BadParameter(
                f"'{_printable(name)}' is not valid UTF-8 once decoded", param=_printable(name)
            ) from None
        if name in out:
            raise BadParameter(f"'{name}' is given more than once", param=name)
        out[name] = value
    return out


def parse(
    query: bytes | str, project: Project, rules: ParseRules, accept: str = ""
) -> ImageRequest:
    """A live URL's query, strictly: anything unknown or out of range is a 400 naming it."""
    return parse_fields(split_query(query), project, rules, accept)


def parse_fields(
    raw: dict[str, str], project: Project, rules: ParseRules, accept: str = ""
) -> ImageRequest:
    """Decoded parameters (a live URL's, or the same names from another route)."""
    for name in raw:
        if name not in KNOWN_PARAMS:
            raise UnknownParameter(f"unknown parameter '{name}'", param=_printable(name))
    _flag(raw, "ch", False)  # Client Hints (gateway/hints.py): 0 or 1, no part of any key
    if "prompt" not in raw:
        raise BadParameter("'prompt' is required", param="prompt")

    prompt = _text(raw["prompt"])
    if not prompt:
        raise BadParameter("'prompt' must not be empty", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptTooLong(
            f"'prompt' has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}",
            param="prompt",
        )
    neg = _text(raw.get("neg", ""))
    if len(neg) > MAX_NEG:
        raise BadParameter(f"'neg' is limited to {MAX_NEG} characters", param="neg")

    style = raw.get("style", project.style)
    if style and style not in rules.styles:
        raise BadParameter(
            f"unknown style; one of: {', '.join(sorted(rules.styles))}", param="style"
        )
    seed = _int(raw, "seed", 0, MAX_SEED, 0)
    enhance = _flag(raw, "enhance", project.enhance)
    model = raw.get("model", "")
    allowed = rules.generator_ids
    if project.generators is not None:
        allowed = frozenset(g for g in project.generators if g in allowed)
    if "model" in raw and model not in allowed:
        raise BadParameter(f"unknown model; one of: {', '.join(sorted(allowed))}", param="model")

    box = _box(raw, rules)
    w, h = box.w, box.h
    if "ar" in raw:
        m = _RATIO.fullmatch(raw["ar"])
        if not m or not (1 <= int(m[1]) <= 64 and 1 <= int(m[2]) <= 64):
            raise BadParameter("'ar' must be W:H with integers 1..64", param="ar")
        view = reduce_ratio(int(m[1]), int(m[2]))
        original = view
    elif w is not None and h is not None:
        view = reduce_ratio(w, h)
        # Under `generation` signing `w` and `h` are not signed, so they must not choose a
        # new original: the unsigned ratio is 1:1 (signing tools write `ar` out instead).
        original = (1, 1) if project.signing == "generation" else view
    else:
        view = original = (1, 1)

    plain = is_transparent(style)  # the style asks for a plain background
    transform = _transform(raw, rules, accept, box, view, plain)
    return ImageRequest(
        gen=GenerationParams(
            project=project.slug,
            style_version=project.style_version,
            prompt=prompt,
            ratio=nearest_native(original),
            style=style,
            neg=neg,
            seed=seed,
            enhance=enhance,
            model=model,
        ),
        transform=transform.params,
        sig=raw.get("sig"),
        negotiated=transform.negotiated,
        needs_alpha=transform.needs_alpha,
    )


@dataclass(frozen=True, slots=True)
class Transform:
    """The transform parameters parsed: the variant's params, with how `fmt` was settled."""

    params: TransformParams
    negotiated: bool  # `fmt=auto`: the format came from `Accept` (answers carry `Vary`)
    needs_alpha: bool  # what `fmt=auto` negotiates with


def parse_transform(
    raw: dict[str, str],
    rules: ParseRules,
    accept: str = "",
    *,
    view: tuple[int, int],
    plain: bool = False,
) -> Transform:
    """Transform parameters alone (and `sig`), for an image that is not generated here (an
    uploaded asset): `view` is the ratio it is shown at (its own: nothing is cut from it but
    what `fit` cuts), `plain` asks for a transparent background where the format allows. A
    generation parameter is a 400 naming it, as is anything unknown or out of range."""
    for name in raw:
        if name in GENERATION_PARAMS:
            raise BadParameter(
                f"'{name}' is a generation parameter: it does not apply to a stored image",
                param=name,
            )
        if name not in KNOWN_PARAMS:
            raise UnknownParameter(f"unknown parameter '{name}'", param=_printable(name))
    _flag(raw, "ch", False)
    return _transform(raw, rules, accept, _box(raw, rules), view, plain)


@dataclass(frozen=True, slots=True)
class _Box:
    w: int | None  # CSS pixels
    h: int | None
    dpr: float


def _box(raw: dict[str, str], rules: ParseRules) -> _Box:
    w = _int(raw, "w", 1, rules.max_dimension, None)
    h = _int(raw, "h", 1, rules.max_dimension, None)
    return _Box(w, h, _num(raw, "dpr", 1.0, 4.0, 1.0))


def _transform(
    raw: dict[str, str],
    rules: ParseRules,
    accept: str,
    box: _Box,
    view: tuple[int, int],
    plain: bool,
) -> Transform:
    """Everything after the box and the view: fit, anchor, format, quality, background."""
    fit = raw.get("fit", "cover")
    if fit not in FITS:
        raise BadParameter(f"'fit' must be one of: {', '.join(sorted(FITS))}", param="fit")
    anchor = _anchor(raw.get("anchor", "focal"))
    fmt = raw.get("fmt", rules.default_format)
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in FORMATS and fmt != AUTO:
        raise BadParameter("'fmt' must be one of: auto, avif, jpeg, png, webp", param="fmt")
    quality = _int(raw, "q", 1, 100, None)
    bg_given = "bg" in raw
    bg = _colour(raw["bg"]) if bg_given else None
    rmbg = _flag(raw, "rmbg", False)
    if rmbg and fmt != AUTO and not FORMATS[fmt].alpha:
        raise BadParameter("'rmbg=1' needs a format with alpha (webp, avif, png)", param="rmbg")
    if bg_given and bg is None and fmt == "jpeg":
        raise BadParameter("'bg=transparent' needs a format with alpha", param="bg")
    blur = _num(raw, "blur", 0.0, 100.0, 0.0)

    width, height = _device_size(box.w, box.h, box.dpr, rules.max_dimension)
    needs_alpha = rmbg or (plain and not bg_given) or (bg_given and bg is None)
    negotiated = fmt == AUTO
    if negotiated:
        fmt = negotiate(accept, needs_alpha)
    out = FORMATS[fmt]
    if out.default_quality is None:
        quality = None  # lossless: `q` does not apply
    elif quality is None:
        quality = out.default_quality
    return Transform(
        TransformParams(
            view=view,
            width=width,
            height=height,
            fit=fit,
            anchor=anchor,
            fmt=fmt,
            quality=quality,
            bg=bg,
            bg_given=bg_given,
            # A plain background goes wherever the format can carry transparency.
            rmbg=rmbg or (plain and out.alpha),
            blur=blur,
        ),
        negotiated,
        needs_alpha,
    )


def _printable(name: str) -> str:
    return name if len(name) <= 64 else name[:64] + "…"


def _text(value: str) -> str:
    value = unicodedata.normalize("NFC", value)
    value = "".join(" " if unicodedata.category(c) == "Cc" else c for c in value)
    return _SPACE.sub(" ", value).strip()


@overload
def _int(raw: dict[str, str], name: str, lo: int, hi: int, default: int) -> int: ...


@overload
def _int(raw: dict[str, str], name: str, lo: int, hi: int, default: None) -> int | None: ...


def _int(raw: dict[str, str], name: str, lo: int, hi: int, default: int | None) -> int | None:
    if name not in raw:
        return default
    value = raw[name]
    if not _INT.fullmatch(value) or not lo <= int(value) <= hi:
        raise BadParameter(f"'{name}' must be an integer {lo}..{hi}", param=name)
    return int(value)


def _num(raw: dict[str, str], name: str, lo: float, hi: float, default: float) -> float:
    if name not in raw:
        return default
    value = raw[name]
    if not _NUM.fullmatch(value) or not lo <= float(value) <= hi:
        raise BadParameter(f"'{name}' must be a number {lo:g}..{hi:g}", param=name)
    return round(float(value), 3)


def _flag(raw: dict[str, str], name: str, default: bool) -> bool:
    if name not in raw:
        return default
    if raw[name] not in ("0", "1"):
        raise BadParameter(f"'{name}' must be 0 or 1", param=name)
    return raw[name] == "1"


def _anchor(value: str) -> Anchor:
    if value in NAMED_ANCHORS:
        return value
    x, sep, y = value.partition(",")
    if sep and _NUM.fullmatch(x) and _NUM.fullmatch(y):
        fx, fy = round(float(x), 4), round(float(y), 4)
        if 0.0 <= fx <= 1.0 and 0.0 <= fy <= 1.0:
            return (fx, fy)
    raise BadParameter(
        "'anchor' must be focal, center, top, bottom, left, right, attention, entropy "
        "or X,Y fractions 0..1",
        param="anchor",
    )


def _colour(value: str) -> Colour:
    if value == "transparent":
        return None
    if not _HEX.fullmatch(value):
        raise BadParameter("'bg' must be RRGGBB hex or 'transparent'", param="bg")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def _device_size(
    w: int | None, h: int | None, dpr: float, limit: int
) -> tuple[int | None, int | None]:
    """CSS size times dpr, scaled down together so neither side passes the limit."""
    if w is None and h is None:
        return None, None
    dw = w * dpr if w is not None else None
    dh = h * dpr if h is not None else None
    biggest = max(d for d in (dw, dh) if d is not None)
    scale = min(1.0, limit / biggest)
    return (
        max(1, round(dw * scale)) if dw is not None else None,
        max(1, round(dh * scale)) if dh is not None else None,
    )
