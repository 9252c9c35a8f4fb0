"""Single-flight and concurrency against a gateway whose `local` generator takes a second."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_support import generations, start_gateway
from tests.services import Gateway, wait_until

LATENCY_MS = 1000


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # Default limits on this one: it also checks the configured maximum's default.
    server = start_gateway(
        tmp_path_factory.mktemp("slow"), PROMPTPIX_LOCAL_LATENCY_MS=str(LATENCY_MS)
    )
    yield server
    server.stop()


async def _get_all(base: str, queries: list[dict[str, str]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(queries), max_keepalive_connections=len(queries))
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.get("/i/demo", params=q) for q in queries))


def get_all(base: str, queries: list[dict[str, str]]) -> list[httpx.Response]:
    return asyncio.run(_get_all(base, queries))


def test_identical_misses_make_one_generation(slow: Gateway) -> None:
    query = {"prompt": f"single flight {uuid.uuid4().hex}", "w": "320", "h": "200"}
    before = generations(slow.url)
    answers = get_all(slow.url, [query] * 60)
    assert [r.status_code for r in answers] == [200] * 60
    assert generations(slow.url) - before == 1
    first = answers[0]
    for r in answers:
        assert r.content == first.content
        assert r.headers["etag"] == first.headers["etag"]
        assert r.headers["x-cache-status"] == "MISS"
    # Afterwards it is a hit, still without another generation.
    again = httpx.get(slow.url + "/i/demo", params=query, timeout=30)
    assert again.headers["x-cache-status"] == "HIT"
    assert again.content == first.content
    assert generations(slow.url) - before == 1


def test_variants_of_one_original_wait_for_one_generation(slow: Gateway) -> None:
    p = f"one original, many crops {uuid.uuid4().hex}"
    queries = [
        {"prompt": p, "ar": "2:7"},
        {"prompt": p, "ar": "9:16"},
        {"prompt": p, "w": "300", "h": "1000"},
        {"prompt": p, "ar": "9:16", "w": "90"},
        {"prompt": p, "ar": "1:3", "fmt": "jpeg"},
    ] * 6
    before = generations(slow.url)
    answers = get_all(slow.url, queries)
    assert [r.status_code for r in answers] == [200] * len(queries)
    assert len({r.headers["x-image-id"] for r in answers}) == 1
    assert len({r.headers["etag"] for r in answers}) == 5
    assert generations(slow.url) - before == 1


def test_distinct_misses_run_concurrently(slow: Gateway) -> None:
    tag = uuid.uuid4().hex
    queries = [{"prompt": f"distinct {i} {tag}", "w": "64"} for i in range(20)]
    before = generations(slow.url)
    started = time.monotonic()
    answers = get_all(slow.url, queries)
    elapsed = time.monotonic() - started
    assert [r.status_code for r in answers] == [200] * 20
    assert [r.headers["x-cache-status"] for r in answers] == ["MISS"] * 20
    assert len({r.headers["x-image-id"] for r in answers}) == 20
    assert generations(slow.url) - before == 20
    # One after another they would take 20 s; side by side, about the latency and the CPU.
    assert elapsed < 6, elapsed


def test_a_client_that_gives_up_does_not_cancel_the_generation(slow: Gateway) -> None:
    query = {"prompt": f"impatient {uuid.uuid4().hex}", "w": "50"}
    before = generations(slow.url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(slow.url + "/i/demo", params=query, timeout=0.3)
    time.sleep(LATENCY_MS / 1000 + 1.0)
    assert generations(slow.url) - before == 1
    r = httpx.get(slow.url + "/i/demo", params=query, timeout=30)
    assert r.status_code == 200
    assert r.headers["x-cache-status"] in ("HIT", "TRANSFORM")
    assert generations(slow.url) - before == 1


def test_default_maximum_dimension_is_4096(slow: Gateway) -> None:
    r = httpx.get(slow.url + "/i/demo", params={"prompt": "x", "w": "4097"}, timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "w"
    r = httpx.get(slow.url + "/i/demo", params={"prompt": "x", "h": "4097"}, timeout=30)
    assert r.json()["error"]["param"] == "h"


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("workers"), workers=2, PROMPTPIX_LOCAL_LATENCY_MS="500"
    )
    yield server
    server.stop()


def test_identical_misses_across_worker_processes_make_one_generation(
    two_workers: Gateway,
) -> None:
    """Each worker has its own single-flight; the lease makes it one generation for all."""
    key_prompt = f"two workers {uuid.uuid4().hex}"
    answers = get_all(two_workers.url, [{"prompt": key_prompt, "w": "100"}] * 50)
    assert [r.status_code for r in answers] == [200] * 50
    assert len({r.content for r in answers}) == 1
    original = answers[0].headers["x-image-id"]
    index = two_workers.root / "data" / "index.sqlite3"

    def rows() -> int:
        with contextlib.closing(sqlite3.connect(index)) as db:
            found = db.execute(
                "SELECT count(*) FROM generations WHERE original_key = ?", (original,)
            ).fetchone()
        return int(found[0])

    wait_until(lambda: rows() >= 1, 10, "the generation in the index")
    time.sleep(1.0)  # a second generation would be written by now
    assert rows() == 1


def test_shutdown_finishes_and_stores_the_generation_under_way(tmp_path: Path) -> None:
    query = {"prompt": f"drained {uuid.uuid4().hex}", "w": "40"}
    first = start_gateway(tmp_path, PROMPTPIX_LOCAL_LATENCY_MS="1500")
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(first.url + "/i/demo", params=query, timeout=0.3)
    finally:
        first.stop()  # SIGTERM while the generation is still waiting on its generator
    assert first.proc is not None and first.proc.returncode == 0
    second = start_gateway(tmp_path, PROMPTPIX_LOCAL_LATENCY_MS="1500")
    try:
        r = httpx.get(second.url + "/i/demo", params=query, timeout=30)
        assert r.status_code == 200
        assert r.headers["x-cache-status"] == "TRANSFORM"  # read from the store
        assert generations(second.url) == 0
    finally:
        second.stop()
