"""The semantic cache in the live path: every stored prompt embedded per project and ratio.

Embeddings are computed on the embedding thread after the original is stored (the answer
does not wait for them) and appended to a sidecar file, one JSON line per original, so a
restart, and every other worker reading the same file, finds them again. Lookups embed the
asked prompt on the same thread and search the in-memory index.

Configuration (all optional):
- `PROMPTPIX_SEMANTIC`: `on` (default) or `off`.
- `PROMPTPIX_SEMANTIC_DIR`: where the sidecar lives; default `semantic/` under the file
  store's root, or `./promptpix-semantic` with another store.
- `PROMPTPIX_SEMANTIC_REUSE`: `1` lets the demo project serve matches of cosine ≥ 0.85
  before generating.
- `PROMPTPIX_SEMANTIC_MAX_AGE`: the `max-age` of a `SIMILAR` answer (default 300 s).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from generators.embedding import Matrix
from generators.semantic import (
    EmbeddingService,
    SemanticIndex,
    SemanticMatch,
    from_bytes,
    ratio_label,
    to_bytes,
)

log = logging.getLogger("promptpix.similar")

SIDECAR = "prompts.jsonl"
QUERY_CACHE = 512  # recent lookups' embeddings kept, so a repeated miss is not embedded again
REMEMBER_AT_ONCE = 32  # stored prompts queued for embedding at once: lookups keep room


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    enabled: bool = True
    directory: str = "./promptpix-semantic"
    demo_reuse: bool = False
    max_age_s: int = 300

    @property
    def cache_control(self) -> str:
        return f"public, max-age={self.max_age_s}"

    @classmethod
    def from_env(cls, store_url: str, env: Mapping[str, str] | None = None) -> SemanticSettings:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(f"PROMPTPIX_SEMANTIC{name}", "").strip()

        directory = get("_DIR") or _default_dir(store_url)
        raw_age = get("_MAX_AGE") or "300"
        if not raw_age.isdigit():
            raise ValueError("PROMPTPIX_SEMANTIC_MAX_AGE must be a whole number of seconds")
        return cls(
            enabled=get("").lower() not in ("off", "0", "false", "no"),
            directory=directory,
            demo_reuse=get("_REUSE").lower() in ("1", "on", "true", "yes"),
            max_age_s=int(raw_age),
        )


def _default_dir(store_url: str) -> str:
    parts = urlsplit(store_url)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost"):
            path = parts.netloc + path
        return str(Path(path) / "semantic")
    if parts.scheme == "":
        return str(Path(store_url) / "semantic")
    return "./promptpix-semantic"


class SemanticCache:
    """The index, its sidecar file and the embedding thread, used from the event loop."""

    def __init__(self, directory: Path, service: EmbeddingService | None = None) -> None:
        self.path = directory / SIDECAR
        self.service = service or EmbeddingService()
        self.index = SemanticIndex()
        self._offset = 0  # how much of the sidecar the index has read
        self._reading: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._queries: OrderedDict[str, Matrix] = OrderedDict()
        self._remembering: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._reading = asyncio.Lock()
        self._remembering = self._remember_slots()
        await self.catch_up()
        # The model loads on the first embedding, not here: a worker that only serves
        # stored images never pays its memory.
        log.info("semantic index: %d prompts from %s", len(self.index), self.path)

    def _remember_slots(self) -> asyncio.Semaphore:
        """Half the embedding queue at most: lookups always find room."""
        return asyncio.Semaphore(max(1, min(REMEMBER_AT_ONCE, self.service.max_pending // 2)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def catch_up(self) -> None:
        """Read what was appended to the sidecar since last time (by us or other workers)."""
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:
            if _size(self.path) == self._offset:  # nothing new: no thread hop, no read
                return
            chunk = await asyncio.to_thread(_read_from, self.path, self._offset)
            end = chunk.rfind(b"\n") + 1
            if end == 0:
                return
            self._offset += end
            for line in chunk[:end].splitlines():
                try:
                    row = orjson.loads(line)
                    self.index.add(
                        row["k"],
                        row["t"],
                        from_bytes(base64.b64decode(row["e"])),
                        project=row["p"],
                        ratio=row["r"],
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("skipping a bad semantic sidecar line: %s", exc)

    def remember(self, key: str, prompt: str, project: str, ratio: tuple[int, int]) -> None:
        """Embed and persist a stored original's prompt, in the background."""
        self._spawn(self._remember(key, prompt, project, ratio))

    async def _remember(self, key: str, prompt: str, project: str, ratio: tuple[int, int]) -> None:
        if self._remembering is None:
            self._remembering = self._remember_slots()
        # A burst of new originals waits its turn here instead of filling the embedding queue.
        async with self._remembering:
            try:
                vector = await self.service.embed(prompt)
            except Exception as exc:
                log.warning("prompt of %s not embedded: %s", key, exc)
                return
        line = orjson.dumps(
            {
                "p": project,
                "r": ratio_label(ratio),
                "k": key,
                "t": prompt,
                "e": base64.b64encode(to_bytes(vector)).decode(),
            }
        )
        try:
            await asyncio.to_thread(_append, self.path, line + b"\n")
        except OSError as exc:
            log.warning("semantic sidecar not written: %s", exc)
        # The index learns it from the file (with everything other workers wrote meanwhile).
        await self.catch_up()

    async def find(
        self, prompt: str, project: str, ratio: tuple[int, int], threshold: float
    ) -> SemanticMatch | None:
        """The stored original whose prompt is most similar, if it reaches `threshold`."""
        await self.catch_up()
        vector = self._queries.get(prompt)
        if vector is None:
            try:
                vector = await self.service.embed(prompt)
            except Exception as exc:  # busy queue, missing model: no semantic answer
                log.warning("semantic lookup skipped: %s", exc)
                return None
            self._queries[prompt] = vector
            if len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return self.index.best_match(vector, project, ratio, threshold)

    async def drain(self, timeout: float = 10.0) -> None:
        """Let pending embeddings reach the sidecar (on shutdown)."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks), timeout)

    def close(self) -> None:
        self.service.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write on an O_APPEND descriptor: lines from several workers do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def open_semantic(settings: SemanticSettings) -> SemanticCache | None:
    if not settings.enabled:
        return None
    return SemanticCache(Path(settings.directory).expanduser().resolve())
