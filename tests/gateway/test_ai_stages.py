"""The AI stages in the running gateway, over real HTTP: prompt work with an LLM (Ollama's
API served locally) and without one, styles with transparent backgrounds, asset analysis
(saliency offline, a Gemini vision answer through the real SDK), and the semantic cache
across restarts with a generator chain that cannot answer."""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.generators.test_prompts import LONG, SHORT_ANSWER, FakeLLMServer
from tests.live_support import assert_error, generations, image, start_gateway, stored_meta
from tests.services import Gateway, free_port

pytestmark = pytest.mark.timeout(120)

FOX = "a red fox in the snow"
FOX_PARAPHRASE = "a red fox standing in snow"
UNRELATED = "a spreadsheet of quarterly tax figures"
SHORT = "public, max-age=300"


def meta_of(root: Path, key: str) -> dict[str, Any]:
    """The stored original's metadata, as the file store keeps it."""
    return stored_meta(root / "data", key)


def get(server: Gateway, **params: str) -> httpx.Response:
    return httpx.get(server.url + "/i/demo", params=params, timeout=60)


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer("ollama").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def with_llm(tmp_path_factory: pytest.TempPathFactory, ollama: FakeLLMServer) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("llm"),
        PROMPTPIX_OLLAMA_URL=ollama.url,
        PROMPTPIX_OLLAMA_MODEL="test-model",
        PROMPTPIX_SEMANTIC="off",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """An LLM configured at a port where nothing listens: every step falls back."""
    server = start_gateway(
        tmp_path_factory.mktemp("dead-llm"),
        PROMPTPIX_OLLAMA_URL=f"http://127.0.0.1:{free_port()}",
        PROMPTPIX_PROMPT_LLM_TIMEOUT_S="3",
        PROMPTPIX_SEMANTIC="off",
    )
    yield server
    server.stop()


# --- prompt work --------------------------------------------------------------------------


def test_prompt_over_the_limit_is_refused(offline: Gateway) -> None:
    assert_error(get(offline, prompt="x" * 10_001), 400, "prompt_too_long", "prompt")


def test_long_prompt_is_compacted_by_the_llm(with_llm: Gateway, ollama: FakeLLMServer) -> None:
    assert 3_000 < len(LONG) <= 10_000
    before = len(ollama.requests)
    r = get(with_llm, prompt=LONG, w="64", fmt="png")
    assert r.status_code == 200, r.text
    assert r.headers["x-cache-status"] == "MISS"
    meta = meta_of(with_llm.root, r.headers["x-image-id"])
    assert meta["prompt"] == LONG  # the key's prompt: what the user sent
    assert meta["prompt_sent"] == SHORT_ANSWER
    assert meta["prompt_compacted"] is True
    assert meta["prompt_work"]["optimizer"] == "ollama:test-model"
    path, _, body = ollama.requests[before]
    assert path == "/api/generate" and body["prompt"] == LONG and body["model"] == "test-model"


def test_enhance_rewrites_for_the_style(with_llm: Gateway, ollama: FakeLLMServer) -> None:
    r = get(with_llm, prompt="a lighthouse", style="photorealistic", enhance="1", w="64")
    assert r.status_code == 200, r.text
    meta = meta_of(with_llm.root, r.headers["x-image-id"])
    assert meta["prompt"] == "a lighthouse"
    assert meta["prompt_sent"].startswith(f"A photorealistic photograph of {SHORT_ANSWER}")
    assert meta["prompt_work"]["enhancer"] == "ollama:test-model"
    assert "photorealistic" in ollama.requests[-1][2]["system"]


def test_negative_prompt_is_merged_for_generators_without_one(with_llm: Gateway) -> None:
    r = get(with_llm, prompt="a quiet harbour", neg="people, boats", w="64")
    assert r.status_code == 200, r.text
    meta = meta_of(with_llm.root, r.headers["x-image-id"])
    assert meta["prompt_sent"] == "a quiet harbour Avoid: people, boats."
    assert meta["params"]["neg"] == "people, boats"


def test_dead_llm_falls_back_to_deterministic_compaction(offline: Gateway) -> None:
    r = get(offline, prompt=LONG, w="64")
    assert r.status_code == 200, r.text
    meta = meta_of(offline.root, r.headers["x-image-id"])
    assert meta["prompt"] == LONG
    assert 0 < len(meta["prompt_sent"]) <= 3_000
    assert meta["prompt_sent"].startswith("A lighthouse on a rocky cliff")
    assert meta["prompt_work"]["optimizer"] == "deterministic"
    assert meta["prompt_work"]["fallbacks"]["compact"]
    # Offline enhancement is the style's template.
    r = get(offline, prompt="a lighthouse", style="spot_illustration", enhance="1", w="64")
    meta = meta_of(offline.root, r.headers["x-image-id"])
    assert meta["prompt_sent"].startswith("A spot illustration of a lighthouse.")
    assert meta["prompt_work"]["enhancer"] == "template"


