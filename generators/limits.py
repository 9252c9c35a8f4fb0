"""How the chain treats each generator: its queue, rate, retries, timeout and breaker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=86_400)]


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """One generator's limits; `PROMPTPIX_{ID}_{FIELD}` sets each field (see settings)."""

    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 4  # calls in flight at once
    rpm: Count = 0  # calls started per minute (0: no limit)
    retries: Count = 2  # further tries after the first, on transient failures
    timeout_s: Seconds = 120.0  # one call (0: no limit)
    backoff_s: Seconds = 1.0  # first backoff; doubles per try, with jitter
    max_backoff_s: Seconds = 20.0
    max_retry_wait_s: Seconds = 30.0  # a provider asking for a longer wait is skipped instead
    breaker_failures: Count = 5  # consecutive failures that open the circuit (0: never)
    breaker_cooldown_s: Seconds = 30.0  # open -> half-open
    max_queue: Count = 1000  # callers waiting for a slot; past that, the next generator
    usd_per_image: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 0.0  # what one image costs


# Defaults that fit each provider's usual quotas, and their published prices per image
# (gemini-2.5-flash-image $0.039; Imagen 4 $0.04; gpt-image-1 at medium quality, 1024 px,
# $0.042; a ComfyUI server of one's own, nothing); the environment overrides them.
DEFAULT_LIMITS: dict[str, Limits] = {
    "gemini": Limits(concurrency=4, rpm=60, usd_per_image=0.039),
    "imagen": Limits(concurrency=4, rpm=60, usd_per_image=0.04),
    "openai": Limits(concurrency=4, rpm=30, timeout_s=180.0, usd_per_image=0.042),
    "comfyui": Limits(concurrency=1, rpm=0, timeout_s=300.0, retries=1),
    # `local` is not a provider: no queue, no timeout, no breaker unless configured.
    "local": Limits(
        concurrency=100_000, retries=0, timeout_s=0, breaker_failures=0, max_queue=100_000
    ),
}


def limits_for(generator_id: str, overrides: Mapping[str, Limits] | None = None) -> Limits:
    """The limits a generator runs with: its override, else its default, else the base."""
    found = (overrides or {}).get(generator_id) or DEFAULT_LIMITS.get(generator_id)
    return found or Limits()
