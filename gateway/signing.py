"""Signed URLs (SPEC §3): an HMAC-SHA256 over a canonical form of the path and parameters.

The canonical form decodes every value (`+` and `%20` are both a space) and encodes it
again one way (UTF-8, only `A-Z a-z 0-9 - _ . ~` left as they are), with the names sorted:
a URL re-encoded on its way (spaces written either way, parameters reordered, hex digits in
either case) still verifies. `required` signs every parameter but `sig`; `generation` signs
only what defines the original, so one signed URL serves every width, density and format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import quote

Mode = Literal["required", "generation"]
MODES: tuple[Mode, ...] = ("required", "generation")
GENERATION_PARAMS = frozenset({"prompt", "ar", "style", "neg", "seed", "enhance", "model"})
SIG = "sig"
SIG_LENGTH = 32


def _encode(text: str) -> str:
    return quote(text, safe="-_.~", encoding="utf-8", errors="strict")


def canonical(path: str, params: Mapping[str, str], mode: Mode) -> str:
    """`path?name=value&...` over the signed parameters (decoded values), names sorted."""
    signed = sorted(
        (name, value)
        for name, value in params.items()
        if name != SIG and (mode == "required" or name in GENERATION_PARAMS)
    )
    return path + "?" + "&".join(f"{_encode(name)}={_encode(value)}" for name, value in signed)


def signature(secret: str, text: str) -> str:
    """The first 32 characters of base64url (no padding) of HMAC-SHA256(secret, text)."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")[:SIG_LENGTH]


def sign(secret: str, path: str, params: Mapping[str, str], mode: Mode) -> str:
    return signature(secret, canonical(path, params, mode))


def verify(secrets: Iterable[str], path: str, params: Mapping[str, str], mode: Mode) -> bool:
    """Whether `params["sig"]` was made with any of `secrets` (rotation: all verify). Every
    secret is tried, in constant time each, so the time says nothing of which matched."""
    given = params.get(SIG, "").encode("ascii", "replace")
    text = canonical(path, params, mode)
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(signature(secret, text).encode("ascii"), given)
    return matched
