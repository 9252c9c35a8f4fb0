"""The gateway's Prometheus metrics, one registry per `Metrics`, added up across its workers.

One process keeps its counts in memory. Several workers (`promptpix serve --workers N`) run
prometheus_client's multiprocess mode: each writes its counts to files in the directory that
`PROMETHEUS_MULTIPROC_DIR` names, set by the CLI before any worker imports prometheus_client
(which chooses the mode on import), and a scrape, whichever worker takes it, sums every file.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

import prometheus_client
from prometheus_client import CollectorRegistry, Gauge, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger("promptpix")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
GAUGES = {
    "promptpix_memory_tier_bytes": "Bytes of encoded variants held in memory.",
    "promptpix_memory_tier_entries": "Encoded variants held in memory.",
    "promptpix_source_tier_bytes": "Bytes of originals, encoded and decoded, held in memory.",
    "promptpix_transforms_pending": "Transforms queued or running.",
    "promptpix_generations_in_flight": "Originals being generated.",
}

# `_created` series are not part of the exposition (multiprocess mode has none either), so one
# worker and several answer the same series.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


def multiprocess_mode() -> bool:
    """Whether prometheus_client chose file-backed values when it was imported."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Counter:
    """A labelled counter: `inc(*label_values)`. Each labelled child is looked up once and its
    `inc` kept, so a repeat costs one dict lookup before prometheus_client's own increment."""

    __slots__ = ("_incs", "_metric")

    def __init__(
        self, name: str, help_text: str, labels: tuple[str, ...], registry: CollectorRegistry | None
    ) -> None:
        self._metric = prometheus_client.Counter(name, help_text, labels, registry=registry)
        self._incs: dict[tuple[str, ...], Callable[[float], None]] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        inc = self._incs.get(labels)
        if inc is None:
            inc = self._incs[labels] = self._metric.labels(*labels).inc
        inc(amount)


class Histogram:
    """A labelled histogram: `observe(value, *label_values)`, its children kept like Counter's."""

    __slots__ = ("_metric", "_observes")

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...],
        registry: CollectorRegistry | None,
        buckets: tuple[float, ...] = LATENCY_BUCKETS_MS,
    ) -> None:
        self._metric = prometheus_client.Histogram(
            name, help_text, labels, registry=registry, buckets=buckets
        )
        self._observes: dict[tuple[str, ...], Callable[[float], None]] = {}

    def observe(self, value: float, *labels: str) -> None:
        observe = self._observes.get(labels)
        if observe is None:
            observe = self._observes[labels] = self._metric.labels(*labels).observe
        observe(value)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        self.registry = CollectorRegistry()
        # Several workers: the metrics stay out of the registry (their values are in the files),
        # and the registry holds the one collector that sums the files.
        own = None if self.multiprocess else self.registry
        self.generations = Counter(
            "promptpix_generations_total",
            "Originals generated, by generator and outcome.",
            ("generator", "outcome"),
            own,
        )
        self.requests = Counter(
            "promptpix_requests_total",
            "HTTP requests answered, by route, status and cache result.",
            ("route", "status", "cache"),
            own,
        )
        self.stage_ms = Histogram(
            "promptpix_stage_duration_ms", "Time spent per pipeline stage.", ("stage",), own
        )
        self.store_errors = Counter(
            "promptpix_store_errors_total", "Object store operations that failed.", ("op",), own
        )
        self.cost_usd = Counter(
            "promptpix_generation_cost_usd_total",
            "Estimated spend on generations, in USD, by project and generator.",
            ("project", "generator"),
            own,
        )
        self.quota_used = Counter(
            "promptpix_quota_generations_total",
            "Generations counted against their project's quota.",
            ("project",),
            own,
        )
        self.refusals = Counter(
            "promptpix_refusals_total",
            "Requests refused before anything was generated, by code and project.",
            ("code", "project"),
            own,
        )
        # A worker's gauges count while it lives: `livesum` adds up the live workers' values.
        self.gauges = {
            name: Gauge(name, help_text, registry=own, multiprocess_mode="livesum")
            for name, help_text in GAUGES.items()
        }
        self._watcher: threading.Thread | None = None
        self._dir = ""
        if self.multiprocess:
            # prometheus_client reads either spelling; the CLI sets the first.
            self._dir = os.environ.get(MULTIPROC_DIR) or os.environ.get(MULTIPROC_DIR.lower(), "")
            MultiProcessCollector(self.registry, path=self._dir)  # type: ignore[no-untyped-call]

    def watch(self, source: Callable[[], Mapping[str, float]], every_s: float = 1.0) -> None:
        """Several workers: publish this worker's gauges from `source` every `every_s`, so a
        scrape that another worker takes adds up current values. One process: nothing to do,
        the scrape itself reads them."""
        if not self.multiprocess or self._watcher is not None:
            return

        def publish() -> None:
            while True:
                time.sleep(every_s)
                try:
                    self._set(source())
                except Exception:  # a gauge that cannot be read must not end the publishing
                    log.exception("metrics: reading the gauges failed")

        self._watcher = threading.Thread(target=publish, name="promptpix-gauges", daemon=True)
        self._watcher.start()

    def render(self, gauges: Mapping[str, float]) -> bytes:
        """The whole gateway in the text format (`CONTENT_TYPE`), with this process's
        `gauges` (names from `GAUGES`) as they are now."""
        self._set(gauges)
        if self.multiprocess:
            _forget_dead_workers(self._dir)
        return generate_latest(self.registry)

    def _set(self, gauges: Mapping[str, float]) -> None:
        for name, value in gauges.items():
            self.gauges[name].set(value)


def _forget_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that have exited, however they ended (neither granian
    nor uvicorn tells the others; uvicorn's worker ends itself by its signal, so no exit hook
    of its own runs). Their counters stay: what they counted happened."""
    pids = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        with contextlib.suppress(ValueError):
            pids.add(int(os.path.basename(name)[: -len(".db")].rsplit("_", 1)[1]))
    for pid in pids - {os.getpid()}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):  # another scrape got there first
                mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's
            pass
