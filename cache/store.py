"""The object-store seam: originals with their metadata, chosen by URL."""

from __future__ import annotations

import ipaddress
import re
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


# S3's rule for bucket names, which MinIO, R2 and SeaweedFS follow too.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def split_s3_url(url: str) -> tuple[str, str]:
    """The bucket and prefix of `s3://bucket/prefix`; ValueError for a bucket S3 refuses."""
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError("an s3:// store URL needs a bucket: s3://bucket/prefix")
    if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket or _is_ip(bucket):
        raise ValueError(
            f"{bucket!r} is not a valid bucket name: 3 to 63 lowercase letters, digits, "
            "dots and hyphens, starting and ending with a letter or digit"
        )
    return bucket, prefix.strip("/")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def store_path(url: str) -> Path | None:
    """The directory of a file store URL (`file:///path` or a bare path); None for S3."""
    if url.startswith("s3://"):
        split_s3_url(url)
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("", "file"):
        raise ValueError(f"unsupported store URL {url!r}: use file:///path or s3://bucket/prefix")
    path = unquote(parts.path) if parts.scheme else url
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        path = parts.netloc + path  # file://relative/dir
    return Path(path).expanduser().resolve()


def open_store(url: str) -> Store:
    """`file:///path` (or a bare path) for the file store, `s3://bucket/prefix` for S3."""
    path = store_path(url)
    if path is None:
        from .s3store import S3Store

        return S3Store.from_url(url)
    from .filestore import FileStore

    return FileStore(path)
