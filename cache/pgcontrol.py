"""The control store in PostgreSQL, shared by every replica: its transactions on the pool."""

from __future__ import annotations

from typing import TypeVar

import asyncpg

from .controltx import Mode, Rows, Tx, single
from .postgres import Postgres
from .sqlcontrol import SqlControlStore

T = TypeVar("T")


class PgControlStore(SqlControlStore):
    """On the shared pool (which its owner closes, not this). Writes run READ COMMITTED,
    where each conditional statement re-checks the row a concurrent writer committed;
    reads run REPEATABLE READ, so a project and its secrets come from one snapshot."""

    kind = "postgresql"

    def __init__(self, db: Postgres) -> None:
        super().__init__()
        self.db = db

    async def _run(self, transaction: Tx[T], mode: Mode) -> T:
        return await run(self.db, transaction, mode)


async def run(db: Postgres, transaction: Tx[T], mode: Mode) -> T:
    """The transaction on a connection of the pool (the library's transactions run here too)."""
    pool = await db.pool()
    async with pool.acquire() as conn:
        if mode == "single":
            return await drive(conn, single(transaction))
        isolation = "read_committed" if mode == "write" else "repeatable_read"
        async with conn.transaction(isolation=isolation, readonly=mode == "read"):
            return await drive(conn, transaction)


async def drive(conn: asyncpg.Connection, transaction: Tx[T]) -> T:
    try:
        sql, args = next(transaction)
        while True:
            rows: Rows = [tuple(r) for r in await conn.fetch(sql, *args)]
            sql, args = transaction.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result
