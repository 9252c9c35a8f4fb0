"""The databases the cache's SQL tests run on: a fresh PostgreSQL database (on the server of
tests/services.py) or a fresh SQLite file, and a way to read their rows directly."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import asyncpg
import pytest

from promptpix.cache.postgres import Postgres
from promptpix.cache.sqlite import SQLiteDatabase

KINDS = ["sqlite", "postgresql"]  # the params of a test's `place` fixture


class Opens(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


S = TypeVar("S", bound=Opens)


@dataclass
class Place:
    """One database, fresh for the test: a PostgreSQL database or a SQLite file."""

    kind: str
    target: str  # the DSN, or the file's path

    @classmethod
    def fresh(cls, request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Self:
        """The `place` fixture's value: the PostgreSQL one needs the module's `postgres`."""
        if request.param == "postgresql":
            return cls("postgresql", request.getfixturevalue("postgres").new_database(prefix))
        return cls("sqlite", str(tmp_path / f"{prefix}.sqlite3"))

    def database(self, **options: Any) -> Postgres | SQLiteDatabase:
        if self.kind == "postgresql":
            return Postgres(self.target, **options)
        return SQLiteDatabase(Path(self.target), **options)

    @contextlib.asynccontextmanager
    async def opened(
        self, make: Callable[[Postgres | SQLiteDatabase], S], **options: Any
    ) -> AsyncIterator[S]:
        """`make(database)`, started, on a database of its own (connections of its own, as
        another replica or worker would have); closed with it at the end."""
        db = self.database(**options)
        made = make(db)
        try:
            await made.start()
            yield made
        finally:
            await made.close()
            await db.close()

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The statement's rows, on a connection of its own (committed at once)."""
        if self.kind == "postgresql":
            conn = await asyncpg.connect(self.target)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()
        with contextlib.closing(sqlite3.connect(self.target, isolation_level=None)) as db:
            return db.execute(sql).fetchall()
