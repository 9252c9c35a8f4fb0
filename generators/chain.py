"""The generator chain: tried in order until one answers with an image that decodes."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .base import AllGeneratorsFailed, GeneratedImage, GenerationRequest, Generator, Refused
from .local import LocalGenerator

log = logging.getLogger("promptpix.generators")

Validate = Callable[[GeneratedImage], Awaitable[None]]


@dataclass(slots=True)
class GeneratorStats:
    calls: int = 0
    failures: int = 0
    refusals: int = 0
    latency_ms: list[float] = field(default_factory=list)

    def observe(self, ms: float) -> None:
        self.latency_ms.append(ms)
        if len(self.latency_ms) > 200:
            del self.latency_ms[:100]


@dataclass(frozen=True, slots=True)
class ChainResult:
    image: GeneratedImage
    attempted: tuple[str, ...]

    @property
    def fallback_used(self) -> bool:
        return len(self.attempted) > 1


class Chain:
    def __init__(self, generators: list[Generator]) -> None:
        if not generators:
            raise ValueError("the generator chain is empty")
        self.generators = generators
        self.stats = {g.id: GeneratorStats() for g in generators}

    @property
    def ids(self) -> list[str]:
        return [g.id for g in self.generators]

    async def generate(
        self, request: GenerationRequest, validate: Validate, only: str = ""
    ) -> ChainResult:
        attempted: list[str] = []
        errors: list[str] = []
        for gen in self.generators:
            if only and gen.id != only:
                continue
            attempted.append(gen.id)
            stats = self.stats[gen.id]
            stats.calls += 1
            started = time.perf_counter()
            try:
                image = await gen.generate(request)
                await validate(image)
            except Refused:
                stats.refusals += 1
                raise
            except Exception as exc:  # any failure of one generator moves to the next
                stats.failures += 1
                errors.append(f"{gen.id}: {exc}")
                log.warning("generator %s failed: %s", gen.id, exc)
                continue
            finally:
                stats.observe((time.perf_counter() - started) * 1000)
            return ChainResult(image, tuple(attempted))
        raise AllGeneratorsFailed(attempted, errors)


def build_chain(names: list[str], *, local_latency_ms: int = 0) -> Chain:
    generators: list[Generator] = []
    for name in names:
        if name == "local":
            generators.append(LocalGenerator(local_latency_ms))
        else:
            raise ValueError(f"unknown generator {name!r}; available: local")
    return Chain(generators)
