"""The control store in the embedded database, shared by the workers of one machine."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TypeVar

from .controltx import Mode, Rows, Tx, single
from .sqlcontrol import SqlControlStore
from .sqlite import SQLiteDatabase, transaction

T = TypeVar("T")


class SQLiteControlStore(SqlControlStore):
    """On the shared file (which its owner closes, not this). A write holds the file's write
    lock from its first statement (`BEGIN IMMEDIATE`): the workers' writes take turns, and
    each reads what the one before it committed. A read sees one snapshot (WAL)."""

    kind = "sqlite"

    def __init__(self, db: SQLiteDatabase) -> None:
        super().__init__()
        self.db = db

    async def _run(self, tx: Tx[T], mode: Mode) -> T:
        return await run(self.db, tx, mode)


async def run(database: SQLiteDatabase, tx: Tx[T], mode: Mode) -> T:
    """The transaction on the file's thread (the library's transactions run here too)."""

    def on_thread(db: sqlite3.Connection) -> T:
        if mode == "single":
            return drive(db, single(tx))  # autocommit: the statement is atomic alone
        with transaction(db, "IMMEDIATE" if mode == "write" else "DEFERRED"):
            return drive(db, tx)

    return await database.run(on_thread)


def drive(db: sqlite3.Connection, tx: Tx[T]) -> T:
    try:
        sql, args = next(tx)
        while True:
            # `$n` is PostgreSQL's parameter, `?n` SQLite's.
            with contextlib.closing(db.execute(sql.replace("$", "?"), tuple(args))) as cursor:
                rows: Rows = cursor.fetchall()
            sql, args = tx.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result
