"""The memory tier: an LRU bounded by bytes, not by entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import LRUCache

V = TypeVar("V")


class MemoryTier(Generic[V]):
    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._lru: LRUCache[str, V] | None = (
            LRUCache(maxsize=max_bytes, getsizeof=size_of) if max_bytes > 0 else None
        )

    def get(self, key: str) -> V | None:
        return self._lru.get(key) if self._lru is not None else None

    def put(self, key: str, value: V) -> None:
        if self._lru is None or self._size_of(value) > self.max_bytes:
            return
        self._lru[key] = value

    def __len__(self) -> int:
        return len(self._lru) if self._lru is not None else 0

    @property
    def bytes_used(self) -> int:
        return int(self._lru.currsize) if self._lru is not None else 0