# --- styles -------------------------------------------------------------------------------


def alpha_at(img: Any, x: int, y: int) -> float:
    return float(img.getpoint(x, y)[3])


@pytest.mark.parametrize("style", ["icon", "logo"])
def test_plain_background_styles_come_out_transparent(offline: Gateway, style: str) -> None:
    r = get(offline, prompt="a red fox", style=style, fmt="png", w="256")
    assert r.status_code == 200, r.text
    img = image(r.content)
    assert img.bands == 4
    w, h = img.width - 1, img.height - 1
    assert [alpha_at(img, x, y) for x, y in ((0, 0), (w, 0), (0, h), (w, h))] == [0.0] * 4
    alpha = img[3]
    opaque = (alpha == 255).avg() / 255  # share of fully opaque pixels: the subject is kept
    assert 0.05 < opaque < 0.9, opaque
    # The focal point found at store time is the subject's centre, not empty background.
    focal = meta_of(offline.root, r.headers["x-image-id"])["focal_point"]
    assert alpha_at(img, round(focal["x"] * w), round(focal["y"] * h)) == 255


def test_plain_background_flattened_without_alpha_and_kept_for_other_styles(
    offline: Gateway,
) -> None:
    jpeg = image(get(offline, prompt="a red fox", style="icon", fmt="jpeg", w="128").content)
    assert jpeg.bands == 3 and min(jpeg.getpoint(0, 0)) > 240  # white, not black
    photo = image(get(offline, prompt="a red fox", style="photorealistic", fmt="png").content)
    assert photo.bands == 3  # no removal asked for
    removed = image(
        get(offline, prompt="a red fox", style="photorealistic", fmt="png", rmbg="1").content
    )
    assert removed.bands == 4


# --- asset analysis ---------------------------------------------------------------------


def test_offline_analysis_is_saliency(offline: Gateway) -> None:
    r = get(offline, prompt="a lighthouse at night", w="64")
    meta = meta_of(offline.root, r.headers["x-image-id"])
    assert meta["focal_source"] == "saliency"
    assert 0 <= meta["focal_point"]["x"] <= 1 and 0 <= meta["focal_point"]["y"] <= 1
    assert meta["alt_text"] == "" and meta["tags"] == []


