"""Text LLMs for prompt work (compaction, enhancement): Ollama's HTTP API and Gemini.

Every backend answers `complete(prompt, system=...)` with a `Completion`, or raises
`LLMError`; whatever goes wrong underneath (connection refused, HTTP error, a refusal, a
malformed answer) becomes an `LLMError`, so callers have one thing to degrade on.

Which backends, in which order, with which models: `settings.PromptLLMSettings`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .settings import DEFAULT_GEMINI_TEXT_MODEL, DEFAULT_LLM_TIMEOUT_S, DEFAULT_OLLAMA_MODEL

if TYPE_CHECKING:  # httpx and google-genai are imported when a backend is built
    import httpx

log = logging.getLogger("promptpix.llm")

TEMPERATURE = 0.2


class LLMError(Exception):
    """The backend gave no usable answer."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    backend: str  # "ollama" or "gemini"
    model: str

    @property
    def source(self) -> str:
        """`backend:model`, as reported by the prompt optimizer."""
        return f"{self.backend}:{self.model}"


class TextLLM(Protocol):
    name: str  # e.g. "ollama:llama3.2"
    timeout_s: float

    async def complete(self, prompt: str, *, system: str = "") -> Completion: ...

    async def aclose(self) -> None: ...


class OllamaLLM:
    """`POST {base_url}/api/generate` with `stream: false`."""

    backend = "ollama"

    def __init__(
        self,
        base_url: str,
        model: str = DEFAULT_OLLAMA_MODEL,
        *,
        timeout_s: float = DEFAULT_LLM_TIMEOUT_S,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.name = f"{self.backend}:{model}"
        import httpx

        self._errors: tuple[type[Exception], ...] = (httpx.HTTPError, ValueError)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(2.0, timeout_s))
        )

    async def complete(self, prompt: str, *, system: str = "") -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "stream": False,
            "options": {"temperature": TEMPERATURE},
        }
        if system:
            body["system"] = system
        try:
            response = await self._client.post(f"{self.base_url}/api/generate", json=body)
            payload = response.json() if response.content else {}
        except self._errors as exc:
            raise LLMError(self.backend, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            detail = payload.get("error", "") if isinstance(payload, dict) else ""
            raise LLMError(self.backend, f"HTTP {response.status_code} {detail}".strip())
        if not isinstance(payload, dict) or not isinstance(payload.get("response"), str):
            raise LLMError(self.backend, "the answer has no `response` text")
        if payload.get("done_reason") == "length":
            raise LLMError(self.backend, "the answer was cut at the token limit")
        return Completion(payload["response"], self.backend, self.model)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


class GeminiLLM:
    """Gemini text generation through google-genai's async client."""

    backend = "gemini"

    def __init__(
        self,
        api_key: str,
        model: str = DEFAULT_GEMINI_TEXT_MODEL,
        *,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_LLM_TIMEOUT_S,
        thinking_budget: int | None = None,
    ) -> None:
        from google.genai import types

        from .gemini import google_client

        self._types = types
        self.model = model
        self.timeout_s = timeout_s
        self.name = f"{self.backend}:{model}"
        self.thinking_budget = thinking_budget
        self._client, self._http = google_client(
            base_url, timeout_s, connect_s=2.0, api_key=api_key
        )

    async def complete(self, prompt: str, *, system: str = "") -> Completion:
        types = self._types
        config = types.GenerateContentConfig(
            system_instruction=system or None,
            temperature=TEMPERATURE,
            thinking_config=(
                types.ThinkingConfig(thinking_budget=self.thinking_budget)
                if self.thinking_budget is not None
                else None
            ),
        )
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model, contents=prompt, config=config
            )
        except Exception as exc:  # APIError, transport errors, malformed answers
            code = getattr(exc, "code", None)
            label = f"HTTP {code}" if isinstance(code, int) else type(exc).__name__
            raise LLMError(self.backend, f"{label}: {exc}"[:300]) from exc
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason:
            raise LLMError(self.backend, f"prompt blocked ({feedback.block_reason})")
        candidate = response.candidates[0] if response.candidates else None
        if candidate is None:
            raise LLMError(self.backend, "no candidate in the answer")
        if candidate.finish_reason == types.FinishReason.MAX_TOKENS:
            raise LLMError(self.backend, "the answer was cut at the token limit")
        text = response.text
        if not text:
            raise LLMError(self.backend, f"no text in the answer ({candidate.finish_reason})")
        return Completion(text, self.backend, self.model)

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()


class LLMChain:
    """Several backends tried in order; the first answer wins."""

    def __init__(self, members: Sequence[TextLLM]) -> None:
        if not members:
            raise ValueError("an LLM chain needs at least one backend")
        self.members = list(members)
        self.name = ",".join(m.name for m in self.members)
        self.timeout_s = max(m.timeout_s for m in self.members)

    async def complete(self, prompt: str, *, system: str = "") -> Completion:
        errors: list[str] = []
        for member in self.members:
            try:
                return await member.complete(prompt, system=system)
            except LLMError as exc:
                log.info("prompt LLM %s failed: %s", member.name, exc)
                errors.append(str(exc))
        raise LLMError("chain", "; ".join(errors))

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()
