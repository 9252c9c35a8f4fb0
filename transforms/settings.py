"""The transform package's settings: how much libvips work runs and waits at once, and the
pixel budget every decode is checked against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

Threads = Annotated[int, msgspec.Meta(ge=0, le=256)]
Queue = Annotated[int, msgspec.Meta(ge=-1, le=100_000)]
Pixels = Annotated[int, msgspec.Meta(ge=1, le=1 << 31)]

ENV = {
    "threads": "PROMPTPIX_TRANSFORM_THREADS",
    "queue": "PROMPTPIX_TRANSFORM_QUEUE",
    "max_source_pixels": "PROMPTPIX_MAX_SOURCE_PIXELS",
}


class TransformSettings(msgspec.Struct, frozen=True, kw_only=True, rename=ENV):
    threads: Threads = 0  # images processed at once; 0: one per core
    queue: Queue = -1  # transforms that may wait; -1: 32 per thread
    max_source_pixels: Pixels = 50_000_000  # refused before any decode past this

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TransformSettings:
        values = {name: env[name].strip() for name in ENV.values() if env.get(name, "").strip()}
        return msgspec.convert(values, cls, strict=False)
