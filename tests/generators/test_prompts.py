"""Prompt compaction and enhancement with a text LLM: Ollama's HTTP API and Gemini (through the
real google-genai SDK), each served by a local HTTP server, and the deterministic fallbacks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from promptpix.generators.llm import (
    GeminiLLM,
    LLMChain,
    LLMError,
    OllamaLLM,
    TextLLM,
)
from promptpix.generators.prompts import (
    COMPACT_ABOVE,
    MAX_PROMPT_CHARS,
    clean_answer,
    compact,
    compact_with_llm,
    prepare,
    validate_prompt,
)
from promptpix.generators.styles import apply_style
from tests.services import free_port

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
Answer = Callable[[dict[str, Any]], str]

SUBJECT = "A lighthouse on a rocky cliff at dusk, waves breaking below, gulls circling."
LONG = " ".join(
    f"{SUBJECT} Detail number {i} of the scene is carefully described." for i in range(60)
)
SHORT_ANSWER = "A lighthouse on a rocky cliff at dusk, waves breaking, gulls circling, warm light."


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


@dataclass
class FakeLLMServer:
    """A local HTTP server speaking one LLM API; `mode` says how it behaves."""

    kind: str  # "ollama" or "gemini"
    answer: Answer = field(default=lambda body: SHORT_ANSWER)
    mode: str = "ok"  # ok, slow, error, refuse
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.mode == "slow":
            self.release.wait(10)
        if self.mode == "error":
            return 500, {"error": "model failed to load"}
        if self.kind == "ollama":
            if path != "/api/generate":
                return 404, {"error": "not found"}
            text = self.answer(body)
            answer = {"model": body["model"], "response": text, "done": True, "done_reason": "stop"}
            return 200, answer
        if not path.endswith(":generateContent"):
            return 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
        if self.mode == "refuse":
            return 200, {"promptFeedback": {"blockReason": "SAFETY"}}
        text = self.answer(body)
        return 200, {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "modelVersion": "gemini-2.5-flash",
        }

    def start(self) -> FakeLLMServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((self.path, dict(self.headers), body))
                status, payload = fake.reply(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (timeout) closes the socket under us

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def ollama_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer("ollama").start()
    yield server
    server.stop()


@pytest.fixture
def gemini_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer("gemini").start()
    yield server
    server.stop()


def ollama(url: str, timeout_s: float = 5.0) -> OllamaLLM:
    return OllamaLLM(url, "test-model", timeout_s=timeout_s)


def gemini(url: str, timeout_s: float = 5.0) -> GeminiLLM:
    return GeminiLLM("test-key", "gemini-2.5-flash", base_url=url, timeout_s=timeout_s)


def make(kind: str, url: str, timeout_s: float = 5.0) -> TextLLM:
    return ollama(url, timeout_s) if kind == "ollama" else gemini(url, timeout_s)


async def validate_with(llm: TextLLM, prompt: str = LONG, **kwargs: Any) -> Any:
    try:
        return await validate_prompt(prompt, llm=llm, **kwargs)
    finally:
        await llm.aclose()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


# --- success ------------------------------------------------------------------------------


def test_ollama_compacts_a_long_prompt(ollama_server: FakeLLMServer) -> None:
    assert COMPACT_ABOVE < len(LONG) <= MAX_PROMPT_CHARS
    result = run(lambda: validate_with(ollama(ollama_server.url)))
    assert result.valid and result.will_compact and not result.too_long
    assert result.optimized == SHORT_ANSWER
    assert result.optimized_length == len(SHORT_ANSWER)
    assert result.optimizer == "ollama:test-model"
    assert result.fallback_reason == ""
    assert result.length == len(LONG)
    assert result.timings_ms["compact"] >= 0 and result.timings_ms["total"] >= 0
    [(path, _, body)] = ollama_server.requests
    assert path == "/api/generate"
    assert body["model"] == "test-model" and body["stream"] is False
    assert body["prompt"] == LONG
    assert str(COMPACT_ABOVE) in body["system"]


def test_gemini_compacts_a_long_prompt_through_the_sdk(gemini_server: FakeLLMServer) -> None:
    result = run(lambda: validate_with(gemini(gemini_server.url)))
    assert result.optimized == SHORT_ANSWER
    assert result.optimizer == "gemini:gemini-2.5-flash"
    [(path, headers, body)] = gemini_server.requests
    assert path.endswith("/models/gemini-2.5-flash:generateContent")
    assert {k.lower(): v for k, v in headers.items()}["x-goog-api-key"] == "test-key"
    assert body["contents"][0]["parts"][0]["text"] == LONG
    assert str(COMPACT_ABOVE) in body["systemInstruction"]["parts"][0]["text"]


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
def test_the_answer_is_cleaned(
    kind: str, ollama_server: FakeLLMServer, gemini_server: FakeLLMServer
) -> None:
    server = ollama_server if kind == "ollama" else gemini_server
    server.answer = lambda body: f'Here is the optimized prompt:\n\n"{SHORT_ANSWER}"\n'
    result = run(lambda: validate_with(make(kind, server.url)))
    assert result.optimized == SHORT_ANSWER


def test_prepare_uses_the_llm_for_long_prompts(ollama_server: FakeLLMServer) -> None:
    async def go() -> Any:
        llm = ollama(ollama_server.url)
        try:
            return await prepare(
                LONG, style="", negative="text", enhance=False, takes_negative=False, llm=llm
            )
        finally:
            await llm.aclose()

    prepared = run(go)
    assert prepared.compacted and prepared.optimizer == "ollama:test-model"
    assert prepared.optimized == SHORT_ANSWER
    assert prepared.sent == f"{SHORT_ANSWER} Avoid: text."
    assert prepared.given == LONG
    assert "compact" in prepared.timings_ms and not prepared.fallbacks


def test_short_prompts_do_not_call_the_llm(ollama_server: FakeLLMServer) -> None:
    result = run(lambda: validate_with(ollama(ollama_server.url), SUBJECT))
    assert result.valid and not result.will_compact
    assert result.optimized == SUBJECT and result.optimizer == "none"
    assert result.sent == SUBJECT
    assert ollama_server.requests == []


# --- enhancement --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
def test_enhance_rewrites_for_the_style(
    kind: str, ollama_server: FakeLLMServer, gemini_server: FakeLLMServer
) -> None:
    server = ollama_server if kind == "ollama" else gemini_server
    rewritten = "an old stone lighthouse on a cliff, crashing surf, gulls, amber dusk light"
    server.answer = lambda body: rewritten

    async def go() -> Any:
        llm = make(kind, server.url)
        try:
            style = "photorealistic"
            return await prepare(
                SUBJECT, style=style, negative="", enhance=True, takes_negative=False, llm=llm
            )
        finally:
            await llm.aclose()

    prepared = run(go)
    assert prepared.sent == apply_style(rewritten, "photorealistic")
    assert prepared.enhanced and prepared.enhancer.startswith(kind + ":")
    assert not prepared.compacted and prepared.optimizer == ""
    [(_, _, body)] = server.requests
    system = body["system"] if kind == "ollama" else body["systemInstruction"]["parts"][0]["text"]
    assert "photorealistic photograph" in system  # the style's template guides the rewrite


def test_enhance_falls_back_to_the_template(ollama_server: FakeLLMServer) -> None:
    ollama_server.mode = "error"

    async def go() -> Any:
        llm = ollama(ollama_server.url)
        try:
            return await prepare(
                SUBJECT, style="icon", negative="", enhance=True, takes_negative=False, llm=llm
            )
        finally:
            await llm.aclose()

    prepared = run(go)
    assert prepared.sent == apply_style(SUBJECT, "icon")
    assert prepared.enhancer == "template" and prepared.enhanced
    assert "HTTP 500" in prepared.fallbacks["enhance"]


# --- fallbacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
def test_server_down_falls_back_to_deterministic(kind: str) -> None:
    started = time.perf_counter()
    result = run(lambda: validate_with(make(kind, dead_url())))
    assert time.perf_counter() - started < 5
    assert result.valid and result.will_compact
    assert result.optimizer == "deterministic"
    assert result.optimized == compact(LONG)
    assert len(result.optimized) <= COMPACT_ABOVE
    assert result.fallback_reason.startswith(kind)


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
def test_slow_server_times_out_and_falls_back(
    kind: str, ollama_server: FakeLLMServer, gemini_server: FakeLLMServer
) -> None:
    server = ollama_server if kind == "ollama" else gemini_server
    server.mode = "slow"
    started = time.perf_counter()
    result = run(lambda: validate_with(make(kind, server.url), timeout=0.3))
    elapsed = time.perf_counter() - started
    assert elapsed < 2.5, elapsed
    assert result.optimizer == "deterministic"
    assert result.optimized == compact(LONG)
    assert "no answer within 0.3 s" in result.fallback_reason


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
def test_over_long_answer_falls_back(
    kind: str, ollama_server: FakeLLMServer, gemini_server: FakeLLMServer
) -> None:
    server = ollama_server if kind == "ollama" else gemini_server
    server.answer = lambda body: "lighthouse " * 400  # 4,400 characters
    result = run(lambda: validate_with(make(kind, server.url)))
    assert result.optimizer == "deterministic"
    assert result.optimized == compact(LONG)
    assert "too long" in result.fallback_reason


@pytest.mark.parametrize("kind", ["ollama", "gemini"])
def test_empty_answer_falls_back(
    kind: str, ollama_server: FakeLLMServer, gemini_server: FakeLLMServer
) -> None:
    server = ollama_server if kind == "ollama" else gemini_server
    server.answer = lambda body: "  \n "
    result = run(lambda: validate_with(make(kind, server.url)))
    assert result.optimizer == "deterministic"
    assert result.fallback_reason


def test_gemini_http_error_is_not_retried(gemini_server: FakeLLMServer) -> None:
    gemini_server.mode = "error"
    result = run(lambda: validate_with(gemini(gemini_server.url)))
    assert result.optimizer == "deterministic"
    assert "HTTP 500" in result.fallback_reason
    assert len(gemini_server.requests) == 1


def test_gemini_refusal_falls_back(gemini_server: FakeLLMServer) -> None:
    gemini_server.mode = "refuse"
    result = run(lambda: validate_with(gemini(gemini_server.url)))
    assert result.optimizer == "deterministic"
    assert "blocked" in result.fallback_reason


def test_no_llm_is_deterministic() -> None:
    result = run(lambda: validate_prompt(LONG))
    assert result.optimizer == "deterministic" and result.fallback_reason == ""
    assert result.optimized == compact(LONG)


def test_chain_uses_the_next_backend(ollama_server: FakeLLMServer) -> None:
    async def go() -> Any:
        llm = LLMChain([gemini(dead_url()), ollama(ollama_server.url)])
        try:
            return await compact_with_llm(LONG, llm)
        finally:
            await llm.aclose()

    step = run(go)
    assert step.source == "ollama:test-model" and step.text == SHORT_ANSWER


def test_backends_raise_llm_error() -> None:
    async def go() -> None:
        llm = ollama(dead_url())
        try:
            with pytest.raises(LLMError):
                await llm.complete("hello")
        finally:
            await llm.aclose()

    run(go)


# --- validation and the offline path --------------------------------------------------------


def test_validate_refuses_too_long_and_empty(ollama_server: FakeLLMServer) -> None:
    too_long = run(lambda: validate_with(ollama(ollama_server.url), "x" * (MAX_PROMPT_CHARS + 1)))
    assert not too_long.valid and too_long.too_long and too_long.error == "prompt_too_long"
    assert too_long.optimized is None and too_long.sent is None
    empty = run(lambda: validate_prompt("   "))
    assert not empty.valid and empty.error == "prompt_required" and empty.length == 0
    assert ollama_server.requests == []
    assert set(too_long.to_dict()) >= {"length", "too_long", "will_compact", "optimizer"}


def test_validate_trims_and_reports_the_boundary() -> None:
    exactly = "a" * COMPACT_ABOVE
    result = run(lambda: validate_prompt(f"  {exactly}  "))
    assert result.length == COMPACT_ABOVE and not result.will_compact
    assert run(lambda: validate_prompt("b" * (COMPACT_ABOVE + 1))).will_compact
    assert run(lambda: validate_prompt("c" * MAX_PROMPT_CHARS)).valid


@pytest.mark.parametrize(
    ("prompt", "style", "negative", "enhance"),
    [
        (SUBJECT, "", "", False),
        (SUBJECT, "logo", "blur", False),
        (SUBJECT, "", "", True),
        (LONG, "spot_illustration", "text", True),
        (LONG, "", "", False),
    ],
)
def test_prepare_without_llm_is_deterministic(
    prompt: str, style: str, negative: str, enhance: bool
) -> None:
    kwargs: dict[str, Any] = dict(
        style=style, negative=negative, enhance=enhance, takes_negative=False
    )
    prepared = run(lambda: prepare(prompt, **kwargs))
    again = run(lambda: prepare(prompt, **kwargs))
    long = len(prompt) > COMPACT_ABOVE
    base = compact(prompt) if long else prompt
    styled = apply_style(base, style) if enhance or style else base
    expected = f"{styled} Avoid: {negative}." if negative else styled
    assert prepared.sent == again.sent == expected
    assert prepared.compacted is long
    assert prepared.optimizer == ("deterministic" if long else "")
    assert prepared.enhanced is (styled != base)


def test_clean_answer() -> None:
    assert clean_answer("```\nA fox.\n```") == "A fox."
    assert clean_answer("Prompt: a fox") == "a fox"
    assert clean_answer("\u201ca fox\u201d") == "a fox"
    assert clean_answer("a fox: red") == "a fox: red"