def test_vision_model_gives_focal_point_alt_text_and_tags(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    answer = {
        "focal_point": {"x": 0.25, "y": 0.75},
        "alt_text": "A red fox curled up in fresh snow.",
        "tags": ["fox", "Snow", "winter"],
    }
    gemini = FakeLLMServer("gemini", answer=lambda body: json.dumps(answer)).start()
    server = start_gateway(
        tmp_path_factory.mktemp("vision"),
        PROMPTPIX_VISION="gemini",
        GEMINI_API_KEY="test-key",
        PROMPTPIX_GEMINI_BASE_URL=gemini.url,
        PROMPTPIX_PROMPT_LLM="off",
        PROMPTPIX_SEMANTIC="off",
    )
    try:
        r = get(server, prompt=FOX, w="64")
        assert r.status_code == 200, r.text
        meta = meta_of(server.root, r.headers["x-image-id"])
        gemini.mode = "error"  # a vision model that fails leaves the saliency focal point
        r = get(server, prompt=UNRELATED, w="64")
        assert r.status_code == 200, r.text
        fallback = meta_of(server.root, r.headers["x-image-id"])
    finally:
        server.stop()
        gemini.stop()
    assert meta["focal_point"] == {"x": 0.25, "y": 0.75}
    assert meta["focal_source"] == "gemini:gemini-2.5-flash"
    assert meta["alt_text"] == answer["alt_text"]
    assert meta["tags"] == ["fox", "snow", "winter"]
    assert fallback["focal_source"] == "saliency" and fallback["alt_text"] == ""
    path, _, body = gemini.requests[0]
    assert path.endswith("/models/gemini-2.5-flash:generateContent")
    parts = body["contents"][0]["parts"]
    inline = parts[0].get("inlineData") or parts[0].get("inline_data")
    data = inline["data"]
    sent = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    assert sent[:3] == b"\xff\xd8\xff"  # the original itself, as JPEG
    assert body["generationConfig"]["responseMimeType"] == "application/json"


# --- semantic cache -----------------------------------------------------------------------


def wait_for_sidecar(root: Path, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    path = root / "data" / "semantic" / "prompts.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = [json.loads(x) for x in path.read_bytes().splitlines() if x.strip()]
            if len(lines) >= count:
                return lines
        time.sleep(0.1)
    raise AssertionError(f"{path} did not get {count} entries")


def test_semantic_cache_serves_similar_when_every_generator_fails(tmp_path: Path) -> None:
    working = start_gateway(tmp_path)
    try:
        r = get(working, prompt=FOX, w="200", fmt="png")
        assert r.status_code == 200 and r.headers["x-cache-status"] == "MISS"
        fox_key = r.headers["x-image-id"]
        rows = wait_for_sidecar(tmp_path, 1)  # embedded after the answer was sent
    finally:
        working.stop()
    assert rows[0]["k"] == fox_key and rows[0]["p"] == "demo" and rows[0]["r"] == "1:1"

    # Restarted with a chain whose only generator cannot be reached.
    failing = start_gateway(
        tmp_path,
        PROMPTPIX_GENERATORS="gemini",
        GEMINI_API_KEY="test-key",
        PROMPTPIX_GEMINI_BASE_URL=f"http://127.0.0.1:{free_port()}",
        PROMPTPIX_GEMINI_RETRIES="0",
        PROMPTPIX_PROMPT_LLM="off",
    )
    try:
        for _ in range(2):  # not remembered as the URL's image: each request tries again
            r = get(failing, prompt=FOX_PARAPHRASE, w="200", fmt="png")
            assert r.status_code == 200, r.text
            assert r.headers["x-cache-status"] == "SIMILAR"
            assert r.headers["cache-control"] == SHORT
            assert r.headers["x-image-id"] == fox_key
            assert float(r.headers["x-semantic-similarity"]) >= 0.70
            assert image(r.content).width == 200
        failed = get(failing, prompt=UNRELATED, w="200", fmt="png")
        error = assert_error(failed, 503, "generators_failed")
        assert error["generators_attempted"] == ["gemini"]
        # Another aspect ratio is another scope: nothing similar there.
        other = get(failing, prompt=FOX_PARAPHRASE, ar="16:9", w="200")
        assert_error(other, 503, "generators_failed")
    finally:
        failing.stop()

    # A project that opts in reuses a close match before generating.
    reusing = start_gateway(tmp_path, PROMPTPIX_SEMANTIC_REUSE="1")
    try:
        r = get(reusing, prompt=FOX_PARAPHRASE, w="100")
        assert r.status_code == 200 and r.headers["x-cache-status"] == "SIMILAR"
        assert r.headers["x-image-id"] == fox_key and r.headers["cache-control"] == SHORT
        assert generations(reusing.url) == 0
        r = get(reusing, prompt=UNRELATED, w="100")
        assert r.headers["x-cache-status"] == "MISS"
        assert generations(reusing.url) == 1
    finally:
        reusing.stop()


class HashEncoder:
    """A stand-in model: a fixed random unit vector per text (a paraphrase is unrelated)."""

    def encode(self, texts: list[str]) -> Any:
        import numpy as np

        out = []
        for text in texts:
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            v = rng.normal(size=384).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


def test_a_burst_of_stored_prompts_is_all_embedded_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    import asyncio

    from promptpix.cache.semantic import EmbeddingService, SemanticCache

    keys = [f"{i:064x}" for i in range(100)]

    async def fill() -> None:
        cache = SemanticCache(tmp_path, EmbeddingService(HashEncoder, max_pending=16))
        await cache.start()
        for i, key in enumerate(keys):  # more at once than the embedding queue holds
            cache.remember(key, f"prompt number {i}", "demo", (1, 1))
        await cache.drain()
        assert len(cache.index) == 100
        cache.close()

    async def reopen() -> tuple[int, Any, Any]:
        cache = SemanticCache(tmp_path, EmbeddingService(HashEncoder))
        await cache.start()
        try:
            found = await cache.find("prompt number 42", "demo", (1, 1), 0.99)
            other_ratio = await cache.find("prompt number 42", "demo", (16, 9), 0.5)
            return len(cache.index), found, other_ratio
        finally:
            cache.close()

    asyncio.run(fill())
    count, found, other_ratio = asyncio.run(reopen())
    assert count == 100
    assert found is not None and found.key == keys[42] and found.similarity > 0.99
    assert other_ratio is None


def test_stored_prompts_wait_for_a_quiet_gateway_but_not_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from promptpix.cache.semantic import EmbeddingService, SemanticCache, sidecar

    async def run() -> tuple[int, int, int, int]:
        busy = True
        cache = SemanticCache(tmp_path, EmbeddingService(HashEncoder), busy=lambda: busy)
        await cache.start()
        cache.remember("a" * 64, "a prompt stored during a burst", "demo", (1, 1))
        await asyncio.sleep(0.5)
        while_busy = len(cache.index)
        busy = False
        await asyncio.sleep(sidecar.QUIET_S + 0.5)
        once_quiet = len(cache.index)
        busy = True
        monkeypatch.setattr(sidecar, "MAX_DEFER_S", 0.3)
        cache.remember("b" * 64, "a prompt stored under constant load", "demo", (1, 1))
        await asyncio.sleep(0.1)
        before_limit = len(cache.index)
        await asyncio.sleep(0.6)
        after_limit = len(cache.index)
        cache.close()
        return while_busy, once_quiet, before_limit, after_limit

    assert asyncio.run(run()) == (0, 1, 1, 2)
