"""The index in the embedded database, for a deployment with no PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from .index import Row
from .sqlite import SQLiteDatabase, transaction

JSON_COLUMNS = {"params", "meta", "timings", "attempted"}
UPSERT = {"originals": "OR IGNORE", "variants": "OR IGNORE", "generations": ""}


class SQLiteIndex:
    """The index's rows on the shared database (which its owner closes, not this)."""

    kind = "sqlite"

    def __init__(self, db: SQLiteDatabase) -> None:
        self.db = db

    async def start(self) -> None:
        await self.db.start()

    async def write(self, rows: Sequence[Row]) -> None:
        def run(db: sqlite3.Connection) -> None:
            with transaction(db):
                for row in rows:
                    values = {
                        k: orjson.dumps(v).decode() if k in JSON_COLUMNS else v
                        for k, v in row.values.items()
                    }
                    cols = ", ".join(values)
                    marks = ", ".join("?" for _ in values)
                    db.execute(
                        f"INSERT {UPSERT[row.table]} INTO {row.table} ({cols}) VALUES ({marks})",
                        list(values.values()),
                    )

        await self.db.run(run)

    async def count(self, table: str) -> int:
        if table not in UPSERT:
            raise ValueError(table)
        return int(
            await self.db.run(lambda db: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        )

    async def check(self) -> dict[str, Any]:
        return await self.db.check()

    async def close(self) -> None:
        return None
