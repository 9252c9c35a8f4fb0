"""PostgreSQL through asyncpg: one pool per process, its schema migrated when it opens.

Everything that keeps rows in PostgreSQL (the index, and what comes next) shares the pool;
the pool is made at the first use, so a database that is down at start is tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from .schema import MIGRATIONS, Migration, pending

log = logging.getLogger("promptpix.postgres")

MIGRATION_LOCK = 0x70726F6D  # advisory lock id: replicas migrate one at a time


class Postgres:
    """The pool, made (and the schema migrated) at the first `pool()`."""

    kind = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.dsn = dsn
        self.min_size, self.max_size = min_size, max_size
        self.migrations = migrations
        self._pool: asyncpg.Pool | None = None
        self._start_lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._start_lock:
                if self._pool is None:
                    pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=self.min_size,
                        max_size=self.max_size,
                        command_timeout=10,
                        timeout=5,
                    )
                    try:
                        async with pool.acquire() as conn:
                            await migrate(conn, self.migrations)
                    except BaseException:
                        await pool.close()
                        raise
                    self._pool = pool
        return self._pool

    async def start(self) -> None:
        await self.pool()

    async def check(self) -> dict[str, Any]:
        try:
            pool = await asyncio.wait_for(self.pool(), 3.0)
            await asyncio.wait_for(pool.fetchval("SELECT 1"), 2.0)
        except Exception as exc:  # readiness reports any failure, it never raises
            return {"status": "down", "kind": self.kind, "error": str(exc)[:300]}
        return {"status": "ok", "kind": self.kind}

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def migrate(conn: asyncpg.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Apply what `schema_migrations` does not list yet. A session advisory lock makes
    replicas that start together take turns: the second finds the versions applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in pending(done, migrations):
            async with conn.transaction():
                await conn.execute(migration.postgres)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
            log.info("applied migration %d", migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
