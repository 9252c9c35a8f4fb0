"""The semantic cache: prompt embeddings per project and aspect ratio, searched by cosine.

Two thresholds, as in the Image Builder v2 API: `REUSE_THRESHOLD` (0.85) lets a project that
opts in reuse a near-identical earlier image before paying for a generation;
`SIMILAR_THRESHOLD` (0.70) serves a related image (`X-Cache-Status: SIMILAR`) once every
generator has failed. Embeddings are computed on one dedicated thread, never on the event
loop; the index itself lives in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from promptpix.transforms.threads import lower_priority

from .embedding import DIMENSIONS, Matrix, MiniLM

log = logging.getLogger("promptpix.semantic")

REUSE_THRESHOLD = 0.85  # before generating, for projects that opt in
SIMILAR_THRESHOLD = 0.70  # after every generator failed
MAX_PER_SCOPE = 50_000  # entries kept per project and ratio; the oldest go first

Ratio = tuple[int, int] | str


def ratio_label(ratio: Ratio) -> str:
    """`(16, 9)` and `"16:9"` both become `"16:9"`."""
    if isinstance(ratio, str):
        w, _, h = ratio.partition(":")
        return f"{int(w)}:{int(h)}"
    return f"{int(ratio[0])}:{int(ratio[1])}"


def to_bytes(vector: Matrix) -> bytes:
    """An embedding as little-endian float32 bytes (1,536 bytes for 384 dimensions)."""
    return np.asarray(vector, dtype="<f4").reshape(-1).tobytes()


def from_bytes(data: bytes, dimensions: int = DIMENSIONS) -> Matrix:
    if len(data) != dimensions * 4:
        raise ValueError(f"an embedding of {dimensions} float32 is {dimensions * 4} bytes")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _unit(vector: Matrix) -> Matrix:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class SemanticMatch(NamedTuple):
    key: str  # the matching original's content key
    similarity: float


class _Scope:
    """The entries of one project and ratio: a row-per-entry matrix with spare capacity."""

    def __init__(self, dimensions: int, limit: int) -> None:
        self.dimensions = dimensions
        self.limit = limit
        self.matrix = np.zeros((16, dimensions), dtype=np.float32)
        self.keys: list[str] = []
        self.prompts: list[str] = []
        self.rows: dict[str, int] = {}

    def add(self, key: str, prompt: str, vector: Matrix) -> None:
        row = self.rows.get(key)
        if row is not None:  # same original again: refresh it in place
            self.matrix[row] = vector
            self.prompts[row] = prompt
            return
        if len(self.keys) >= self.limit:
            self._drop_oldest(max(1, self.limit // 10))
        n = len(self.keys)
        if n == len(self.matrix):
            grown = np.zeros((n * 2, self.dimensions), dtype=np.float32)
            grown[:n] = self.matrix
            self.matrix = grown
        self.matrix[n] = vector
        self.keys.append(key)
        self.prompts.append(prompt)
        self.rows[key] = n

    def _drop_oldest(self, count: int) -> None:
        n = len(self.keys)
        self.matrix[: n - count] = self.matrix[count:n].copy()
        del self.keys[:count], self.prompts[:count]
        self.rows = {k: i for i, k in enumerate(self.keys)}

    def best(self, vector: Matrix) -> tuple[str, float] | None:
        n = len(self.keys)
        if n == 0:
            return None
        scores = self.matrix[:n] @ vector
        i = int(np.argmax(scores))
        return self.keys[i], float(scores[i])


class SemanticIndex:
    """Prompt embeddings of stored originals, kept apart per project and aspect ratio.

    Vectors are normalised on the way in, so a dot product is the cosine similarity. A search
    is one matrix-vector product over the scope (about 1 ms per 10,000 entries), cheap enough
    for the event loop. Not thread-safe: use it from one thread (the loop).
    """

    def __init__(self, dimensions: int = DIMENSIONS, max_per_scope: int = MAX_PER_SCOPE) -> None:
        self.dimensions = dimensions
        self.max_per_scope = max_per_scope
        self._scopes: dict[tuple[str, str], _Scope] = {}

    def __len__(self) -> int:
        return sum(len(s.keys) for s in self._scopes.values())

    def add(self, key: str, prompt: str, embedding: Matrix, *, project: str, ratio: Ratio) -> None:
        vector = _unit(embedding)
        if vector.shape != (self.dimensions,):
            raise ValueError(f"expected {self.dimensions} dimensions, got {vector.shape}")
        scope_id = (project, ratio_label(ratio))
        scope = self._scopes.get(scope_id)
        if scope is None:
            scope = self._scopes[scope_id] = _Scope(self.dimensions, self.max_per_scope)
        scope.add(key, prompt, vector)

    def best_match(
        self, embedding: Matrix, project: str, ratio: Ratio, threshold: float
    ) -> SemanticMatch | None:
        """The most similar entry of this project and ratio, if it reaches `threshold`."""
        scope = self._scopes.get((project, ratio_label(ratio)))
        found = scope.best(_unit(embedding)) if scope else None
        if found is None or found[1] < threshold:
            return None
        return SemanticMatch(found[0], min(found[1], 1.0))


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> Matrix: ...


class EmbeddingBusy(RuntimeError):
    """The embedding queue is full: the caller goes on without a semantic lookup."""


@dataclass(slots=True)
class _Job:
    text: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Matrix]


def _settle(
    future: asyncio.Future[Matrix], result: Matrix | None, error: BaseException | None
) -> None:
    if future.done():  # the caller gave up (cancelled, timed out)
        return
    if error is None and result is not None:
        future.set_result(result)
    else:
        future.set_exception(error or ValueError("nothing to embed"))


BATCH = 32  # jobs embedded in one forward pass at most


def one_blas_thread() -> None:
    """numpy's BLAS on one thread, for the whole process; call it from the main thread
    (OpenBLAS's setting is global, and threadpoolctl takes it from the first thread that
    sets it). By default a forward pass spreads over every core, and its threads spin
    between matrix products: about four times the CPU, taken from the answers. The variable
    that would do this, OPENBLAS_NUM_THREADS, is read once, when numpy is first imported."""
    threadpool_limits(1, user_api="blas")


class EmbeddingService:
    """Embeds prompts on one dedicated thread behind a bounded queue.

    `await embed(text)` never blocks the event loop: it queues the work (or raises
    `EmbeddingBusy` at once when `max_pending` jobs already wait) and resumes when the thread
    is done. The model is loaded on the thread at the first job, or by `await warm()`.
    """

    def __init__(self, loader: Callable[[], Encoder] = MiniLM, max_pending: int = 64) -> None:
        self._loader = loader
        self.max_pending = max_pending
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_pending)
        self._model: Encoder | None = None
        self._load_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="promptpix-embed", daemon=True
                )
                self._thread.start()

    def _ensure_model(self) -> Encoder:
        if self._model is None:
            if self._load_error is not None:
                raise self._load_error
            started = time.perf_counter()
            try:
                self._model = self._loader()
            except Exception as exc:
                self._load_error = exc
                raise
            self.load_seconds = time.perf_counter() - started
            log.info("embedding model loaded in %.2f s", self.load_seconds)
        return self._model

    def _run(self) -> None:
        lower_priority()  # embedding is background work
        while True:
            job = self._jobs.get()
            if job is None:
                return
            # Whatever else waits goes in the same forward pass: a burst costs one batch.
            jobs, stop = [job], False
            while len(jobs) < BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            self._encode([j for j in jobs if not j.future.done()])
            if stop:
                return

    def _encode(self, jobs: list[_Job]) -> None:
        texts = [j.text for j in jobs if j.text]
        results: dict[int, Matrix] = {}
        error: BaseException | None = None
        try:
            if texts:
                rows = iter(self._ensure_model().encode(texts))
                results = {i: next(rows) for i, j in enumerate(jobs) if j.text}
        except Exception as exc:
            error = exc
        for i, job in enumerate(jobs):
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                job.loop.call_soon_threadsafe(_settle, job.future, results.get(i), error)

    async def embed(self, text: str) -> Matrix:
        """The unit-length embedding of `text` (384 float32)."""
        self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Matrix] = loop.create_future()
        try:
            self._jobs.put_nowait(_Job(text, loop, future))
        except queue.Full:
            raise EmbeddingBusy("the embedding queue is full") from None
        return await future

    async def warm(self) -> float:
        """Load the model now (on the thread); answers the load time in seconds."""
        await self.embed("warm up")
        return self.load_seconds or 0.0

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread once the queued work is done."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._jobs.put(None, timeout=timeout)
            thread.join(timeout)
