"""Live image URLs written as the gateway writes them, their signatures and srcsets, made
on the caller's side: no request, no key, only the project's signing secret when it signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import quote, unquote, unquote_plus

Mode = Literal["required", "generation"]
Value = str | int | float | bool | None

GENERATION_PARAMS = ("prompt", "ar", "style", "neg", "seed", "enhance", "model")
TRANSFORM_PARAMS = ("w", "h", "dpr", "fit", "anchor", "fmt", "q", "bg", "rmbg", "blur")
ORDER = (*GENERATION_PARAMS, *TRANSFORM_PARAMS, "ch")
SIG = "sig"
SIG_LENGTH = 32
# The natively generated ratios: under `generation` signing, `w`x`h` picks the nearest.
NATIVE = ((1, 1), (2, 3), (3, 2), (3, 4), (4, 3), (4, 5), (5, 4), (9, 16), (16, 9), (21, 9))
_ORIGIN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*")


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def fields_of(params: Mapping[str, Value]) -> dict[str, str]:
    """The given parameters as the query carries them; `None` left out, `sig` dropped."""
    return {k: _text(v) for k, v in params.items() if v is not None and k != SIG}


def _encode(text: str) -> str:
    return quote(text, safe="-_.~", encoding="utf-8", errors="strict")


def canonical(path: str, params: Mapping[str, str], mode: Mode) -> str:
    """The signed text: the path, `?`, and the signed parameters (decoded) sorted by name."""
    _check(mode)
    signed = sorted(
        (name, value)
        for name, value in params.items()
        if name != SIG and (mode == "required" or name in GENERATION_PARAMS)
    )
    return path + "?" + "&".join(f"{_encode(n)}={_encode(v)}" for n, v in signed)


def signature(secret: str, text: str) -> str:
    """The first 32 characters of base64url (no padding) of HMAC-SHA256(secret, text)."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")[:SIG_LENGTH]


def _check(mode: str) -> None:
    if mode not in ("required", "generation"):
        raise ValueError(f"mode must be 'required' or 'generation', not {mode!r}")


def _query(fields: Mapping[str, str]) -> str:
    ranked = sorted(fields.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99)
    return "&".join(f"{name}={quote(value, safe=':,')}" for name, value in ranked)


def _split_query(search: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for field in search.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        name = unquote_plus(name, errors="strict")
        if name in out:
            raise ValueError(f"'{name}' is given more than once")
        out[name] = unquote_plus(value, errors="strict")
    return out


def sign_url(url: str, secret: str, mode: Mode = "required") -> str:
    """The URL (absolute, or a path) as given, with its `sig` added; a `sig` it had is
    replaced. `mode` is the project's signing: `required` signs every parameter,
    `generation` only those that choose the original."""
    _check(mode)
    url = url.split("#", 1)[0]
    before, _, search = url.partition("?")
    origin = _ORIGIN.match(before)
    head = origin.group(0) if origin else ""
    path = before[len(head) :] or "/"
    params = _split_query(search)
    sig = signature(secret, canonical(unquote(path, errors="strict"), params, mode))
    kept = [f for f in search.split("&") if f and unquote_plus(f.partition("=")[0]) != SIG]
    return f"{head}{path}?{'&'.join([*kept, f'{SIG}={sig}'])}"


def _nearest_native(w: int, h: int) -> tuple[int, int]:
    g = math.gcd(w, h)
    ratio = (w // g, h // g)
    if ratio in NATIVE:
        return ratio
    target = math.log(ratio[0] / ratio[1])
    return min(
        NATIVE,
        key=lambda r: (round(abs(math.log(r[0] / r[1]) - target), 12), abs(math.log(r[0] / r[1]))),
    )


def _pin_ratio(fields: dict[str, str], mode: Mode) -> dict[str, str]:
    """Under `generation` signing `w` and `h` are not signed and do not choose the ratio, so
    the ratio they pick is written out as `ar`, as the gateway's own signed URLs do."""
    w, h = fields.get("w", ""), fields.get("h", "")
    pick = mode == "generation" and "ar" not in fields and w.isdigit() and h.isdigit()
    if pick and int(w) * int(h):
        a, b = _nearest_native(int(w), int(h))
        return {**fields, "ar": f"{a}:{b}"}
    return fields


def image_url(
    base: str,
    project: str,
    *,
    secret: str | None = None,
    mode: Mode = "required",
    **params: Value,
) -> str:
    """`base/i/{project}?...`, byte for byte as the gateway writes it; signed when `secret`
    (the project's signing secret) is given."""
    path = f"/i/{project}"
    fields = fields_of(params)
    if secret:
        _check(mode)
        fields = _pin_ratio(fields, mode)
        fields[SIG] = signature(secret, canonical(path, fields, mode))
    return f"{base.rstrip('/')}{path}?{_query(fields)}"


def srcset(
    base: str,
    project: str,
    widths: Iterable[int],
    *,
    secret: str | None = None,
    mode: Mode = "required",
    **params: Value,
) -> str:
    """`URL 320w, URL 640w, ...`: each at its width, the height scaled with it when given."""
    fields = fields_of(params)
    w0 = int(fields["w"]) if fields.get("w", "").isdigit() else 0
    out = []
    for width in widths:
        each: dict[str, Value] = {k: v for k, v in fields.items() if k != "dpr"}
        each["w"] = str(width)
        if w0 and fields.get("h", "").isdigit():
            each["h"] = str(max(1, round(int(fields["h"]) * width / w0)))
        out.append(f"{image_url(base, project, secret=secret, mode=mode, **each)} {width}w")
    return ", ".join(out)
