"""`Library` over SQL: each operation one transaction of `librarytx`, run on PostgreSQL
(`PgLibrary`) or the embedded database (`SQLiteLibrary`) by the control store's drivers."""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from . import librarytx as tx
from . import pgcontrol, sqlitecontrol
from .controltx import Mode, Tx
from .library import Asset, Flow, GenerationRecord, History
from .librarytx import Dialect
from .postgres import Postgres
from .sqlite import SQLiteDatabase

T = TypeVar("T")


class SqlLibrary(abc.ABC):
    """The operations; a subclass runs a transaction on its database (`_run`). The database
    belongs to its owner, which opens (and migrates) it at its first use and closes it."""

    kind: str
    dialect: Dialect  # how its database spells what the two spell differently

    @abc.abstractmethod
    async def _run(self, transaction: Tx[T], mode: Mode) -> T:
        """As `SqlControlStore._run`: `write` one writer at a time, `single` one statement."""

    async def start(self) -> None:
        """Nothing: a database that is down at start is reached at the first operation."""
        return

    async def close(self) -> None:
        """Nothing to close: the database is its owner's."""
        return

    # --- assets ---------------------------------------------------------------------------

    async def put_asset(self, asset: Asset) -> Asset:
        return await self._run(tx.put_asset(asset, time.time(), self.dialect), "write")

    async def asset(self, project: str, id: str) -> Asset | None:
        return await self._run(tx.get_asset(project, id), "single")

    async def asset_by_alias(self, project: str, alias: str) -> Asset | None:
        return await self._run(tx.asset_by_alias(project, alias), "single")

    async def assets(
        self, project: str, limit: int, before: tuple[float, str] | None = None
    ) -> list[Asset]:
        """Newest first, ties in the order of their ids."""
        return await self._run(tx.list_assets(project, limit, before), "single")

    async def delete_asset(self, project: str, id: str) -> bool:
        return await self._run(tx.delete_asset(project, id), "single")

    # --- generations ----------------------------------------------------------------------

    async def add_generation(self, record: GenerationRecord) -> GenerationRecord:
        return await self._run(tx.add_generation(record, time.time()), "single")

    async def add_generations(self, records: Sequence[GenerationRecord]) -> None:
        if records:
            await self._run(tx.add_generations(records, time.time()), "write")

    async def update_generation(self, record: GenerationRecord) -> None:
        """Replaces status, original_key, generator, aliases and answer of the record of that
        id in that project; nothing when there is none."""
        await self._run(tx.update_generation(record), "single")

    async def generation(self, project: str, id: str) -> GenerationRecord | None:
        return await self._run(tx.get_generation(project, id), "single")

    async def generations(
        self, project: str, filters: History, limit: int, before_seq: int | None = None
    ) -> list[GenerationRecord]:
        return await self._run(
            tx.history(project, filters, limit, before_seq, self.dialect), "single"
        )

    # --- flows ----------------------------------------------------------------------------

    async def add_flow(self, flow: Flow) -> Flow:
        return await self._run(tx.add_flow(flow, time.time()), "single")

    async def flow(self, project: str, id: str) -> Flow | None:
        return await self._run(tx.get_flow(project, id), "single")

    async def flow_steps(self, project: str, flow_id: str) -> list[GenerationRecord]:
        return await self._run(tx.flow_steps(project, flow_id), "single")

    # --- warm jobs ------------------------------------------------------------------------

    async def put_warm_job(self, project: str, id: str, state: dict[str, Any]) -> None:
        await self._run(tx.put_warm_job(project, id, state, time.time()), "single")

    async def warm_job(self, project: str, id: str) -> dict[str, Any] | None:
        return await self._run(tx.get_warm_job(project, id), "single")


class PgLibrary(SqlLibrary):
    """On the shared pool, as the control store: every replica sees the same records."""

    kind = "postgresql"
    dialect: Dialect = "postgresql"

    def __init__(self, db: Postgres) -> None:
        self.db = db

    async def _run(self, transaction: Tx[T], mode: Mode) -> T:
        return await pgcontrol.run(self.db, transaction, mode)


class SQLiteLibrary(SqlLibrary):
    """On the machine's embedded file, shared by its workers."""

    kind = "sqlite"
    dialect: Dialect = "sqlite"

    def __init__(self, db: SQLiteDatabase) -> None:
        self.db = db

    async def _run(self, transaction: Tx[T], mode: Mode) -> T:
        return await sqlitecontrol.run(self.db, transaction, mode)
