"""The file store: each original in one file, its metadata ahead of its bytes.

One file an original, written to a temporary name, synced and renamed into place: a reader
finds all of it or none. Creating a file is the costly step of a write on many disks, so
the metadata does not get a file of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .keys import is_key
from .store import StoredOriginal, StoreUnavailable

log = logging.getLogger("promptpix.store")
SUFFIX = ".original"
MAGIC = b"promptpix-original 1 "  # then the metadata's length in bytes and a newline


class Damaged(ValueError):
    """An original's file is not what `put` writes: taken as absent, made again."""


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.originals = root / "originals"

    def _dir(self, key: str) -> Path:
        if not is_key(key):
            raise ValueError("not a content key")
        return self.originals / key[:2]

    async def get(self, key: str) -> StoredOriginal | None:
        return await asyncio.to_thread(self._get, key)

    def _path(self, key: str) -> Path:
        return self._dir(key) / f"{key}{SUFFIX}"

    def _get(self, key: str) -> StoredOriginal | None:
        try:
            with open(self._path(key), "rb") as f:
                meta = _read_meta(f)
                data = f.read()
        except FileNotFoundError:
            return None
        except Damaged as exc:  # made again, then replaced
            log.warning("original %s is damaged (%s), taken as absent", key, exc)
            return None
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return StoredOriginal(key, data, meta)

    async def head(self, key: str) -> bool:
        return await asyncio.to_thread(lambda: self._path(key).is_file())

    async def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        await asyncio.to_thread(self._put, key, data, meta)

    def _put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        folder = self._dir(key)
        raw = orjson.dumps(meta)
        try:
            created = not folder.is_dir()
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(self._path(key), (MAGIC, b"%d\n" % len(raw), raw, data))
            # The rename itself survives a power cut only once its directory is synced.
            _fsync_dir(folder)
            if created:
                _fsync_dir(folder.parent)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(lambda: self._path(key).unlink(missing_ok=True))

    def keys(self) -> list[str]:
        """Every complete original's key."""
        if not self.originals.is_dir():
            return []
        found = (p.name.removesuffix(SUFFIX) for p in self.originals.glob(f"??/*{SUFFIX}"))
        return sorted(k for k in found if is_key(k))

    async def metadata(self) -> AsyncIterator[dict[str, Any]]:
        """Every original's metadata, for rebuilding the index; one whose metadata cannot
        be read is left out, with a warning."""
        for key in await asyncio.to_thread(self.keys):
            try:
                meta = await asyncio.to_thread(self._meta, key)
            except FileNotFoundError:
                continue
            except Damaged as exc:
                log.warning("original %s left out: %s", key, exc)
                continue
            meta.setdefault("key", key)
            yield meta

    def _meta(self, key: str) -> dict[str, Any]:
        with open(self._path(key), "rb") as f:
            return _read_meta(f)

    async def check(self) -> dict[str, Any]:
        def probe() -> dict[str, Any]:
            self.originals.mkdir(parents=True, exist_ok=True)
            ok = os.access(self.originals, os.W_OK)
            return {"status": "ok" if ok else "degraded", "kind": "file", "path": str(self.root)}

        try:
            return await asyncio.to_thread(probe)
        except OSError as exc:
            return {"status": "down", "kind": "file", "error": str(exc)}

    async def close(self) -> None:
        return None


def _read_meta(f: BinaryIO) -> dict[str, Any]:
    """The metadata at the head of an original's file, leaving `f` at the image's bytes."""
    line = f.readline(64)
    if not line.startswith(MAGIC) or not line.endswith(b"\n"):
        raise Damaged("not a promptpix original")
    try:
        size = int(line[len(MAGIC) : -1])
        raw = f.read(size)
        meta = orjson.loads(raw) if len(raw) == size else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise Damaged("unreadable metadata")
    image = os.fstat(f.fileno()).st_size - f.tell()
    if meta.get("bytes", image) != image:  # cut short (or grown) since it was written
        raise Damaged(f"{image} bytes of image where {meta['bytes']} were stored")
    return meta


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, parts: tuple[bytes, ...]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
