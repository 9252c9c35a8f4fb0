"""What a benchmark run measured, as the runner collects it and the report reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Load:
    rps: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


@dataclass
class Results:
    rounds: list[dict[str, Load]] = field(default_factory=list)
    rss_peak: dict[int, float] = field(default_factory=dict)
    gateway_rss_parent: float = 0.0
    hit_bytes: int = 0
    source_bytes: int = 0
    generation: list[dict[str, Any]] = field(default_factory=list)
    miss_cost: dict[str, Any] = field(default_factory=dict)
    api: dict[str, Any] = field(default_factory=dict)  # the JSON API beside the live URL
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
