"""Asset analysis by a vision model: focal point, alt text and tags of a stored original.

Optional: without one, the focal point comes from libvips saliency (`transforms.focal`) and
there is no alt text. With `PROMPTPIX_VISION=gemini` (and `GEMINI_API_KEY`), a Gemini text
model looks at the image through google-genai and answers JSON. Whatever goes wrong (no
answer in time, an error, malformed JSON) yields None, and libvips' focal point is kept.

Its settings: `settings.VisionSettings`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from .settings import DEFAULT_VISION_MODEL, DEFAULT_VISION_TIMEOUT_S

log = logging.getLogger("promptpix.vision")

MAX_TAGS = 12
INSTRUCTION = (
    "Look at this image and answer JSON only, with these fields: "
    '"focal_point": {"x": number, "y": number}, the centre of the main subject as fractions '
    "0..1 of the width (from the left) and height (from the top); "
    '"alt_text": one sentence of at most 150 characters describing the image for a screen '
    'reader; "tags": up to 8 short lowercase keywords.'
)


@dataclass(frozen=True, slots=True)
class Analysis:
    focal: tuple[float, float] | None
    alt_text: str
    tags: list[str] = field(default_factory=list)
    source: str = ""  # "gemini:MODEL"


def parse_analysis(text: str, source: str) -> Analysis | None:
    """The model's JSON answer, checked; None when it is not usable."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    focal: tuple[float, float] | None = None
    point = data.get("focal_point")
    if isinstance(point, dict):
        fx, fy = _fraction(point.get("x")), _fraction(point.get("y"))
        if fx is not None and fy is not None:
            focal = (fx, fy)
    alt = data.get("alt_text")
    alt = alt.strip()[:300] if isinstance(alt, str) else ""
    raw_tags = data.get("tags")
    tags = (
        [t.strip().lower()[:40] for t in raw_tags if isinstance(t, str) and t.strip()][:MAX_TAGS]
        if isinstance(raw_tags, list)
        else []
    )
    if focal is None and not alt and not tags:
        return None
    return Analysis(focal, alt, tags, source)


def _fraction(value: object) -> float | None:
    """A number within 0..1 (rounded), or None."""
    if isinstance(value, int | float) and 0 <= value <= 1:
        return round(float(value), 4)
    return None


class GeminiVision:
    def __init__(
        self,
        api_key: str,
        model: str = DEFAULT_VISION_MODEL,
        *,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_VISION_TIMEOUT_S,
    ) -> None:
        from google.genai import types

        from .gemini import google_client

        self._types = types
        self.model = model
        self.timeout_s = timeout_s
        self.name = f"gemini:{model}"
        self._client, self._http = google_client(
            base_url, timeout_s, connect_s=2.0, api_key=api_key
        )

    async def analyse(self, data: bytes, content_type: str) -> Analysis | None:
        types = self._types
        config = types.GenerateContentConfig(
            response_mime_type="application/json",
            temperature=0.0,
            thinking_config=(
                types.ThinkingConfig(thinking_budget=0)
                if self.model.startswith("gemini-2.5-flash")
                else None
            ),
        )
        image = types.Part.from_bytes(data=data, mime_type=content_type)
        contents: list[Any] = [image, INSTRUCTION]
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.aio.models.generate_content(
                    model=self.model, contents=contents, config=config
                )
            text = response.text or ""
        except Exception as exc:  # timeouts, API errors, malformed answers
            log.info("vision analysis failed, libvips focal point kept: %s", str(exc)[:200])
            return None
        found = parse_analysis(text, self.name)
        if found is None:
            log.info("vision analysis answered nothing usable")
        return found

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()
