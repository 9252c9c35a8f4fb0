"""The chain inside a real gateway process, with `gemini` pointed at a local server that
speaks its API: misses, cached keys, refusals, fallbacks, a burst, and `/v1/providers`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.generator_fakes import Answer, ComfyUI, FakeServer, gemini_ok, openai_error, openai_ok
from tests.live_support import image, is_stored, start_gateway, stored_meta
from tests.services import Gateway

pytestmark = pytest.mark.timeout(90)
CONCURRENCY = 4


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer(gemini_ok) as server:
        yield server


def gemini_env(fake: FakeServer) -> dict[str, str]:
    return {
        "GEMINI_API_KEY": "test-key",
        "PROMPTPIX_GEMINI_BASE_URL": fake.url,
        "PROMPTPIX_GENERATORS": "gemini,local",
        "PROMPTPIX_GEMINI_CONCURRENCY": str(CONCURRENCY),
        "PROMPTPIX_GEMINI_RPM": "0",
        "PROMPTPIX_GEMINI_RETRIES": "1",
        "PROMPTPIX_GEMINI_BACKOFF_S": "0.05",
        "PROMPTPIX_GEMINI_TIMEOUT_S": "10",
        "PROMPTPIX_GEMINI_BREAKER_FAILURES": "1000",
        "PROMPTPIX_TRANSFORM_QUEUE": "1000",
        "PROMPTPIX_PROMPT_LLM": "off",  # these tests count image calls only
        "PROMPTPIX_VISION": "off",
        "PROMPTPIX_SEMANTIC": "off",  # a 503 here must stay a 503, not a similar image
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generators-gateway")


@pytest.fixture(scope="module")
def gateway(fake: FakeServer, root: Path) -> Iterator[Gateway]:
    server = start_gateway(root, **gemini_env(fake))
    yield server
    server.stop()


def images(fake: FakeServer) -> int:
    """Image generations the fake Gemini was asked for."""
    return fake.count("gemini-2.5-flash-image:generateContent")


def get(gateway: Gateway, query: str) -> httpx.Response:
    return httpx.get(f"{gateway.url}/i/demo?{query}", timeout=60)


def failures(gateway: Gateway) -> dict[str, int]:
    """Failed generations so far, by generator, as `/v1/providers` counts them."""
    providers = httpx.get(gateway.url + "/v1/providers", timeout=10).json()["generators"]
    return {g["id"]: g["failures"] for g in providers}


def meta(root: Path, key: str) -> dict[str, object]:
    return stored_meta(root / "data", key)


def test_a_miss_is_generated_by_gemini_and_a_cached_key_calls_no_generator(
    gateway: Gateway, fake: FakeServer, root: Path
) -> None:
    before = images(fake)
    first = get(gateway, "prompt=a+red+fox&ar=16:9&w=320")
    assert first.status_code == 200, first.text
    assert first.headers["x-generator"] == "gemini"
    assert first.headers["x-cache-status"] == "MISS"
    assert images(fake) == before + 1
    stored = meta(root, first.headers["x-image-id"])
    assert stored["generators_attempted"] == ["gemini"] and stored["fallback_used"] is False
    assert stored["generator"] == "gemini" and stored["model"] == "gemini-2.5-flash-image"

    again = get(gateway, "prompt=a+red+fox&ar=16:9&w=320")
    other = get(gateway, "prompt=a+red+fox&ar=16:9&w=200&fmt=png")
    assert again.headers["x-cache-status"] == "HIT"
    assert other.headers["x-cache-status"] == "TRANSFORM"
    assert other.headers["x-image-id"] == first.headers["x-image-id"]
    assert images(fake) == before + 1  # no generator was called for a cached key

    # A new process finds the original in the store: still no call.
    gateway.stop()
    restarted = start_gateway(root, **gemini_env(fake))
    try:
        third = get(restarted, "prompt=a+red+fox&ar=16:9&w=240")
        assert third.status_code == 200
        assert third.headers["x-generator"] == "gemini"
        assert third.headers["x-cache-status"] == "TRANSFORM"
        assert images(fake) == before + 1
    finally:
        restarted.stop()
    gateway.port = 0
    gateway.start(timeout=60)  # the module's gateway, back for the next tests


def test_a_refusal_is_422_content_refused(gateway: Gateway, fake: FakeServer) -> None:
    before = images(fake)
    answer = get(gateway, "prompt=something+forbidden&w=100")
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "content_refused"
    assert answer.headers["cache-control"] == "no-store"
    assert images(fake) == before + 1  # not retried, not handed to `local`


def test_an_outage_falls_through_the_chain_to_local(
    gateway: Gateway, fake: FakeServer, root: Path
) -> None:
    failed = failures(gateway)["gemini"]
    before = images(fake)
    answer = get(gateway, "prompt=during+an+outage&ar=4:3&w=200")
    assert answer.status_code == 200, answer.text
    # `local` stands in (SPEC §3): served for a minute, never stored as the original.
    assert answer.headers["x-generator"] == "local"
    assert answer.headers["x-cache-status"] == "PLACEHOLDER"
    assert answer.headers["cache-control"] == "public, max-age=60"
    assert image(answer.content).width == 200
    assert images(fake) == before + 2  # the first try and one retry
    assert failures(gateway)["gemini"] == failed + 2  # each failed call
    assert not is_stored(root / "data", answer.headers["x-image-id"])


def test_every_generator_failing_is_503_with_the_attempted(gateway: Gateway) -> None:
    answer = get(gateway, "prompt=another+outage&model=gemini&w=100")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "generators_failed"
    assert error["generators_attempted"] == ["gemini"]


def test_a_burst_of_100_misses_keeps_the_concurrency_limit(
    gateway: Gateway, fake: FakeServer
) -> None:
    with fake.lock:
        fake.peak = 0
    before = images(fake)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as c:
            return await asyncio.gather(
                *(c.get(f"/i/demo?prompt=slow+burst+number+{i}&w=64") for i in range(100))
            )

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 100
    assert {a.headers["x-generator"] for a in answers} == {"gemini"}
    assert images(fake) == before + 100
    assert fake.peak == CONCURRENCY  # measured at the server: never more, and no 429s


def test_providers_shows_the_chain(gateway: Gateway) -> None:
    answer = httpx.get(gateway.url + "/v1/providers", timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body["chain"] == ["gemini", "local"]
    gemini, local = body["generators"]
    assert gemini["id"] == "gemini" and gemini["kind"] == "gemini"
    assert gemini["model"] == "gemini-2.5-flash-image"
    assert len(gemini["native_ratios"]) == 10
    assert gemini["circuit"] == "closed"
    assert gemini["calls"] >= 100 and gemini["successes"] >= 100
    assert gemini["latency_ms"]["p50"] is not None and gemini["latency_ms"]["p95"] is not None
    assert gemini["limits"]["concurrency"] == CONCURRENCY
    assert gemini["queue_wait_ms"]["p95"] > 0  # the burst waited its turn
    assert local["id"] == "local"


def test_a_fallback_through_the_whole_chain_to_local(tmp_path: Path, fake: FakeServer) -> None:
    down = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    imagen = FakeServer(lambda call: Answer(503, down)).start()
    openai = FakeServer(lambda call: Answer(429, openai_error(429, "rate_limit_exceeded"))).start()
    comfy = FakeServer(ComfyUI(polls_until_done=1, image=b"not an image")).start()
    env = {
        **gemini_env(fake),
        "PROMPTPIX_GENERATORS": "gemini,imagen,openai,comfyui,local",
        "PROMPTPIX_VERTEX_API_KEY": "vertex-key",
        "PROMPTPIX_IMAGEN_BASE_URL": imagen.url,
        "OPENAI_API_KEY": "sk-test",
        "PROMPTPIX_OPENAI_BASE_URL": openai.url + "/v1",
        "PROMPTPIX_COMFYUI_URL": comfy.url,
    }
    env.update({f"PROMPTPIX_{g}_RETRIES": "0" for g in ("GEMINI", "IMAGEN", "OPENAI", "COMFYUI")})
    server = start_gateway(tmp_path, **env)
    try:
        answer = get(server, "prompt=a+total+outage&ar=21:9&w=300")
        providers = httpx.get(server.url + "/v1/providers", timeout=10).json()
    finally:
        server.stop()
        for s in (imagen, openai, comfy):
            s.stop()
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-generator"] == "local"
    assert answer.headers["x-cache-status"] == "PLACEHOLDER"
    assert not is_stored(tmp_path / "data", answer.headers["x-image-id"])
    # Each was really asked, in its own protocol, at the ratio it makes.
    assert imagen.calls[0].json()["parameters"]["aspectRatio"] == "16:9"
    assert openai.calls[0].json()["size"] == "1536x1024"
    assert [c.path for c in comfy.calls][-1] == "/view"
    failures = {g["id"]: g["failures"] for g in providers["generators"]}
    assert failures == {"gemini": 1, "imagen": 1, "openai": 1, "comfyui": 1, "local": 0}
    assert providers["generators"][1]["native_ratios"] == ["1:1", "3:4", "4:3", "9:16", "16:9"]


def test_an_original_made_at_another_ratio_is_stored_at_the_keys(tmp_path: Path) -> None:
    openai = FakeServer(openai_ok).start()
    env = {
        "PROMPTPIX_GENERATORS": "openai",
        "OPENAI_API_KEY": "sk-test",
        "PROMPTPIX_OPENAI_BASE_URL": openai.url + "/v1",
        "PROMPTPIX_PROMPT_LLM": "off",
        "PROMPTPIX_VISION": "off",
        "PROMPTPIX_SEMANTIC": "off",
    }
    server = start_gateway(tmp_path, **env)
    try:
        wide = get(server, "prompt=a+wide+harbour&ar=16:9&w=160")
        square = get(server, "prompt=a+square+harbour&ar=1:1&w=64")
    finally:
        server.stop()
        openai.stop()
    assert wide.status_code == 200, wide.text
    assert wide.headers["x-generator"] == "openai"
    assert openai.calls[0].json()["size"] == "1536x1024"  # 3:2, nearest to 16:9
    stored = meta(tmp_path, wide.headers["x-image-id"])
    assert (stored["width"], stored["height"]) == (192, 108)  # 192x128, cropped to 16:9
    details = stored["generator_details"]
    assert details["native_ratio"] == "3:2"  # type: ignore[index]
    assert details["generated_size"] == [192, 128]  # type: ignore[index]
    assert image(wide.content).height == 90  # 160 wide at 16:9
    plain = meta(tmp_path, square.headers["x-image-id"])
    assert (plain["width"], plain["height"]) == (128, 128)  # a native ratio: no crop
    assert "native_ratio" not in plain["generator_details"]  # type: ignore[operator]
