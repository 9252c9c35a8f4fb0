"""The object-store seam: originals with their metadata, chosen by URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit


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


def open_store(url: str) -> Store:
    """`file:///path` (or a bare path) for the file store, `s3://bucket/prefix` for S3."""
    if url.startswith("s3://"):
        from .s3store import S3Store

        return S3Store.from_url(url)
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        from .filestore import FileStore

        path = unquote(parts.path) if parts.scheme else url
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            path = parts.netloc + path  # file://relative/dir
        return FileStore(Path(path).expanduser().resolve())
    raise ValueError(f"unsupported store URL {url!r}: use file:///path or s3://bucket/prefix")
