"""The generator chain: tried in order until one answers with a usable image.

Each generator sits behind its own governor (a fair queue with concurrency and per-minute
limits) and circuit breaker. A generator's transient failures (429, 5xx, timeouts, answers
that are not a usable image) are retried with exponential backoff and jitter, honouring the
wait the provider asked for up to a cap; past its retries the chain moves to the next
generator. A refusal (the provider declined the prompt) ends the chain unless
`refusal_fallback` is set.

A generator is asked for its own native ratio nearest the request's; the answer comes back
as made, with that ratio in `ChainResult.ratio` (the crop to the key's ratio is not the
chain's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .answers import check
from .base import (
    AllGeneratorsFailed,
    GeneratedImage,
    GenerationError,
    GenerationRequest,
    Generator,
    Refused,
)
from .governor import Breaker, Governor, QueueFull
from .limits import Limits, limits_for
from .ratios import NATIVE_SIZES, native_for
from .stats import GeneratorStats, describe

log = logging.getLogger("promptpix.generators")

MAX_PIXELS = 50_000_000


@dataclass(frozen=True, slots=True)
class ChainResult:
    image: GeneratedImage
    attempted: tuple[str, ...]
    timings: dict[str, float]  # ms spent with each generator tried
    ratio: tuple[int, int]  # the generator's own ratio, nearest the request's, it was made at
    # The answer is a placeholder's (the offline `local`) standing in for the generators
    # before it, which failed: not the image the URL asks for, only something to show.
    stand_in: bool = False

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
        sizes: dict[tuple[int, int], tuple[int, int]] | None
        sizes = getattr(self.generator, "native_sizes", None)
        return sizes or NATIVE_SIZES

    @property
    def timeout(self) -> float | None:
        return self.limits.timeout_s or None

    def describe(self) -> dict[str, Any]:
        return describe(
            self.generator,
            self.stats,
            self.limits,
            native_ratios=list(self.native_sizes),
            circuit=self.breaker.current(),
            queued=self.governor.limiter.queued,
        )


class Chain:
    def __init__(
        self,
        generators: list[Generator],
        limits: Mapping[str, Limits] | None = None,
        *,
        refusal_fallback: bool = False,
        max_pixels: int = MAX_PIXELS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not generators:
            raise ValueError("the generator chain is empty")
        self.slots = [Slot(g, limits_for(g.id, limits)) for g in generators]
        self.refusal_fallback = refusal_fallback
        self.max_pixels = max_pixels
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

    def candidates(
        self, only: str = "", among: Sequence[str] | None = None, *, references: bool = False
    ) -> list[str]:
        """The ids a request may be answered by, in the order they are tried: the chain's,
        or `among`'s (a project's subset of it); `only` pins one of them. With `references`,
        only the generators that take reference images."""
        known = {s.id: s.generator for s in self.slots}
        order = self.ids if among is None else [g for g in among if g in known]
        return [
            g
            for g in order
            if (not only or g == only) and (not references or takes_references(known[g]))
        ]

    def price(self, generator_id: str) -> float:
        """What one image of `generator_id` costs, in USD."""
        for slot in self.slots:
            if slot.id == generator_id:
                return slot.limits.usd_per_image
        return 0.0

    async def generate(
        self,
        request: GenerationRequest,
        only: str = "",
        among: Sequence[str] | None = None,
        *,
        stand_in: bool = True,
    ) -> ChainResult:
        """The first usable answer of the candidates. Without `stand_in`, a placeholder
        generator behind others is not asked: their failure is the answer."""
        attempted: list[str] = []
        errors: list[str] = []
        timings: dict[str, float] = {}
        refused: Refused | None = None
        by_id = {s.id: s for s in self.slots}
        slots = [
            by_id[g] for g in self.candidates(only, among, references=bool(request.references))
        ]
        if not stand_in:
            slots = [s for i, s in enumerate(slots) if i == 0 or not _placeholder(s.generator)]
        if not slots:
            raise AllGeneratorsFailed([], [f"no generator named {only!r} in the chain"])
        for slot in slots:
            started = time.perf_counter()
            own_ratio, own_size = native_for(request.ratio, slot.native_sizes)
            sized = dataclasses.replace(request, ratio=own_ratio, size=own_size)
            try:
                image = await self._try(slot, sized, attempted)
            except _Skip as exc:
                slot.stats.skipped += 1
                errors.append(f"{slot.id}: {exc}")
                continue
            except Refused as exc:
                timings[slot.id] = _ms_since(started)
                if not self.refusal_fallback:
                    raise
                refused = exc
                errors.append(str(exc))
                continue
            except GenerationError as exc:
                timings[slot.id] = _ms_since(started)
                errors.append(str(exc))
                log.warning("generator %s failed: %s", slot.id, exc)
                continue
            timings[slot.id] = _ms_since(started)
            behind = slot is not slots[0] and _placeholder(slot.generator)
            return ChainResult(image, tuple(attempted), timings, own_ratio, behind)
        if refused is not None:  # a refusal says more than the failures that followed it
            raise refused
        raise AllGeneratorsFailed(attempted, errors)

    async def _try(
        self, slot: Slot, request: GenerationRequest, attempted: list[str]
    ) -> GeneratedImage:
        lim = slot.limits
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
                image = await self._call(slot, request)
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
                delay = backoff(lim, attempt, exc.retry_after)
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

    async def _call(self, slot: Slot, request: GenerationRequest) -> GeneratedImage:
        gen = slot.generator
        async with slot.governor.slot() as waited_ms:
            slot.stats.wait_ms.append(waited_ms)
            slot.stats.calls += 1
            slot.stats.in_flight += 1
            started = time.perf_counter()
            try:
                image = await asyncio.wait_for(gen.generate(request), slot.timeout)
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
        # Outside the slot: the check does not hold the provider's capacity.
        try:
            check(image, self.max_pixels)
        except Exception as exc:
            raise GenerationError(gen.id, f"answer is not a usable image: {exc}") from exc
        return image


def backoff(lim: Limits, attempt: int, retry_after: float | None) -> float:
    """The wait before retry `attempt + 1`: the provider's own, or exponential with jitter."""
    if retry_after is not None and retry_after > 0:
        return retry_after + random.uniform(0, min(1.0, lim.backoff_s))
    ceiling = min(lim.max_backoff_s, lim.backoff_s * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in step


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def takes_references(generator: Generator) -> bool:
    """Whether the generator sends reference images with the prompt (Gemini's image parts)."""
    return bool(getattr(generator, "takes_references", False))


def _placeholder(generator: Generator) -> bool:
    """A generator that only draws placeholders (`local`): real only when it comes first."""
    return bool(getattr(generator, "placeholder", False))
