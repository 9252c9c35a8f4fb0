"""Assembles the storage side from configuration: store (+ spool), index, leases."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .filestore import FileStore
from .index import IndexWriter
from .leases import FileLeases, Leases
from .postgres import PgLeases, Postgres
from .s3store import S3Store
from .spool import SpooledStore
from .sqliteindex import SQLiteIndex
from .store import Store
from .storeurl import store_path


@dataclass(slots=True)
class Backends:
    store: Store
    index: IndexWriter
    leases: Leases
    spool: SpooledStore | None
    # Whether a read asks the index first: with a remote store (a request each time) and a
    # database index (one query for many reads at once).
    lookup_index: bool = False

    async def start(self) -> None:
        if self.spool is not None:
            await self.spool.start()
        await self.index.start()

    async def close(self) -> None:
        await self.index.close()
        await self.store.close()
        if isinstance(self.leases, PgLeases):
            await self.leases.close()


def open_store(url: str) -> Store:
    """`file:///path` (or a bare path) for the file store, `s3://bucket/prefix` for S3."""
    path = store_path(url)
    return S3Store.from_url(url) if path is None else FileStore(path)


def build_backends(store_url: str, database_url: str, spool_dir: str) -> Backends:
    store = open_store(store_url)
    spool: SpooledStore | None = None
    local_root: Path
    if isinstance(store, FileStore):
        local_root = store.root
    else:
        local_root = Path(spool_dir).expanduser().resolve()
        spool = SpooledStore(store, FileStore(local_root))
        store = spool
    database = Postgres(database_url) if database_url else None
    if database is not None:
        index = IndexWriter(database, lookup=database.has_original)
        leases: Leases = PgLeases(database)
    else:
        index = IndexWriter(SQLiteIndex(local_root / "index.sqlite3"))
        leases = FileLeases(local_root)
    return Backends(store, index, leases, spool, spool is not None and database is not None)
