"""Content keys: BLAKE3 over a canonical, unambiguous encoding of the parts.

An original's key covers everything that defines it; a variant's key covers its original's
key and every transform parameter (with the format already negotiated).
"""

from __future__ import annotations

from collections.abc import Sequence

import blake3
import orjson

from promptpix.transforms.params import TransformParams

KEY_VERSION = 1


def content_key(kind: str, parts: Sequence[object]) -> str:
    """A 64-hex-digit key for `parts`; `kind` keeps originals and variants apart."""
    payload = orjson.dumps([KEY_VERSION, kind, *parts])
    return blake3.blake3(payload).hexdigest()


def original_key(
    project: str,
    style_version: int,
    prompt: str,
    ratio: tuple[int, int],
    style: str,
    neg: str,
    seed: int,
    enhance: bool,
    model: str,
    references: Sequence[str] = (),
) -> str:
    """The key of an original; `ratio` is the native ratio it is generated at, and
    `references` the content keys of the images sent with the prompt (an original made
    without any keeps the key it always had)."""
    parts: list[object] = [
        project,
        style_version,
        prompt,
        f"{ratio[0]}:{ratio[1]}",
        style,
        neg,
        seed,
        int(enhance),
        model,
    ]
    if references:
        parts.append(list(references))
    return content_key("original", parts)


def variant_key(original: str, t: TransformParams) -> str:
    """The key of one variant of `original`."""
    anchor = t.anchor if isinstance(t.anchor, str) else list(t.anchor)
    bg = "transparent" if t.bg is None else "{:02x}{:02x}{:02x}".format(*t.bg)
    return content_key(
        "variant",
        [
            original,
            f"{t.view[0]}:{t.view[1]}",
            t.width or 0,
            t.height or 0,
            t.fit,
            anchor,
            t.fmt,
            t.quality,
            bg if t.bg_given else "",
            int(t.rmbg),
            t.blur,
        ],
    )


def is_key(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
