"""Content keys: BLAKE3 over a canonical, unambiguous encoding of the parts."""

from __future__ import annotations

from collections.abc import Sequence

import blake3
import orjson

KEY_VERSION = 1


def content_key(kind: str, parts: Sequence[object]) -> str:
    """A 64-hex-digit key for `parts`; `kind` keeps originals and variants apart."""
    payload = orjson.dumps([KEY_VERSION, kind, *parts])
    return blake3.blake3(payload).hexdigest()


def is_key(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
