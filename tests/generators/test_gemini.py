"""`gemini` through the real google-genai SDK against a local server that speaks its API."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from promptpix.generators.base import GeneratedImage, GenerationError, GenerationRequest, Refused
from promptpix.generators.chain import Chain
from promptpix.generators.gemini import GeminiGenerator, retry_delay
from promptpix.generators.governor import RateLimiter
from promptpix.generators.limits import Limits
from promptpix.generators.local import LocalGenerator
from promptpix.generators.ratios import NATIVE_SIZES
from promptpix.generators.settings import GeminiSettings
from promptpix.transforms.source import decode
from tests.generator_fakes import (
    FAST,
    GEMINI_SIZES,
    OPEN,
    Answer,
    FakeServer,
    close_chains,  # noqa: F401 (an autouse fixture)
    gemini_image,
    gemini_ok,
    gemini_refusal,
    google_error,
    png,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def request(
    prompt: str = "a red fox", ratio: tuple[int, int] = (16, 9), **kw: object
) -> GenerationRequest:
    key = f"{abs(hash(prompt)):016x}" * 4
    return GenerationRequest(key=key, prompt=prompt, ratio=ratio, size=NATIVE_SIZES[ratio], **kw)  # type: ignore[arg-type]


def settings(url: str, **kw: str) -> GeminiSettings:
    return GeminiSettings(api_key="test-key", base_url=url, **kw)


def chain(server: FakeServer, limits: Limits = FAST, *, with_local: bool = True) -> Chain:
    gens = [GeminiGenerator(settings(server.url), timeout_s=limits.timeout_s)]
    if with_local:
        gens.append(LocalGenerator())  # type: ignore[arg-type]
    made = Chain(gens, {"gemini": limits})  # type: ignore[arg-type]
    OPEN.append(made)
    return made


async def test_success_sends_the_request_the_api_expects() -> None:
    with FakeServer(gemini_ok) as server:
        gen = GeminiGenerator(settings(server.url))
        reference = png(16, 16)
        image = await gen.generate(request(ratio=(21, 9), references=(reference,), seed=7))
        await gen.aclose()
    src = decode(image.data, 50_000_000)
    assert (src.width, src.height) == GEMINI_SIZES["21:9"]
    assert image.content_type == "image/png" and image.generator == "gemini"
    [call] = server.calls
    assert call.path == "/v1/models/gemini-2.5-flash-image:generateContent"
    assert call.headers["x-goog-api-key"] == "test-key"
    body = call.json()
    parts = body["contents"][0]["parts"]
    assert parts[0] == {"text": "a red fox"}
    assert base64.urlsafe_b64decode(parts[1]["inlineData"]["data"]) == reference
    config = body["generationConfig"]
    assert config["responseModalities"] == ["IMAGE"]
    assert config["imageConfig"] == {"aspectRatio": "21:9"}
    assert config["seed"] == 7


async def test_model_is_configurable() -> None:
    with FakeServer(gemini_ok) as server:
        gen = GeminiGenerator(settings(server.url, model="gemini-3-pro-image-preview"))
        await gen.generate(request())
        await gen.aclose()
    assert server.calls[0].path == "/v1/models/gemini-3-pro-image-preview:generateContent"


async def test_429_retry_delay_is_honoured() -> None:
    with FakeServer(gemini_ok) as server:
        server.then(Answer(429, google_error(429, "RESOURCE_EXHAUSTED", retry_delay="1.2s")))
        c = chain(server)
        result = await c.generate(request())
    assert result.image.generator == "gemini" and result.attempted == ("gemini",)
    first, second = server.calls
    assert second.at - first.at >= 1.2  # the SDK's own retry would not have waited
    assert c.stats["gemini"].retries == 1
    assert c.stats["gemini"].failures == 1


async def test_429_asking_for_too_long_a_wait_moves_on() -> None:
    with FakeServer(gemini_ok) as server:
        server.then(Answer(429, google_error(429, "RESOURCE_EXHAUSTED", retry_delay="90s")))
        c = chain(server)
        started = time.monotonic()
        result = await c.generate(request())
        # Other requests skip gemini while it asked us to wait, instead of queueing.
        again = await c.generate(request("another"))
    assert time.monotonic() - started < 5
    assert result.image.generator == "local" and result.attempted == ("gemini", "local")
    assert again.attempted == ("local",)
    assert server.count() == 1


async def test_retry_delay_parsing() -> None:
    body = google_error(429, "RESOURCE_EXHAUSTED", retry_delay="13s")
    assert retry_delay(body) == 13.0
    assert retry_delay(body["error"]) == 13.0
    assert (
        retry_delay({"error": {"details": [{"@type": "x.RetryInfo", "retryDelay": "0.5s"}]}}) == 0.5
    )
    assert retry_delay({"error": {"code": 429}}) is None
    assert retry_delay("not json") is None


async def test_503_then_success() -> None:
    with FakeServer(gemini_ok) as server:
        server.then(Answer(503, google_error(503, "UNAVAILABLE")))
        c = chain(server)
        result = await c.generate(request())
    assert result.image.generator == "gemini" and not result.fallback_used
    assert server.count() == 2
    assert c.stats["gemini"].retries == 1


async def test_client_errors_are_not_retried() -> None:
    with FakeServer(gemini_ok) as server:
        server.then(Answer(403, google_error(403, "PERMISSION_DENIED")))
        c = chain(server)
        result = await c.generate(request())
    assert result.image.generator == "local"
    assert server.count() == 1


async def test_timeout_falls_to_the_next_generator() -> None:
    with FakeServer(gemini_ok) as server:
        server.then(*[Answer(200, gemini_image(png(168, 96)), delay_s=2.0)] * 2)
        c = chain(server, Limits(retries=1, backoff_s=0.05, timeout_s=0.4))
        started = time.monotonic()
        result = await c.generate(request())
    assert time.monotonic() - started < 1.8
    assert result.image.generator == "local"
    assert result.attempted == ("gemini", "local") and result.fallback_used
    assert server.count() == 2  # the timeout was retried once
    assert "0.4" in c.stats["gemini"].last_error


async def test_undecodable_bytes_fall_to_the_next_generator() -> None:
    with FakeServer(gemini_ok) as server:
        bad = Answer(200, gemini_image(b"\x89PNG\r\n\x1a\n this is not an image"))
        server.then(bad, bad)
        c = chain(server, Limits(retries=1, backoff_s=0.05))
        result = await c.generate(request())
    assert result.image.generator == "local" and result.attempted == ("gemini", "local")
    assert server.count() == 2
    assert "not a usable image" in c.stats["gemini"].last_error


@pytest.mark.parametrize(
    "answer",
    [
        gemini_refusal("IMAGE_SAFETY"),
        gemini_refusal("NO_IMAGE"),
        {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}},
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "I can't draw that."}]},
                    "finishReason": "STOP",
                }
            ]
        },
    ],
    ids=["image_safety", "no_image", "prompt_blocked", "text_only"],
)
async def test_refusals_end_the_chain(answer: dict[str, object]) -> None:
    with FakeServer(gemini_ok) as server:
        server.then(Answer(200, answer))
        c = chain(server)
        with pytest.raises(Refused):
            await c.generate(request())
    assert server.count() == 1  # neither retried nor handed to `local`
    assert c.stats["gemini"].refusals == 1 and c.stats["local"].calls == 0


async def test_refusal_fallback_when_configured() -> None:
    with FakeServer(gemini_ok) as server:
        server.then(Answer(200, gemini_refusal("IMAGE_SAFETY")))
        c = chain(server)
        c.refusal_fallback = True
        result = await c.generate(request())
    assert result.image.generator == "local" and result.attempted == ("gemini", "local")


async def test_an_answer_with_no_candidates_is_retried() -> None:
    with FakeServer(gemini_ok) as server:
        server.then(Answer(200, {"candidates": []}))
        result = await chain(server).generate(request())
    assert result.image.generator == "gemini" and server.count() == 2


async def test_unreachable_server_falls_to_local() -> None:
    server = FakeServer(gemini_ok)
    url = server.url
    server.httpd.server_close()  # nothing listens there now
    gen = GeminiGenerator(settings(url))
    c = Chain([gen, LocalGenerator()], {"gemini": Limits(retries=0)})
    OPEN.append(c)
    result = await c.generate(request())
    assert result.image.generator == "local" and result.attempted == ("gemini", "local")


async def test_circuit_opens_and_half_opens() -> None:
    with FakeServer(gemini_ok) as server:
        limits = Limits(retries=0, breaker_failures=2, breaker_cooldown_s=0.5)
        c = chain(server, limits)
        server.then(*[Answer(500, google_error(500, "INTERNAL"))] * 2)
        for i in range(2):
            assert (await c.generate(request(f"p{i}"))).image.generator == "local"
        assert c.slots[0].breaker.current() == "open"
        skipped = await c.generate(request("p2"))
        assert skipped.image.generator == "local" and skipped.attempted == ("local",)
        assert server.count() == 2  # the open circuit kept the call away
        await asyncio.sleep(0.55)
        assert c.slots[0].breaker.current() == "half_open"
        probe = await c.generate(request("p3"))
    assert probe.image.generator == "gemini" and c.slots[0].breaker.current() == "closed"
    assert c.describe()["generators"][0]["circuit"] == "closed"


async def test_pinned_generator_only() -> None:
    with FakeServer(gemini_ok) as server:
        c = chain(server, Limits(retries=0))
        with pytest.raises(Exception) as info:
            await c.generate(request("outage"), only="gemini")
        assert info.value.attempted == ["gemini"]  # type: ignore[attr-defined]
        result = await c.generate(request(), only="local")
    assert result.image.generator == "local" and server.count() == 1


async def test_burst_never_exceeds_the_concurrency_limit() -> None:
    with FakeServer(gemini_ok) as server:
        c = chain(server, Limits(concurrency=3, retries=0, timeout_s=30))
        results = await asyncio.gather(
            *(c.generate(request(f"slow burst {i}", ratio=(1, 1))) for i in range(100))
        )
    assert all(r.image.generator == "gemini" for r in results)
    assert server.count() == 100
    assert server.peak == 3  # measured at the server


async def test_errors_are_retryable_or_not() -> None:
    assert GenerationError("g", "x").retryable
    assert not Refused("g", "x").retryable


async def test_the_per_minute_limit_holds_at_the_server() -> None:
    with FakeServer(gemini_ok) as server:
        c = chain(server, Limits(concurrency=10, retries=0))
        await c.generate(request("warm up"))  # the SDK's first call sets itself up
        c.slots[0].governor.rate = RateLimiter(5, window_s=0.5)  # a short "minute"
        gen = c.slots[0].generator
        sent: list[float] = []
        real = gen.generate

        async def timed(req: GenerationRequest) -> GeneratedImage:
            sent.append(time.monotonic())  # when the request leaves for the server
            return await real(req)

        gen.generate = timed  # type: ignore[method-assign]
        await asyncio.gather(*(c.generate(request(f"rpm {i}")) for i in range(12)))
    assert server.count() == 13
    starts = sorted(sent)
    for i in range(5, 12):  # never more than five starts in any window (less loop jitter)
        assert starts[i] - starts[i - 5] >= 0.47
    assert starts[-1] - starts[0] < 1.4  # and no slower than the limit asks


async def test_a_full_queue_moves_on_without_calling() -> None:
    with FakeServer(gemini_ok) as server:
        c = chain(server, Limits(concurrency=1, max_queue=1, retries=0))
        results = await asyncio.gather(*(c.generate(request(f"slow queue {i}")) for i in range(4)))
    by = [r.image.generator for r in results]
    assert by.count("gemini") == 2 and by.count("local") == 2
    assert server.count() == 2
    assert {r.attempted for r in results if r.image.generator == "local"} == {("local",)}
