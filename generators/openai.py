"""`openai`: the Images API (`POST /v1/images/generations`, `gpt-image-1`) over httpx.

`PROMPTPIX_OPENAI_BASE_URL` points it at any compatible server (like the OpenAI SDK's base
URL, it includes `/v1`; a bare `http://host:port` gets `/v1` added).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

import httpx

from .base import GeneratedImage, GenerationError, GenerationRequest, Refused, retry_after
from .settings import OpenAISettings

NATIVE_SIZES: dict[tuple[int, int], tuple[int, int]] = {
    (1, 1): (1024, 1024),
    (3, 2): (1536, 1024),
    (2, 3): (1024, 1536),
}
REFUSAL_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def normalise_base(url: str) -> str:
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


class OpenAIGenerator:
    kind = "openai"
    native_sizes = NATIVE_SIZES

    def __init__(
        self,
        settings: OpenAISettings,
        *,
        timeout_s: float = 180.0,
        id: str = "openai",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.id = id
        self.model = settings.model
        self.quality = settings.quality
        self.url = normalise_base(settings.base_url) + "/images/generations"
        self._client = httpx.AsyncClient(
            headers={"authorization": f"Bearer {settings.api_key}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            transport=transport,
        )

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        width, height = request.size
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt,
            "n": 1,
            "size": f"{width}x{height}",
            "output_format": "png",
        }
        if self.quality:
            body["quality"] = self.quality
        try:
            response = await self._client.post(self.url, json=body)
        except httpx.TimeoutException as exc:
            raise GenerationError(self.id, f"timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise GenerationError(self.id, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise self._error(response)
        try:
            item = response.json()["data"][0]
            data = base64.b64decode(item["b64_json"], validate=True)
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as exc:
            raise GenerationError(self.id, f"malformed answer: {exc!r}"[:300]) from exc
        details: dict[str, object] = {}
        if item.get("revised_prompt"):
            details["revised_prompt"] = item["revised_prompt"]
        return GeneratedImage(
            data=data,
            content_type="image/png",
            generator=self.id,
            model=self.model,
            details=details,
        )

    def _error(self, response: httpx.Response) -> GenerationError:
        status = response.status_code
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        code = str(error.get("code") or error.get("type") or "")
        message = str(error.get("message") or response.reason_phrase)[:300]
        if code in REFUSAL_CODES:
            return Refused(self.id, f"{code}: {message}")
        if status == 429 and code == "insufficient_quota":  # billing, not a rate limit
            return GenerationError(self.id, f"HTTP 429 {code}: {message}", retryable=False)
        return GenerationError(
            self.id,
            f"HTTP {status} {code}: {message}".replace("  ", " "),
            retryable=status in RETRYABLE_STATUS,
            retry_after=retry_after(response.headers) if status in (429, 503) else None,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
