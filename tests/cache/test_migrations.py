"""Versioned migrations: one ordered list, applied once per database by PostgreSQL's runner
(real server) and SQLite's, even when replicas or workers start at the same moment."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from promptpix.cache import sqlite
from promptpix.cache.index import original_row
from promptpix.cache.pgindex import PgIndex
from promptpix.cache.postgres import Postgres
from promptpix.cache.schema import MIGRATIONS, Migration, pending
from promptpix.cache.sqlite import SQLiteDatabase, statements
from promptpix.cache.sqliteindex import SQLiteIndex
from tests.services import PostgreSQL

pytestmark = pytest.mark.timeout(120)

PAUSE_S = 0.3
# A second version that takes a while and leaves one row each time it runs: run twice, it
# leaves two rows (or fails on its CREATE TABLE).
HERE = [m.version for m in MIGRATIONS]  # the versions the schema has now: 1, 2, ...
NEXT = len(MIGRATIONS) + 1
SLOW = Migration(
    NEXT,
    postgres=f"CREATE TABLE applied (n integer); SELECT pg_sleep({PAUSE_S}); "
    "INSERT INTO applied VALUES (2);",
    sqlite="CREATE TABLE applied (n INTEGER); INSERT INTO applied (n) SELECT 2 + pause();",
)
TWO = (*MIGRATIONS, SLOW)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    server = PostgreSQL(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.remove()


async def fresh_db(postgres: PostgreSQL) -> str:
    name = "m" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return postgres.dsn.rsplit("/", 1)[0] + "/" + name


def test_the_list_runs_1_2_3() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert [m.version for m in pending({1}, TWO)] == [*HERE[1:], NEXT]
    assert pending({*HERE, NEXT}, TWO) == []
    gap = Migration(NEXT + 1, postgres="", sqlite="")
    with pytest.raises(ValueError, match="1, 2, 3"):
        pending(set(), (*MIGRATIONS, gap))


def test_postgres_replicas_migrating_at_once_apply_each_version_once(
    postgres: PostgreSQL,
) -> None:
    async def run() -> None:
        dsn = await fresh_db(postgres)
        replicas = [Postgres(dsn, min_size=1, max_size=2, migrations=TWO) for _ in range(3)]
        started = time.monotonic()
        await asyncio.gather(*(r.start() for r in replicas))
        assert time.monotonic() - started >= PAUSE_S
        conn = await asyncpg.connect(dsn)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
            assert sorted(versions) == [*HERE, NEXT]
            assert await conn.fetchval("SELECT count(*) FROM applied") == 1
        finally:
            await conn.close()
        # The index works on what version 1 made.
        rows = PgIndex(replicas[0])
        await rows.write([original_row({"key": "ab" * 32, "created_at": time.time()})])
        assert await rows.count("originals") == 1
        assert await rows.has_original("ab" * 32)
        # A replica started later finds nothing to do.
        later = Postgres(dsn, migrations=TWO)
        await later.start()
        assert await (await later.pool()).fetchval("SELECT count(*) FROM applied") == 1
        for db in [*replicas, later]:
            await db.close()

    asyncio.run(run())


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.create_function("pause", 0, lambda: time.sleep(PAUSE_S) or 0)
    return db


def test_workers_opening_a_new_embedded_database_at_once_all_get_wal(tmp_path: Path) -> None:
    # Switching a new file to WAL can be refused at once (no busy wait) when several open it
    # together; plain `PRAGMA journal_mode=WAL` failed 17 of 300 such openings here.
    failed: list[BaseException] = []
    for trial in range(30):
        path = tmp_path / f"new-{trial}.sqlite3"
        together = threading.Barrier(6)

        def worker(path: Path = path, together: threading.Barrier = together) -> None:
            with contextlib.closing(connect(path)) as db:
                together.wait(30)  # never a hang: a broken barrier fails the test
                try:
                    sqlite.write_ahead(db, 10)
                except BaseException as exc:
                    failed.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert failed == []


def test_sqlite_workers_migrating_at_once_apply_each_version_once(tmp_path: Path) -> None:
    path = tmp_path / "embedded.sqlite3"
    together = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker() -> None:
        with contextlib.closing(connect(path)) as db:
            sqlite.write_ahead(db, 10)
            together.wait(30)  # never a hang: a broken barrier fails the test
            try:
                sqlite.migrate(db, TWO)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert [r[0] for r in db.execute("SELECT version FROM schema_migrations")] == [*HERE, NEXT]
        assert db.execute("SELECT count(*) FROM applied").fetchone()[0] == 1


def test_an_embedded_index_made_before_versions_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.execute("PRAGMA journal_mode=WAL")
        # Before versions, the index ran this script at each start: version 1 is that script.
        old.executescript(MIGRATIONS[0].sqlite)
        old.execute(
            "INSERT INTO originals (key, project, prompt, params, meta, created_at) "
            "VALUES ('k', 'demo', 'p', '{}', '{}', 1.0)"
        )
        old.commit()

    async def run() -> tuple[int, int]:
        db = SQLiteDatabase(path)
        index = SQLiteIndex(db)
        await index.start()
        await index.write([original_row({"key": "cd" * 32, "created_at": 2.0})])
        counted = await index.count("originals"), await index.count("generations")
        await db.close()
        return counted

    assert asyncio.run(run()) == (2, 0)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert [r[0] for r in db.execute("SELECT version FROM schema_migrations")] == HERE


def test_a_failing_sqlite_version_leaves_the_earlier_ones_and_nothing_of_itself(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    broken = Migration(NEXT, postgres="", sqlite="CREATE TABLE half (n INTEGER); NOT SQL;")
    fixed = Migration(NEXT, postgres="", sqlite="CREATE TABLE half (n INTEGER);")

    def state() -> tuple[list[int], bool]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            versions = [r[0] for r in db.execute("SELECT version FROM schema_migrations")]
            half = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half'")
            return versions, bool(half.fetchone()[0])

    async def start(migrations: tuple[Migration, ...]) -> None:
        db = SQLiteDatabase(path, migrations=migrations)
        try:
            await db.start()
        finally:
            await db.close()

    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(start((*MIGRATIONS, broken)))
    assert state() == (HERE, False)
    asyncio.run(start((*MIGRATIONS, fixed)))
    assert state() == ([*HERE, NEXT], True)


def test_sqlite_statements_split_where_a_statement_ends() -> None:
    script = "CREATE TABLE t (s TEXT DEFAULT 'a;b');\nINSERT INTO t VALUES ('x;y');\n  ;\n"
    assert statements(script) == [
        "CREATE TABLE t (s TEXT DEFAULT 'a;b');",
        "INSERT INTO t VALUES ('x;y');",
    ]
