"""The generator interface: a request in, image bytes and provenance out."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    key: str  # the original's content key (deterministic generators seed from it)
    prompt: str  # what is sent to the generator, after prompt work
    ratio: tuple[int, int]  # one of the native ratios
    size: tuple[int, int]  # the native size of that ratio
    negative: str = ""
    seed: int = 0
    style: str = ""
    references: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    data: bytes
    content_type: str
    generator: str
    model: str
    details: dict[str, object] = field(default_factory=dict)


class GenerationError(Exception):
    """A generator failed; `retryable` says whether another try could succeed."""

    def __init__(
        self,
        generator: str,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{generator}: {message}")
        self.generator = generator
        self.retryable = retryable
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it said


class Refused(GenerationError):
    """The generator declined the prompt (safety); not an outage."""

    def __init__(self, generator: str, message: str) -> None:
        super().__init__(generator, message, retryable=False)


class AllGeneratorsFailed(Exception):
    def __init__(self, attempted: list[str], errors: list[str]) -> None:
        super().__init__("; ".join(errors) or "no generator could answer")
        self.attempted = attempted
        self.errors = errors


class Generator(Protocol):
    """`kind`, `model` and `native_sizes` (ratio -> size) are optional: the chain reads them
    with defaults (the generator's id, "", and Gemini's ten ratios)."""

    id: str

    async def generate(self, request: GenerationRequest) -> GeneratedImage: ...


def sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:12] in (b"ftypavif", b"ftypheic"):
        return "image/avif"
    return "application/octet-stream"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms`, or `Retry-After` in seconds or as an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
