"""The embedded database: one SQLite file a machine, shared by its workers, migrated at open.

WAL lets the workers' readers and their one writer at a time go on together. Each process
keeps one connection, on one thread of its own, and the event loop hands it work: a query
never runs on the loop, and the connection is never shared between threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .schema import MIGRATIONS, Migration, pending

log = logging.getLogger("promptpix.sqlite")
T = TypeVar("T")


class SQLiteDatabase:
    """The file at `path`, opened (and migrated) on its thread at the first `run`."""

    kind = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = path
        self.migrations = migrations
        self.busy_timeout_s = busy_timeout_s  # how long a write waits for another's lock
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the database's thread."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="promptpix-sqlite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(self._connect()))

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions, each one is begun explicitly.
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            try:
                write_ahead(db, self.busy_timeout_s)
                db.execute("PRAGMA synchronous=NORMAL")
                migrate(db, self.migrations)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    async def start(self) -> None:
        await self.run(lambda db: None)

    async def check(self) -> dict[str, Any]:
        try:
            await self.run(lambda db: db.execute("SELECT 1").fetchone())
        except (sqlite3.Error, OSError) as exc:  # readiness reports a failure, never raises
            return {"status": "down", "kind": self.kind, "error": str(exc)}
        return {"status": "ok", "kind": self.kind, "path": str(self.path)}

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(thread, shut)
        thread.shutdown()


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, mode: str = "DEFERRED") -> Iterator[None]:
    """BEGIN (DEFERRED, IMMEDIATE: the write lock at once) ... COMMIT, or ROLLBACK."""
    db.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def write_ahead(db: sqlite3.Connection, timeout_s: float) -> None:
    """WAL mode, shared by every connection once one has set it. Switching a new database
    to it takes an exclusive lock that SQLite may refuse at once, without waiting out the
    busy timeout, when several processes open the file together: try again until then."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Apply what `schema_migrations` does not list yet, a version a transaction. Each holds
    the write lock from reading the versions to recording its own, so workers that open
    the file together take turns: the second finds the versions applied."""
    while True:
        with transaction(db, "IMMEDIATE"):
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            todo = pending(done, migrations)
            if not todo:
                return
            migration = todo[0]
            for statement in statements(migration.sqlite):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (migration.version, time.time()),
            )
        log.info("applied migration %d", migration.version)


def statements(script: str) -> list[str]:
    """A script's statements one by one (`execute` takes one; `executescript` would commit
    the transaction the migration runs in)."""
    found, part = [], ""
    for piece in script.split(";"):
        part += piece + ";"
        if sqlite3.complete_statement(part):  # not a `;` inside a string or a trigger
            if part.strip(" \t\n;"):
                found.append(part.strip())
            part = ""
    if part.strip(" \t\n;"):
        found.append(part.strip())  # incomplete: sqlite says what is wrong with it
    return found
