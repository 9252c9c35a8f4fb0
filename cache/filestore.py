"""The file store: each original beside its metadata, written atomically."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from .keys import is_key
from .store import StoredOriginal, StoreUnavailable

log = logging.getLogger("promptpix.store")
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/avif": ".avif",
}


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

    def _get(self, key: str) -> StoredOriginal | None:
        folder = self._dir(key)
        try:
            meta = _parsed((folder / f"{key}.json").read_bytes())
            if meta is None:  # damaged: made again, then replaced
                log.warning("original %s has unreadable metadata, taken as absent", key)
                return None
            data = (folder / meta["file"]).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return StoredOriginal(key, data, meta)

    async def head(self, key: str) -> bool:
        return await asyncio.to_thread((self._dir(key) / f"{key}.json").is_file)

    async def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        await asyncio.to_thread(self._put, key, data, meta)

    def _put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        folder = self._dir(key)
        ext = EXTENSIONS.get(meta.get("content_type", ""), "") or (
            mimetypes.guess_extension(meta.get("content_type", "")) or ".bin"
        )
        name = f"{key}{ext}"
        try:
            created = not folder.is_dir()
            folder.mkdir(parents=True, exist_ok=True)
            # The image first, then the metadata that names it: a reader finds both or neither.
            _atomic_write(folder / name, data)
            _atomic_write(folder / f"{key}.json", orjson.dumps({**meta, "file": name}))
            # The renames themselves survive a power cut only once their directory is synced.
            _fsync_dir(folder)
            if created:
                _fsync_dir(folder.parent)
        except OSError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def delete(self, key: str) -> None:
        def remove() -> None:
            folder = self._dir(key)
            meta_path = folder / f"{key}.json"
            try:
                name = orjson.loads(meta_path.read_bytes())["file"]
            except FileNotFoundError:
                return
            meta_path.unlink(missing_ok=True)  # the metadata first: a reader sees neither
            (folder / name).unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    def keys(self) -> list[str]:
        """Every complete original's key (those whose metadata was written)."""
        if not self.originals.is_dir():
            return []
        return sorted(p.stem for p in self.originals.glob("??/*.json") if is_key(p.stem))

    async def metadata(self) -> AsyncIterator[dict[str, Any]]:
        """Every original's metadata, for rebuilding the index; one whose metadata cannot
        be read is left out, with a warning."""
        for key in await asyncio.to_thread(self.keys):
            try:
                raw = await asyncio.to_thread((self._dir(key) / f"{key}.json").read_bytes)
            except FileNotFoundError:
                continue
            meta = _parsed(raw)
            if meta is None:
                log.warning("original %s left out: unreadable metadata", key)
                continue
            meta.setdefault("key", key)
            yield meta

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


def _parsed(raw: bytes) -> dict[str, Any] | None:
    """An original's metadata, or None if it is not what `put` writes (damaged)."""
    try:
        meta = orjson.loads(raw)
    except ValueError:
        return None
    name = meta.get("file") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        return None  # the image is a file beside it, never a path elsewhere
    return meta


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
