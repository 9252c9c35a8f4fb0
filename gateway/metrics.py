"""Prometheus counters and histograms, rendered in the text exposition format."""

from __future__ import annotations

import bisect
from collections import defaultdict

LATENCY_BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(
        f'{n}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for n, v in zip(names, values, strict=True)
    )
    return "{" + inner + "}"


class Counter:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, labels
        self.values: defaultdict[tuple[str, ...], float] = defaultdict(float)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] += amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for labels, value in sorted(self.values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {value:g}")
        return lines


class Histogram:
    def __init__(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS_MS,
    ) -> None:
        self.name, self.help, self.label_names, self.buckets = name, help_text, labels, buckets
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: defaultdict[tuple[str, ...], float] = defaultdict(float)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        names = (*self.label_names, "le")
        for labels, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                lines.append(f"{self.name}_bucket{_labels(names, (*labels, le))} {running}")
            plain = _labels(self.label_names, labels)
            lines.append(f"{self.name}_sum{plain} {self.sums[labels]:g}")
            lines.append(f"{self.name}_count{plain} {running}")
        return lines


class Metrics:
    def __init__(self) -> None:
        self.generations = Counter(
            "promptpix_generations_total",
            "Originals generated, by generator and outcome.",
            ("generator", "outcome"),
        )
        self.requests = Counter(
            "promptpix_requests_total",
            "HTTP requests answered, by route, status and cache result.",
            ("route", "status", "cache"),
        )
        self.stage_ms = Histogram(
            "promptpix_stage_duration_ms", "Time spent per pipeline stage.", ("stage",)
        )
        self.store_errors = Counter(
            "promptpix_store_errors_total", "Object store operations that failed.", ("op",)
        )

    def render(self, gauges: dict[str, float]) -> str:
        lines: list[str] = []
        for metric in (self.generations, self.requests, self.stage_ms, self.store_errors):
            lines.extend(metric.render())
        for name, value in sorted(gauges.items()):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"
