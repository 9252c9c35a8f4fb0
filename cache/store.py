"""The object-store seam: an original with its metadata, the store protocol, its errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StoredOriginal:
    key: str
    data: bytes
    meta: dict[str, Any]


class StoreUnavailable(Exception):
    """The store could not be reached; what it holds is not lost."""


class StoreUnreachable(StoreUnavailable):
    """The store did not answer at all (refused, timed out): it is down, not just failing."""


class Store(Protocol):
    async def get(self, key: str) -> StoredOriginal | None: ...

    async def head(self, key: str) -> bool:
        """Whether the original is stored, without reading it."""
        ...

    async def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None: ...

    def metadata(self) -> AsyncIterator[dict[str, Any]]:
        """Every original's metadata, for rebuilding the index."""
        ...

    async def check(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...
