"""What the chain counts per generator, and how `/v1/providers` describes one."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .base import Generator
from .limits import Limits
from .ratios import ratio_text


@dataclass(slots=True)
class GeneratorStats:
    calls: int = 0  # calls made to the generator, retries included
    successes: int = 0
    failures: int = 0
    refusals: int = 0
    retries: int = 0
    skipped: int = 0  # turned away by an open circuit, a full queue or a long retry-after
    in_flight: int = 0
    last_error: str = ""
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    wait_ms: deque[float] = field(default_factory=lambda: deque(maxlen=500))  # in the queue

    def observe(self, ms: float) -> None:
        self.latency_ms.append(ms)

    def percentile(self, q: float, values: deque[float] | None = None) -> float | None:
        values = self.latency_ms if values is None else values
        if not values:
            return None
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def describe(
    generator: Generator,
    stats: GeneratorStats,
    limits: Limits,
    *,
    native_ratios: list[tuple[int, int]],
    circuit: str,
    queued: int,
) -> dict[str, Any]:
    """One generator as `/v1/providers` shows it: identity, state, counts, latency, limits."""
    g, s, lim = generator, stats, limits
    return {
        "id": g.id,
        "kind": getattr(g, "kind", g.id),
        "model": getattr(g, "model", ""),
        "native_ratios": [ratio_text(r) for r in native_ratios],
        "circuit": circuit,
        "calls": s.calls,
        "successes": s.successes,
        "failures": s.failures,
        "refusals": s.refusals,
        "retries": s.retries,
        "skipped": s.skipped,
        "in_flight": s.in_flight,
        "queued": queued,
        "last_error": s.last_error,
        "latency_ms": {"p50": s.percentile(0.5), "p95": s.percentile(0.95)},
        "queue_wait_ms": {
            "p50": s.percentile(0.5, s.wait_ms),
            "p95": s.percentile(0.95, s.wait_ms),
        },
        "limits": {
            "concurrency": lim.concurrency,
            "rpm": lim.rpm,
            "retries": lim.retries,
            "timeout_s": lim.timeout_s,
            "max_queue": lim.max_queue,
            "breaker_failures": lim.breaker_failures,
            "breaker_cooldown_s": lim.breaker_cooldown_s,
        },
    }
