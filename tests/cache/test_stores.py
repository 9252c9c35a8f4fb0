"""The file store and the spool on local disk: damaged files and failed uploads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from promptpix.cache.filestore import FileStore
from promptpix.cache.spool import SpooledStore
from promptpix.cache.store import StoredOriginal

KEYS = [f"{i:02x}" * 32 for i in range(1, 5)]
META = {"content_type": "image/jpeg", "prompt": "p"}


def original_file(root: Path, key: str) -> Path:
    return root / "originals" / key[:2] / f"{key}.original"


def test_one_file_an_original_its_metadata_ahead_of_its_bytes(tmp_path: Path) -> None:
    async def run() -> None:
        store = FileStore(tmp_path)
        key = KEYS[0]
        await store.put(key, b"\xff\xd8first", {**META, "prompt": "line one\nline two"})
        assert [p.name for p in (tmp_path / "originals").rglob("*")] == [key[:2], f"{key}.original"]
        got = await store.get(key)
        assert got is not None and got.data == b"\xff\xd8first"
        assert got.meta == {**META, "prompt": "line one\nline two"}
        assert await store.head(key) and not await store.head(KEYS[1])
        assert await store.get(KEYS[1]) is None
        listed = [m async for m in store.metadata()]
        assert listed == [{**META, "prompt": "line one\nline two", "key": key}]
        await store.delete(key)
        assert await store.get(key) is None and not await store.head(key)

    asyncio.run(run())


def test_damaged_originals_are_taken_as_absent_and_replaced(tmp_path: Path) -> None:
    async def run() -> None:
        store = FileStore(tmp_path)
        key = KEYS[0]
        await store.put(key, b"\xff\xd8first", META)
        await store.put(KEYS[1], b"\xff\xd8other", META)
        good = original_file(tmp_path, key).read_bytes()
        damages = (
            b"",  # a file cut off before its header
            b"\xff\xd8\xff\xe0 a bare image",
            good[:30],  # cut off inside the metadata
            b"promptpix-original 1 x\n{}",
            b"promptpix-original 1 6\n[1, 2]\xff\xd8",
            b"promptpix-original 1 9\n{not json\xff\xd8",
        )
        meta = orjson.dumps({**META, "bytes": 7})
        damages += (b"promptpix-original 1 %d\n%s\xff\xd8cut" % (len(meta), meta),)
        for damage in damages:
            original_file(tmp_path, key).write_bytes(damage)
            assert await store.get(key) is None, damage  # made again, not failing every request
            listed = [m async for m in store.metadata()]  # a rebuild leaves it out, goes on
            assert [m["key"] for m in listed] == [KEYS[1]]
        await store.put(key, b"\xff\xd8again", META)
        got = await store.get(key)
        assert got is not None and got.data == b"\xff\xd8again"

    asyncio.run(run())


class Picky(FileStore):
    """A primary store that cannot take one original (a bug, a refused object)."""

    def __init__(self, root: Path, refuse: str) -> None:
        super().__init__(root)
        self.refuse = refuse
        self.puts: list[str] = []

    async def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        self.puts.append(key)
        if key == self.refuse:
            raise RuntimeError("refused")
        await super().put(key, data, meta)


def test_the_spool_uploads_the_rest_when_one_original_cannot_go(tmp_path: Path) -> None:
    async def run() -> None:
        spool = FileStore(tmp_path / "spool")
        for key in KEYS:
            await spool.put(key, b"\xff\xd8" + key.encode(), META)
        damaged = KEYS[1]  # an unreadable spooled file is dropped, not retried for ever
        original_file(tmp_path / "spool", damaged).write_bytes(b"{")
        primary = Picky(tmp_path / "primary", refuse=KEYS[0])
        store = SpooledStore(primary, spool, retry_base_s=0.05, retry_max_s=0.2)
        await store.start()
        assert store.pending == set(KEYS)
        for _ in range(500):  # up to 10 s
            if store.pending == {KEYS[0]}:
                break
            await asyncio.sleep(0.02)
        assert store.pending == {KEYS[0]}  # kept, the others went through
        for key in KEYS[2:]:
            got = await primary.get(key)
            assert isinstance(got, StoredOriginal) and got.data == b"\xff\xd8" + key.encode()
        assert await primary.get(damaged) is None
        ready = await store.check()
        assert ready["status"] == "degraded" and ready["spooled"] == 1
        assert "refused" in ready["upload_error"]
        # The original the store refused is still served, and tried again with a backoff.
        held = await store.get(KEYS[0])
        assert held is not None and held.data == b"\xff\xd8" + KEYS[0].encode()
        await asyncio.sleep(0.5)
        tries = primary.puts.count(KEYS[0])
        assert 2 <= tries <= 20, tries  # backoff, not a loop (that would be hundreds)
        primary.refuse = ""
        assert await store.flush(timeout=5)
        assert (await primary.get(KEYS[0])) is not None
        ready = await store.check()
        assert ready["status"] == "ok" and ready["spooled"] == 0 and "upload_error" not in ready
        await store.close()

    asyncio.run(run())
