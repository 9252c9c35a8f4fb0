"""`/metrics` reports the whole gateway, whichever worker takes the scrape.

Real `promptpix serve` processes; each gets its own TMPDIR, so the test can find the directory
where the workers keep their metrics (`promptpix-metrics-*`) and check what each worker counted.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.live_support import metrics, start_gateway
from tests.services import Gateway, running, wait_until

pytestmark = pytest.mark.timeout(240)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
HELP = (
    "# HELP promptpix_generations_total Originals generated, by generator and outcome.",
    "# HELP promptpix_requests_total HTTP requests answered, by route, status and cache result.",
    "# HELP promptpix_stage_duration_ms Time spent per pipeline stage.",
)


def fresh(count: int) -> list[str]:
    return [f"metrics {uuid.uuid4().hex}" for _ in range(count)]


def miss(url: str, prompts: list[str]) -> None:
    """One request per prompt, each on a connection of its own, so the workers share them."""

    def get(prompt: str) -> str:
        r = httpx.get(url + "/i/demo", params={"prompt": prompt, "w": "40"}, timeout=60)
        assert r.status_code == 200, r.text[:300]
        return r.headers["x-cache-status"]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(get, prompts)) == {"MISS"}


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def misses(samples: Samples) -> float:
    return total(samples, "promptpix_requests_total", route="/i", status="200", cache="MISS")


def generated(samples: Samples) -> float:
    return total(samples, "promptpix_generations_total", outcome="success")


def entries(samples: Samples) -> float:
    return total(samples, "promptpix_memory_tier_entries")


def exposition(url: str) -> str:
    """One scrape, on a connection of its own: the text format, with the HELP texts."""
    r = httpx.get(url + "/metrics", timeout=30)
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert all(line in r.text.splitlines() for line in HELP)
    return r.text


def tally(samples: Samples) -> tuple[float, float, float]:
    """Originals generated, misses answered, variants held in memory tiers."""
    return generated(samples), misses(samples), entries(samples)


def metrics_dir(tmp: Path) -> Path:
    found = list(tmp.glob("promptpix-metrics-*"))
    assert len(found) == 1, found
    return found[0]


def per_worker(directory: Path, kind: str, name: str) -> dict[int, float]:
    """What each worker's own file holds for `name` (kind: counter, gauge_livesum)."""
    out = {}
    for path in directory.glob(f"{kind}_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        out[pid] = sum(s.value for m in merged for s in m.samples if s.name == name)
    return out


def gateway(root: Path, workers: int, server: str = "granian") -> tuple[Gateway, Path]:
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return start_gateway(root, workers=workers, server=server, TMPDIR=str(tmp)), tmp


def settled(url: str, check: Callable[[Samples], bool], what: str) -> None:
    """Until a scrape passes `check`: other workers publish their gauges once a second."""
    wait_until(lambda: check(metrics(url)), 10, what)


def test_two_workers_add_up_in_every_scrape(tmp_path: Path) -> None:
    gw, tmp = gateway(tmp_path, workers=2)
    with running(gw):
        miss(gw.url, fresh(100))
        # Both workers generated: a scrape reading one worker's counters would fall short.
        counted = per_worker(metrics_dir(tmp), "counter", "promptpix_generations_total")
        assert len(counted) == 2 and min(counted.values()) > 0, counted
        assert sum(counted.values()) == 100
        settled(gw.url, lambda s: entries(s) == 100, "both workers' memory tiers in the gauge")
        for _ in range(12):
            exposition(gw.url)
            samples = metrics(gw.url)  # a new connection each time
            assert tally(samples) == (100, 100, 100)
            assert total(samples, "promptpix_stage_duration_ms_count", stage="generate") == 100


def test_one_worker_counts_in_memory(tmp_path: Path) -> None:
    gw, tmp = gateway(tmp_path, workers=1)
    with running(gw):
        miss(gw.url, fresh(10))
        assert "_created" not in exposition(gw.url)  # the same series as several workers give
        # The gauge is read as the scrape is answered: no publishing delay to wait for.
        assert tally(metrics(gw.url)) == (10, 10, 10)
        assert not list(tmp.glob("promptpix-metrics-*"))


def test_a_restarted_gateway_starts_from_zero(tmp_path: Path) -> None:
    first, tmp = gateway(tmp_path, workers=2)
    with running(first):
        miss(first.url, fresh(20))
        assert generated(metrics(first.url)) == 20
        previous = metrics_dir(tmp)
    assert not previous.exists()  # removed when the gateway stopped

    second, _ = gateway(tmp_path, workers=2)  # the same data directory and TMPDIR
    with running(second):
        samples = metrics(second.url)
        assert generated(samples) == 0
        assert misses(samples) == 0
        assert metrics_dir(tmp) != previous
        miss(second.url, fresh(5))
        assert generated(metrics(second.url)) == 5


def test_uvicorn_workers_add_up_and_a_killed_one_leaves_its_counts_not_its_gauges(
    tmp_path: Path,
) -> None:
    gw, tmp = gateway(tmp_path, workers=2, server="uvicorn")
    with running(gw):
        miss(gw.url, fresh(40))
        settled(gw.url, lambda s: entries(s) == 40, "both workers' memory tiers in the gauge")
        directory = metrics_dir(tmp)
        held = per_worker(directory, "gauge_livesum", "promptpix_memory_tier_entries")
        assert len(held) == 2 and min(held.values()) > 0, held
        victim = min(held)
        os.kill(victim, signal.SIGKILL)  # no exit hook runs; uvicorn starts another worker

        def after(samples: Samples) -> bool:
            gone = not (directory / f"gauge_livesum_{victim}.db").exists()
            return gone and entries(samples) == 40 - held[victim]

        settled(gw.url, after, "the killed worker's gauges dropped")
        assert (directory / f"counter_{victim}.db").exists()
        for _ in range(12):
            samples = metrics(gw.url)
            assert generated(samples) == 40
            assert misses(samples) == 40
