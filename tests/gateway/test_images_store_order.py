"""A new original's store write runs while its first variant is made, but nothing is
answered, and no other process may generate the key, before the write is done."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from promptpix.cache.control import Project
from promptpix.cache.filestore import FileStore
from promptpix.cache.index import IndexWriter
from promptpix.cache.keys import variant_key
from promptpix.cache.leases import FileLeases
from promptpix.cache.sqlite import SQLiteDatabase
from promptpix.cache.sqliteindex import SQLiteIndex
from promptpix.gateway.generation import Generation
from promptpix.gateway.images import Images
from promptpix.gateway.metrics import Metrics
from promptpix.gateway.originals import Originals
from promptpix.gateway.params import ParseRules, parse
from promptpix.gateway.rendering import Renderer
from promptpix.gateway.tiers import Tiers
from promptpix.generators.registry import build_chain
from promptpix.generators.settings import GeneratorSettings
from promptpix.transforms.executor import TransformPool
from promptpix.transforms.vips import configure

configure()
PUT_DELAY_S = 0.4


class SlowStore(FileStore):
    """A real file store whose writes take a while, and say when they ended."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.put_started = asyncio.Event()
        self.put_done_at: float | None = None

    async def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        self.put_started.set()
        await asyncio.sleep(PUT_DELAY_S)
        await super().put(key, data, meta)
        self.put_done_at = time.monotonic()


def service(root: Path, store: FileStore) -> Images:
    """The image pipeline as the gateway assembles it, on a store of the test's own."""
    tiers, metrics, pool = Tiers(64 << 20, 64 << 20), Metrics(), TransformPool(2)
    index = IndexWriter(SQLiteIndex(SQLiteDatabase(root / "index.sqlite3")))
    generation = Generation(
        build_chain(GeneratorSettings()), pool, metrics, index, max_source_pixels=50_000_000
    )
    originals = Originals(
        tiers,
        store,
        index,
        FileLeases(root),
        generation,
        metrics,
        max_source_pixels=50_000_000,
    )
    renderer = Renderer(tiers, pool, metrics, max_dimension=4096, max_source_pixels=50_000_000)
    return Images(tiers, originals, renderer, index, pool, generation_timeout_s=30)


def request(query: bytes) -> Any:
    return parse(query, Project("demo"), ParseRules())


def test_answers_wait_for_the_store_write_and_the_lease_covers_it(tmp_path: Path) -> None:
    async def run() -> None:
        store = SlowStore(tmp_path)
        images = service(tmp_path, store)
        await images.index.start()
        first = request(b"prompt=a+slow+disk&w=256&fmt=jpeg")
        other = request(b"prompt=a+slow+disk&w=100&fmt=png")  # the same original
        key = first.gen.key
        assert other.gen.key == key
        task = asyncio.create_task(
            images.variant(first.gen, first.transform, variant_key(key, first.transform))
        )
        await store.put_started.wait()
        # While the original is being written: another process cannot take its lease...
        assert await FileLeases(tmp_path).try_acquire(key) is None
        # ...and another variant of it, answered from the original in memory, waits too.
        second = asyncio.create_task(
            images.variant(other.gen, other.transform, variant_key(key, other.transform))
        )
        (variant, status), (variant2, status2) = await asyncio.gather(task, second)
        answered_at = time.monotonic()
        assert store.put_done_at is not None and answered_at >= store.put_done_at
        assert status == "MISS" and variant.width == 256
        assert status2 in ("MISS", "TRANSFORM") and variant2.width == 100
        assert "store" in variant.timings and variant.timings["store"] >= PUT_DELAY_S * 1000
        assert await store.head(key)
        lease = await FileLeases(tmp_path).try_acquire(key)
        assert lease is not None  # released once stored
        await lease.release()
        await images.drain()
        await images.index.close()
        images.pool.close()
        await images.originals.generation.chain.close()

    asyncio.run(run())
