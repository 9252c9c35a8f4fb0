"""`openai` through its httpx client against a local server that speaks the Images API."""

from __future__ import annotations

import base64
import time

import pytest

from promptpix.generators.base import GenerationRequest, Refused
from promptpix.generators.chain import Chain
from promptpix.generators.limits import Limits
from promptpix.generators.local import LocalGenerator
from promptpix.generators.openai import OpenAIGenerator, normalise_base
from promptpix.generators.ratios import NATIVE_SIZES
from promptpix.generators.registry import build_chain
from promptpix.generators.settings import GeneratorSettings, OpenAISettings
from promptpix.transforms.source import decode
from tests.generator_fakes import (
    FAST,
    OPEN,
    Answer,
    FakeServer,
    close_chains,  # noqa: F401 (an autouse fixture)
    openai_error,
    openai_ok,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def request(prompt: str = "a red fox", ratio: tuple[int, int] = (1, 1)) -> GenerationRequest:
    return GenerationRequest(
        key="ab" * 32, prompt=prompt, ratio=ratio, size=NATIVE_SIZES[ratio], seed=3
    )


def chain(server: FakeServer, limits: Limits = FAST) -> Chain:
    gen = OpenAIGenerator(
        OpenAISettings(api_key="sk-test", base_url=server.url), timeout_s=limits.timeout_s
    )
    made = Chain([gen, LocalGenerator()], {"openai": limits})
    OPEN.append(made)
    return made


async def test_success_and_the_request_it_sends() -> None:
    with FakeServer(openai_ok) as server:
        result = await chain(server).generate(request(ratio=(3, 2)))
    [call] = server.calls
    assert call.path == "/v1/images/generations"
    assert call.headers["authorization"] == "Bearer sk-test"
    body = call.json()
    assert body["model"] == "gpt-image-1" and body["size"] == "1536x1024" and body["n"] == 1
    assert body["prompt"] == "a red fox"
    assert "response_format" not in body  # gpt-image-1 always answers b64_json
    assert result.image.generator == "openai" and result.image.content_type == "image/png"
    src = decode(result.image.data, 50_000_000)
    assert (src.width, src.height) == (192, 128)


async def test_other_ratios_are_generated_at_the_nearest_size() -> None:
    with FakeServer(openai_ok) as server:
        result = await chain(server).generate(request(ratio=(16, 9)))
    assert server.calls[0].json()["size"] == "1536x1024"  # 3:2 is nearest to 16:9
    assert result.ratio == (3, 2)  # the crop to 16:9 is the caller's
    src = decode(result.image.data, 50_000_000)
    assert (src.width, src.height) == (192, 128)
    with FakeServer(openai_ok) as server:
        tall = await chain(server).generate(request(ratio=(9, 16)))
    assert server.calls[0].json()["size"] == "1024x1536"
    assert tall.ratio == (2, 3)
    src = decode(tall.image.data, 50_000_000)
    assert (src.width, src.height) == (128, 192)


async def test_429_retry_after_is_honoured() -> None:
    with FakeServer(openai_ok) as server:
        server.then(Answer(429, openai_error(429, "rate_limit_exceeded"), {"retry-after": "1"}))
        c = chain(server)
        result = await c.generate(request())
    first, second = server.calls
    assert second.at - first.at >= 1.0
    assert result.image.generator == "openai" and c.stats["openai"].retries == 1


async def test_429_retry_after_ms() -> None:
    with FakeServer(openai_ok) as server:
        server.then(
            Answer(429, openai_error(429, "rate_limit_exceeded"), {"retry-after-ms": "600"})
        )
        await chain(server).generate(request())
    first, second = server.calls
    assert second.at - first.at >= 0.6


async def test_insufficient_quota_is_not_retried() -> None:
    with FakeServer(openai_ok) as server:
        server.then(Answer(429, openai_error(429, "insufficient_quota")))
        result = await chain(server).generate(request())
    assert result.image.generator == "local" and server.count() == 1


async def test_503_then_success() -> None:
    with FakeServer(openai_ok) as server:
        server.then(Answer(503, {"error": {"message": "overloaded", "type": "server_error"}}))
        result = await chain(server).generate(request())
    assert result.image.generator == "openai" and server.count() == 2


@pytest.mark.parametrize("code", ["content_policy_violation", "moderation_blocked"])
async def test_content_policy_is_a_refusal(code: str) -> None:
    with FakeServer(openai_ok) as server:
        server.then(Answer(400, openai_error(400, code, "Your request was rejected")))
        c = chain(server)
        with pytest.raises(Refused):
            await c.generate(request())
    assert server.count() == 1 and c.stats["local"].calls == 0


async def test_timeout_falls_to_local() -> None:
    with FakeServer(openai_ok) as server:
        server.then(Answer(200, b"{}", delay_s=2.0))
        c = chain(server, Limits(retries=0, timeout_s=0.3))
        started = time.monotonic()
        result = await c.generate(request())
    assert time.monotonic() - started < 1.8
    assert result.image.generator == "local" and result.attempted == ("openai", "local")


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"b64_json": base64.b64encode(b"definitely not a picture").decode()}]},
        {"data": [{"b64_json": "%%% not base64 %%%"}]},
        {"data": []},
        b"<html>gateway error</html>",
    ],
    ids=["undecodable_image", "bad_base64", "no_data", "not_json"],
)
async def test_malformed_answers_are_retried_then_fall_to_local(body: object) -> None:
    with FakeServer(openai_ok) as server:
        server.then(Answer(200, body), Answer(200, body))  # type: ignore[arg-type]
        c = chain(server, Limits(retries=1, backoff_s=0.05))
        result = await c.generate(request())
    assert result.image.generator == "local" and result.attempted == ("openai", "local")
    assert server.count() == 2


async def test_base_url_forms() -> None:
    assert normalise_base("http://127.0.0.1:9000") == "http://127.0.0.1:9000/v1"
    assert normalise_base("http://127.0.0.1:9000/v1/") == "http://127.0.0.1:9000/v1"
    assert normalise_base("https://example.test/openai/v1") == "https://example.test/openai/v1"


async def test_timeout_zero_means_no_limit_not_an_instant_failure() -> None:
    with FakeServer(openai_ok) as server:
        env = {
            "PROMPTPIX_GENERATORS": "openai",
            "OPENAI_API_KEY": "sk-test",
            "PROMPTPIX_OPENAI_BASE_URL": server.url,
            "PROMPTPIX_OPENAI_TIMEOUT_S": "0",
        }
        made = build_chain(GeneratorSettings.from_env(env))
        OPEN.append(made)
        result = await made.generate(request())
    assert result.image.generator == "openai" and len(server.calls) == 1
