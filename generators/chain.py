"""The generator chain: tried in order until one answers with an image that decodes.

Each generator sits behind its own governor (a fair queue with concurrency and per-minute
limits) and circuit breaker. A generator's transient failures (429, 5xx, timeouts, answers
that do not decode) are retried with exponential backoff and jitter, honouring the wait the
provider asked for up to a cap; past its retries the chain moves to the next generator. A
refusal (the provider declined the prompt) ends the chain unless `refusal_fallback` is set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import (
    AllGeneratorsFailed,
    GeneratedImage,
    GenerationError,
    GenerationRequest,
    Generator,
    Refused,
)
from .fit import crop_to_ratio, native_for
from .governor import Breaker, Governor, QueueFull
from .ratios import NATIVE_SIZES, ratio_text

log = logging.getLogger("promptpix.generators")

Validate = Callable[[GeneratedImage], Awaitable[None]]
KNOWN = ("gemini", "imagen", "openai", "comfyui", "local")
MAX_CROP_PIXELS = 50_000_000


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Limits:
    """How the chain treats one generator; `PROMPTPIX_{ID}_*` overrides each field."""

    concurrency: int = 4  # calls in flight at once
    rpm: int = 0  # calls started per minute (0: no limit)
    retries: int = 2  # further tries after the first, on transient failures
    timeout_s: float = 120.0  # one call (0: no limit)
    backoff_s: float = 1.0  # first backoff; doubles per try, with full jitter
    max_backoff_s: float = 20.0
    max_retry_wait_s: float = 30.0  # a provider asking for a longer wait is skipped instead
    breaker_failures: int = 5  # consecutive failures that open the circuit (0: never)
    breaker_cooldown_s: float = 30.0  # open → half-open
    max_queue: int = 1000  # callers waiting for a slot; past that, the next generator

    @classmethod
    def from_env(cls, gen_id: str, env: Mapping[str, str], base: Limits | None = None) -> Limits:
        base = base or cls()
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f"PROMPTPIX_{gen_id.upper()}_{f.name.upper()}"
            raw = env.get(name, "").strip()
            if not raw:
                continue
            kind = type(getattr(base, f.name))
            try:
                value = kind(float(raw)) if kind is int else kind(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, not {raw!r}") from None
            if value < 0:
                raise ConfigError(f"{name} must not be negative")
            values[f.name] = value
        limits = dataclasses.replace(base, **values)
        if limits.concurrency < 1:
            raise ConfigError(f"PROMPTPIX_{gen_id.upper()}_CONCURRENCY must be at least 1")
        return limits


# Defaults that fit each provider's usual quotas; the environment overrides them.
DEFAULT_LIMITS: dict[str, Limits] = {
    "gemini": Limits(concurrency=4, rpm=60),
    "imagen": Limits(concurrency=4, rpm=60),
    "openai": Limits(concurrency=4, rpm=30, timeout_s=180.0),
    "comfyui": Limits(concurrency=1, rpm=0, timeout_s=300.0, retries=1),
    # `local` is not a provider: no queue, no timeout, no breaker unless configured.
    "local": Limits(
        concurrency=100_000, retries=0, timeout_s=0, breaker_failures=0, max_queue=100_000
    ),
}


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


@dataclass(frozen=True, slots=True)
class ChainResult:
    image: GeneratedImage
    attempted: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)  # ms spent per generator

    @property
    def fallback_used(self) -> bool:
        return len(self.attempted) > 1


class _Skip(Exception):
    """This generator cannot be tried now; move to the next without calling it."""


class Slot:
    """One generator with its limits, governor, breaker and stats."""

    def __init__(self, generator: Generator, limits: Limits) -> None:
        self.generator = generator
        self.limits = limits
        self.governor = Governor(limits.concurrency, limits.rpm, limits.max_queue)
        self.breaker = Breaker(limits.breaker_failures or 1 << 30, limits.breaker_cooldown_s)
        self.stats = GeneratorStats()

    @property
    def id(self) -> str:
        return self.generator.id

    @property
    def native_sizes(self) -> dict[tuple[int, int], tuple[int, int]]:
        return getattr(self.generator, "native_sizes", None) or NATIVE_SIZES

    def describe(self) -> dict[str, Any]:
        g, s, lim = self.generator, self.stats, self.limits
        return {
            "id": g.id,
            "kind": getattr(g, "kind", g.id),
            "model": getattr(g, "model", ""),
            "native_ratios": [ratio_text(r) for r in self.native_sizes],
            "circuit": self.breaker.current(),
            "calls": s.calls,
            "successes": s.successes,
            "failures": s.failures,
            "refusals": s.refusals,
            "retries": s.retries,
            "skipped": s.skipped,
            "in_flight": s.in_flight,
            "queued": self.governor.limiter.queued,
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


class Chain:
    def __init__(
        self,
        generators: list[Generator],
        limits: Mapping[str, Limits] | None = None,
        *,
        refusal_fallback: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not generators:
            raise ValueError("the generator chain is empty")
        limits = limits or {}
        self.slots = [
            Slot(g, limits.get(g.id) or DEFAULT_LIMITS.get(g.id, Limits())) for g in generators
        ]
        self.refusal_fallback = refusal_fallback
        self._sleep = sleep

    @property
    def generators(self) -> list[Generator]:
        return [s.generator for s in self.slots]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.slots]

    @property
    def stats(self) -> dict[str, GeneratorStats]:
        return {s.id: s.stats for s in self.slots}

    def describe(self) -> dict[str, Any]:
        return {
            "chain": self.ids,
            "refusal_fallback": self.refusal_fallback,
            "generators": [s.describe() for s in self.slots],
        }

    async def close(self) -> None:
        for slot in self.slots:
            closer = getattr(slot.generator, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception as exc:  # closing is best effort
                    log.debug("closing %s: %s", slot.id, exc)

    async def generate(
        self, request: GenerationRequest, validate: Validate, only: str = ""
    ) -> ChainResult:
        attempted: list[str] = []
        errors: list[str] = []
        timings: dict[str, float] = {}
        refused: Refused | None = None
        slots = [s for s in self.slots if not only or s.id == only]
        if not slots:
            raise AllGeneratorsFailed([], [f"no generator named {only!r} in the chain"])
        for slot in slots:
            started = time.perf_counter()
            try:
                image = await self._try(slot, request, validate, attempted)
            except _Skip as exc:
                slot.stats.skipped += 1
                errors.append(f"{slot.id}: {exc}")
                continue
            except Refused as exc:
                timings[slot.id] = round((time.perf_counter() - started) * 1000, 1)
                if not self.refusal_fallback:
                    raise
                refused = exc
                errors.append(str(exc))
                continue
            except GenerationError as exc:
                timings[slot.id] = round((time.perf_counter() - started) * 1000, 1)
                errors.append(str(exc))
                log.warning("generator %s failed: %s", slot.id, exc)
                continue
            timings[slot.id] = round((time.perf_counter() - started) * 1000, 1)
            return ChainResult(image, tuple(attempted), timings)
        if refused is not None:  # a refusal says more than the failures that followed it
            raise refused
        raise AllGeneratorsFailed(attempted, errors)

    async def _try(
        self, slot: Slot, request: GenerationRequest, validate: Validate, attempted: list[str]
    ) -> GeneratedImage:
        lim = slot.limits
        own_ratio, own_size = native_for(request.ratio, slot.native_sizes)
        sized = dataclasses.replace(request, ratio=own_ratio, size=own_size)
        last: GenerationError | None = None
        for attempt in range(lim.retries + 1):
            wait_for_provider = slot.governor.blocked_until - time.monotonic()
            if wait_for_provider > lim.max_retry_wait_s:
                raise _Skip(f"asked to wait {wait_for_provider:.0f} s") if last is None else last
            if not slot.breaker.allow():
                raise _Skip("circuit open") if last is None else last
            if slot.id not in attempted:
                attempted.append(slot.id)
            try:
                image = await self._call(slot, sized, request.ratio, validate)
            except QueueFull as exc:
                slot.breaker.release_probe()
                if last is None:  # never called: not attempted
                    attempted.remove(slot.id)
                    raise _Skip(f"queue full: {exc}") from exc
                raise last from exc
            except asyncio.CancelledError:
                slot.breaker.release_probe()
                raise
            except Refused:
                slot.stats.refusals += 1
                slot.breaker.release_probe()
                raise
            except GenerationError as exc:
                slot.stats.failures += 1
                slot.stats.last_error = str(exc)[:300]
                slot.breaker.failure()
                last = exc
                if exc.retry_after:  # the provider's wait applies to every caller
                    slot.governor.blocked_until = max(
                        slot.governor.blocked_until, time.monotonic() + exc.retry_after
                    )
                if not exc.retryable or attempt == lim.retries:
                    raise
                delay = self._backoff(lim, attempt, exc.retry_after)
                if delay > lim.max_retry_wait_s:
                    raise
                slot.stats.retries += 1
                log.info("generator %s: %s; retry %d in %.2f s", slot.id, exc, attempt + 1, delay)
                await self._sleep(delay)
                continue
            slot.stats.successes += 1
            slot.breaker.success()
            return image
        assert last is not None
        raise last

    @staticmethod
    def _backoff(lim: Limits, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after > 0:
            return retry_after + random.uniform(0, min(1.0, lim.backoff_s))
        ceiling = min(lim.max_backoff_s, lim.backoff_s * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in step

    async def _call(
        self,
        slot: Slot,
        request: GenerationRequest,
        key_ratio: tuple[int, int],
        validate: Validate,
    ) -> GeneratedImage:
        gen = slot.generator
        async with slot.governor.slot() as waited_ms:
            slot.stats.wait_ms.append(waited_ms)
            slot.stats.calls += 1
            slot.stats.in_flight += 1
            started = time.perf_counter()
            try:
                image = await asyncio.wait_for(gen.generate(request), lim_timeout(slot))
            except TimeoutError:
                raise GenerationError(
                    gen.id, f"no answer within {slot.limits.timeout_s:g} s"
                ) from None
            except GenerationError:
                raise
            except Exception as exc:  # a generator's own bug or an unmapped client error
                raise GenerationError(gen.id, f"{type(exc).__name__}: {exc}") from exc
            finally:
                slot.stats.in_flight -= 1
                slot.stats.observe((time.perf_counter() - started) * 1000)
        # Outside the slot: decoding and cropping do not hold the provider's capacity.
        try:
            if request.ratio != key_ratio:
                data, ctype, details = await asyncio.to_thread(
                    crop_to_ratio, image.data, image.content_type, key_ratio, MAX_CROP_PIXELS
                )
                image = dataclasses.replace(
                    image,
                    data=data,
                    content_type=ctype,
                    details={**image.details, **details, "native_ratio": ratio_text(request.ratio)},
                )
            await validate(image)
        except Exception as exc:
            raise GenerationError(gen.id, f"answer is not a usable image: {exc}") from exc
        return image


def lim_timeout(slot: Slot) -> float | None:
    return slot.limits.timeout_s or None


def default_generators(env: Mapping[str, str]) -> list[str]:
    return ["gemini", "local"] if env.get("GEMINI_API_KEY", "").strip() else ["local"]


def build_chain(
    names: list[str], *, local_latency_ms: int = 0, env: Mapping[str, str] | None = None
) -> Chain:
    """The chain named by `names`, each generator configured from the environment."""
    env = os.environ if env is None else env
    generators: list[Generator] = []
    limits: dict[str, Limits] = {}
    for name in names:
        if name in limits:
            raise ConfigError(f"generator {name!r} appears twice in the chain")
        limits[name] = Limits.from_env(name, env, DEFAULT_LIMITS.get(name))
        # A call's timeout is the chain's to enforce; 0 (none) leaves the client an hour.
        generators.append(_make(name, env, local_latency_ms, limits[name].timeout_s or 3600.0))
    fallback = env.get("PROMPTPIX_REFUSAL_FALLBACK", "").strip().lower() in ("1", "true", "on")
    return Chain(generators, limits, refusal_fallback=fallback)


def _make(name: str, env: Mapping[str, str], local_latency_ms: int, timeout_s: float) -> Generator:
    if name == "local":
        from .local import LocalGenerator

        return LocalGenerator(local_latency_ms)
    if name == "gemini":
        from .gemini import GeminiGenerator

        return GeminiGenerator.from_env(env, timeout_s)
    if name == "imagen":
        from .imagen import ImagenGenerator

        return ImagenGenerator.from_env(env, timeout_s)
    if name == "openai":
        from .openai import OpenAIGenerator

        return OpenAIGenerator.from_env(env, timeout_s)
    if name == "comfyui":
        from .comfyui import ComfyUIGenerator

        return ComfyUIGenerator.from_env(env, timeout_s)
    raise ConfigError(f"unknown generator {name!r}; available: {', '.join(KNOWN)}")
