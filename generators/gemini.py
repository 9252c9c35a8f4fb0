"""`gemini`: Gemini 2.5 Flash Image through google-genai's async client.

The SDK's own retries are off (one attempt): the chain retries, honouring the
`RetryInfo.retryDelay` of a 429, which the SDK's retry ignores.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .base import (
    GeneratedImage,
    GenerationError,
    GenerationRequest,
    Refused,
    retry_after,
    sniff,
)
from .ratios import NATIVE_SIZES, ratio_text
from .settings import GeminiSettings

if TYPE_CHECKING:
    import httpx
    from google import genai

# A response without an image that ends for one of these reasons is a refusal, not an outage.
REFUSAL_REASONS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "NO_IMAGE",
        "IMAGE_OTHER",
        "STOP",  # the model answered, in words only: it declined to draw
    }
)
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def retry_delay(details: Any) -> float | None:
    """`RetryInfo.retryDelay` ("13s", "0.5s") from a Google API error body, in seconds."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items or ():
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            delay = item.get("retryDelay")
            if isinstance(delay, dict):  # {"seconds": 13, "nanos": 0}
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
            found = _DURATION.match(str(delay or ""))
            if found:
                return float(found.group(1))
    return None


def map_api_error(generator: str, exc: Exception) -> GenerationError:
    """google-genai's `ClientError`/`ServerError` as the chain's errors."""
    code = int(getattr(exc, "code", 0) or 0)
    message = str(getattr(exc, "message", "") or exc)[:300]
    retryable = code in RETRYABLE_STATUS
    after = None
    if code == 429:
        after = retry_delay(getattr(exc, "details", None))
        if after is None:
            after = retry_after(getattr(getattr(exc, "response", None), "headers", None) or {})
    return GenerationError(
        generator, f"HTTP {code}: {message}", retryable=retryable, retry_after=after
    )


def google_client(
    base_url: str | None, timeout_s: float, *, connect_s: float = 10.0, **client_args: Any
) -> tuple[genai.Client, httpx.AsyncClient]:
    """A google-genai client on an httpx client of our own, with the SDK's retries off.

    With our own httpx client the SDK stays on httpx (with aiohttp installed it would switch
    to aiohttp, whose session subclass warns on every use), and closing it is ours to do.
    """
    import httpx
    from google import genai
    from google.genai import types

    http = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=min(connect_s, timeout_s)),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=32),
    )
    client = genai.Client(
        **client_args,
        http_options=types.HttpOptions(
            base_url=base_url or None,
            timeout=max(1, int(timeout_s * 1000)),
            retry_options=types.HttpRetryOptions(attempts=1),  # the chain retries
            httpx_async_client=http,
        ),
    )
    return client, http


def _types() -> Any:
    from google.genai import types

    return types


def _errors() -> Any:
    from google.genai import errors

    return errors


class GeminiGenerator:
    kind = "gemini"
    native_sizes = NATIVE_SIZES
    takes_references = True  # sent as input image parts after the prompt

    def __init__(
        self, settings: GeminiSettings, *, timeout_s: float = 120.0, id: str = "gemini"
    ) -> None:
        self.id = id
        self.model = settings.model
        self._client, self._http = google_client(
            settings.base_url or None, timeout_s, api_key=settings.image_key
        )
        self._types = _types()
        self._errors = _errors()

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        types = self._types
        contents: list[Any] = [request.prompt]
        contents.extend(
            types.Part.from_bytes(data=ref, mime_type=sniff(ref)) for ref in request.references
        )
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=ratio_text(request.ratio)),
            seed=request.seed,
            candidate_count=1,
        )
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model, contents=contents, config=config
            )
        except self._errors.APIError as exc:
            raise map_api_error(self.id, exc) from exc
        return self._image(response)

    def _image(self, response: Any) -> GeneratedImage:
        feedback = getattr(response, "prompt_feedback", None)
        blocked = getattr(feedback, "block_reason", None)
        if blocked:
            raise Refused(self.id, f"prompt blocked ({_name(blocked)})")
        candidates = response.candidates or []
        if not candidates:
            raise GenerationError(self.id, "answer has no candidates")
        candidate = candidates[0]
        parts = (candidate.content.parts if candidate.content else None) or []
        for part in parts:
            inline = part.inline_data
            if inline is not None and inline.data:
                mime = inline.mime_type or sniff(inline.data)
                if not mime.startswith("image/"):
                    continue
                return GeneratedImage(
                    data=inline.data,
                    content_type=mime,
                    generator=self.id,
                    model=self.model,
                    details={
                        "finish_reason": _name(candidate.finish_reason),
                        "model_version": getattr(response, "model_version", None) or self.model,
                    },
                )
        reason = _name(candidate.finish_reason)
        text = " ".join(p.text for p in parts if getattr(p, "text", None))[:200]
        if reason in REFUSAL_REASONS:
            raise Refused(self.id, f"no image ({reason}){': ' + text if text else ''}")
        raise GenerationError(self.id, f"answer has no image (finish_reason {reason or 'none'})")

    async def aclose(self) -> None:
        await self._http.aclose()


def _name(value: Any) -> str:
    return str(getattr(value, "name", value) or "")
