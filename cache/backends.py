"""Assembles the storage side from the settings: store (+ spool), database, index, leases,
the control plane's store and the API's library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .control import ControlStore
from .filestore import FileStore
from .index import IndexWriter
from .leases import FileLeases, Leases
from .library import Library
from .pgcontrol import PgControlStore
from .pgindex import PgIndex
from .pgleases import PgLeases
from .postgres import Postgres
from .s3store import S3Store
from .settings import CacheSettings
from .spool import SpooledStore
from .sqlite import SQLiteDatabase
from .sqlitecontrol import SQLiteControlStore
from .sqliteindex import SQLiteIndex
from .sqllibrary import PgLibrary, SQLiteLibrary
from .store import Store
from .storeurl import split_s3_url

EMBEDDED_DATABASE = "index.sqlite3"  # beside the file store, or in the spool directory


@dataclass(slots=True)
class Backends:
    store: Store
    # PostgreSQL with a database URL, else the embedded SQLite file: the index's rows, and
    # every table to come, live there.
    database: Postgres | SQLiteDatabase
    index: IndexWriter
    leases: Leases
    spool: SpooledStore | None
    # Projects, keys, secrets and the counters of their limits, in the same database.
    control: ControlStore
    # The JSON API's assets, generations and flows, in the same database.
    library: Library
    # Whether a read asks the index first: with a remote store (a request each time) and a
    # database index (one query for many reads at once).
    lookup_index: bool = False

    async def start(self) -> None:
        if self.spool is not None:
            await self.spool.start()
        await self.index.start()
        await self.library.start()

    async def close(self) -> None:
        await self.index.close()
        await self.control.close()
        await self.library.close()
        await self.store.close()
        if isinstance(self.leases, PgLeases):
            await self.leases.close()
        await self.database.close()


def open_store(settings: CacheSettings) -> Store:
    """`file:///path` (or a bare path) for the file store, `s3://bucket/prefix` for S3."""
    root = settings.store_root
    if root is not None:
        return FileStore(root)
    bucket, prefix = split_s3_url(settings.store)
    s3 = settings.s3
    return S3Store(
        bucket,
        prefix,
        endpoint=s3.endpoint or None,
        region=s3.region or None,
        access_key=s3.access_key or None,
        secret_key=s3.secret_key or None,
    )


def build_backends(settings: CacheSettings) -> Backends:
    store = open_store(settings)
    spool: SpooledStore | None = None
    local_root: Path
    if isinstance(store, FileStore):
        local_root = store.root
    else:
        local_root = Path(settings.spool_dir).expanduser().resolve()
        spool = SpooledStore(store, FileStore(local_root))
        store = spool
    if settings.database_url:
        database = Postgres(settings.database_url)
        rows = PgIndex(database)
        index = IndexWriter(rows, lookup=rows.has_original)
        leases: Leases = PgLeases(database)
        control: ControlStore = PgControlStore(database)
        library: Library = PgLibrary(database)
        return Backends(
            store,
            database,
            index,
            leases,
            spool,
            control,
            library,
            lookup_index=spool is not None,
        )
    embedded = SQLiteDatabase(local_root / EMBEDDED_DATABASE)
    index = IndexWriter(SQLiteIndex(embedded))
    control = SQLiteControlStore(embedded)
    library = SQLiteLibrary(embedded)
    return Backends(store, embedded, index, FileLeases(local_root), spool, control, library)
