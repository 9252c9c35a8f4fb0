"""Client Hints for live URLs that opt in with `ch=1`: `Sec-CH-DPR` fills `dpr` and
`Sec-CH-Width` (the image's width in device pixels) fills `w`, each only when the URL does not
give it. The answer then varies on the hints used, and says it accepts them.

Opt-in, because a cache in front that ignores `Vary` (several CDNs do, unless configured)
would serve one device's image to every device; a URL with explicit `w`/`dpr` (a srcset)
needs no hints at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

DPR = b"sec-ch-dpr"
WIDTH = b"sec-ch-width"
ACCEPT_CH = (b"accept-ch", b"Sec-CH-DPR, Sec-CH-Width")
MAX_DPR = 4.0


def wanted(fields: dict[str, str]) -> bool:
    return fields.get("ch") == "1"


def apply(
    fields: dict[str, str], headers: Iterable[tuple[bytes, bytes]], max_dimension: int
) -> tuple[dict[str, str], list[bytes]]:
    """The fields with what the hints fill in, and the hints that were used. A hint that is
    not a number in range is ignored: it is the browser's, not the page's."""
    dpr_hint = width_hint = None
    for name, value in headers:
        if name == DPR:
            dpr_hint = _number(value, 0.1, 100.0)
        elif name == WIDTH:
            width_hint = _number(value, 1.0, 1e6)
    out = dict(fields)
    used: list[bytes] = []
    if "dpr" not in fields and dpr_hint is not None:
        out["dpr"] = f"{min(MAX_DPR, max(1.0, round(dpr_hint, 2))):g}"
        used.append(b"Sec-CH-DPR")
    if "w" not in fields and width_hint is not None:
        dpr = float(out.get("dpr", "1")) if _is_number(out.get("dpr", "1")) else 1.0
        css = math.ceil(width_hint / max(1.0, dpr))  # the hint counts device pixels
        out["w"] = str(min(max_dimension, max(1, css)))
        used.append(b"Sec-CH-Width")
    return out, used


def answer_headers(used: list[bytes]) -> list[tuple[bytes, bytes]]:
    """`Accept-CH` always (the page asked for hints), `Vary` on those that were used."""
    headers = [ACCEPT_CH]
    if used:
        headers.append((b"vary", b", ".join(used)))
    return headers


def _number(value: bytes, lo: float, hi: float) -> float | None:
    try:
        found = float(value.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return found if lo <= found <= hi and math.isfinite(found) else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
