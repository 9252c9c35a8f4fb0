"""The index in PostgreSQL: rows written in batches, and whether an original is listed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .batch import KeyBatch
from .index import Row
from .postgres import Postgres

JSON_COLUMNS = {"params", "meta", "timings", "attempted"}
CONFLICT = {
    "originals": "ON CONFLICT (key) DO NOTHING",
    "variants": "ON CONFLICT (key) DO NOTHING",
    "generations": "",
}


class PgIndex:
    """The index's rows on the shared pool (which the pool's owner closes, not this)."""

    kind = "postgresql"

    def __init__(self, db: Postgres) -> None:
        self.db = db
        self._lookups = KeyBatch(self._lookup_many)

    async def start(self) -> None:
        await self.db.start()

    async def write(self, rows: Sequence[Row]) -> None:
        # Rows of one table with the same columns go in one executemany: one round trip
        # per group rather than one per row.
        groups: dict[tuple[str, tuple[str, ...]], list[list[Any]]] = {}
        for row in rows:
            values = dict(row.values)
            for col in JSON_COLUMNS & values.keys():
                values[col] = orjson.dumps(values[col]).decode()
            groups.setdefault((row.table, tuple(values)), []).append(list(values.values()))
        pool = await self.db.pool()
        async with pool.acquire() as conn, conn.transaction():
            for (table, cols), args in groups.items():
                marks = ", ".join(
                    f"to_timestamp(${i})"
                    if c == "created_at"
                    else f"${i}::jsonb"
                    if c in JSON_COLUMNS
                    else f"${i}"
                    for i, c in enumerate(cols, 1)
                )
                await conn.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) {CONFLICT[table]}",
                    args,
                )

    async def has_original(self, key: str) -> bool:
        """Whether the index lists the original; lookups asked at once share one query."""
        return await self._lookups.ask(key)

    async def _lookup_many(self, keys: list[str]) -> list[bool]:
        pool = await self.db.pool()
        rows = await pool.fetch(
            "SELECT key FROM originals WHERE key = ANY($1::text[])", list(set(keys))
        )
        found = {r["key"] for r in rows}
        return [k in found for k in keys]

    async def count(self, table: str) -> int:
        if table not in CONFLICT:
            raise ValueError(table)
        pool = await self.db.pool()
        return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))

    async def check(self) -> dict[str, Any]:
        return await self.db.check()

    async def close(self) -> None:
        return None
