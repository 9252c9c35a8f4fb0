"""Live URLs as a page writes them: `/i/{project}?...` with its parameters in a fixed order,
signed with the project's newest secret when it signs, a `srcset` of widths, and an `<img>`.

In `generation` signing one signature covers every width of the srcset; in `required` each
candidate is signed on its own.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from promptpix.cache.control import Project
from promptpix.generators.ratios import nearest_native, reduce_ratio

from .params import GENERATION_PARAMS, TRANSFORM_PARAMS
from .signing import SIG, sign

ORDER = (*GENERATION_PARAMS, *TRANSFORM_PARAMS, "ch")
LADDER = (320, 640, 960, 1280, 1920)  # srcset widths when no width is asked for
ASSET_PREFIX = "/a/"  # an uploaded asset's URLs: /a/{project}/{id or @alias}


def query(fields: Mapping[str, str]) -> str:
    ranked = sorted(fields.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99)
    return "&".join(f"{name}={quote(value, safe=':,')}" for name, value in ranked)


def pin_ratio(fields: Mapping[str, str], mode: str) -> dict[str, str]:
    """Under `generation` signing `w` and `h` are not signed and do not choose the ratio, so
    a URL that lets them (both given, no `ar`) gets the native ratio they pick written out."""
    out = dict(fields)
    w, h = out.get("w", ""), out.get("h", "")
    if mode == "generation" and "ar" not in out and w.isdigit() and h.isdigit() and int(w) * int(h):
        native = nearest_native(reduce_ratio(int(w), int(h)))
        out["ar"] = f"{native[0]}:{native[1]}"
    return out


def live_url(base: str, project: Project, fields: Mapping[str, str], prefix: str = "/i/") -> str:
    """`base` + the path and query, signed when the project signs."""
    path = prefix + project.slug
    fields = {k: v for k, v in fields.items() if k != SIG}
    if project.signing != "off" and project.secrets:
        fields = pin_ratio(fields, project.signing)
        fields = {**fields, SIG: sign(project.secrets[-1], path, fields, project.signing)}
    return f"{base.rstrip('/')}{path}?{query(fields)}"


def asset_url(
    base: str, project: Project, ref: str, fields: Mapping[str, str] | None = None
) -> str:
    """`base` + `/a/{project}/{ref}` (an asset's id or `@alias`) and its transform
    parameters, signed when the project signs. It has no generation parameter, so under
    `generation` signing the signature covers the path alone: one signed URL serves every
    width, format and crop of that asset."""
    path = f"{ASSET_PREFIX}{project.slug}/{ref}"
    fields = {k: v for k, v in (fields or {}).items() if k != SIG}
    if project.signing != "off" and project.secrets:
        fields = {**fields, SIG: sign(project.secrets[-1], path, fields, project.signing)}
    text = query(fields)
    return f"{base.rstrip('/')}{path}{'?' if text else ''}{text}"


def widths(fields: Mapping[str, str], max_dimension: int, asked: Sequence[int] = ()) -> list[int]:
    """The srcset's candidate widths: those asked, else 1x, 1.5x and 2x of `w`, else a ladder."""
    if asked:
        chosen = list(asked)
    elif "w" in fields and fields["w"].isdigit():
        w = int(fields["w"])
        chosen = [w, round(w * 1.5), w * 2]
    else:
        chosen = list(LADDER)
    return sorted({min(max(1, w), max_dimension) for w in chosen})


def srcset(
    base: str,
    project: Project,
    fields: Mapping[str, str],
    candidates: Sequence[int],
    prefix: str = "/i/",
) -> str:
    """`URL 320w, URL 640w, ...`: each at its width, the height scaled with it when given."""
    out = []
    w0 = int(fields["w"]) if fields.get("w", "").isdigit() else 0
    for width in candidates:
        each = {k: v for k, v in fields.items() if k not in ("dpr", SIG)}
        each["w"] = str(width)
        if w0 and fields.get("h", "").isdigit():
            each["h"] = str(max(1, round(int(fields["h"]) * width / w0)))
        out.append(f"{live_url(base, project, each, prefix)} {width}w")
    return ", ".join(out)


def img_tag(src: str, srcset_: str, *, alt: str, sizes: str, width: int, height: int) -> str:
    attrs = [
        f'src="{html.escape(src)}"',
        f'srcset="{html.escape(srcset_)}"',
        f'sizes="{html.escape(sizes)}"',
    ]
    if width and height:
        attrs.append(f'width="{width}" height="{height}"')
    attrs.append(f'alt="{html.escape(alt)}" loading="lazy" decoding="async"')
    return f"<img {' '.join(attrs)}>"
