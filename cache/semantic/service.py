"""The embedding thread: prompts embedded one batch at a time, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from threadpoolctl import threadpool_limits

from promptpix.transforms.threads import lower_priority

from .embedding import Matrix, MiniLM

log = logging.getLogger("promptpix.semantic")


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> Matrix: ...


class EmbeddingBusy(RuntimeError):
    """The embedding queue is full: the caller goes on without a semantic lookup."""


@dataclass(slots=True)
class _Job:
    text: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Matrix]


def _settle(future: asyncio.Future[Matrix], outcome: Matrix | BaseException) -> None:
    if future.done():  # the caller gave up (cancelled, timed out)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


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
            outcome = error or results.get(i)
            if outcome is None:
                outcome = ValueError("nothing to embed")
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                job.loop.call_soon_threadsafe(_settle, job.future, outcome)

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
