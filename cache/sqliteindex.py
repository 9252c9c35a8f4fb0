"""The embedded index: SQLite beside the file store, for a deployment with no database."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from .index import Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS originals (
    key TEXT PRIMARY KEY, project TEXT NOT NULL, prompt TEXT NOT NULL, params TEXT NOT NULL,
    generator TEXT, model TEXT, content_type TEXT, width INTEGER, height INTEGER,
    bytes INTEGER, focal_x REAL, focal_y REAL, meta TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS originals_project ON originals (project, created_at);
CREATE TABLE IF NOT EXISTS variants (
    key TEXT PRIMARY KEY, original_key TEXT NOT NULL, params TEXT NOT NULL,
    content_type TEXT, width INTEGER, height INTEGER, bytes INTEGER, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, original_key TEXT NOT NULL, project TEXT,
    generator TEXT, outcome TEXT NOT NULL, attempted TEXT, fallback_used INTEGER,
    timings TEXT, error TEXT, created_at REAL NOT NULL
);
"""

JSON_COLUMNS = {"params", "meta", "timings", "attempted"}
UPSERT = {"originals": "OR IGNORE", "variants": "OR IGNORE", "generations": ""}


class SQLiteIndex:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    async def start(self) -> None:
        await asyncio.to_thread(self._locked, lambda db: None)

    def _locked(self, fn: Any) -> Any:
        with self._lock:
            return fn(self._connect())

    async def write(self, rows: Sequence[Row]) -> None:
        def run(db: sqlite3.Connection) -> None:
            with db:
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

        await asyncio.to_thread(self._locked, run)

    async def count(self, table: str) -> int:
        if table not in UPSERT:
            raise ValueError(table)
        return int(
            await asyncio.to_thread(
                self._locked, lambda db: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            )
        )

    async def check(self) -> dict[str, Any]:
        try:
            await asyncio.to_thread(self._locked, lambda db: db.execute("SELECT 1").fetchone())
        except sqlite3.Error as exc:
            return {"status": "down", "kind": self.kind, "error": str(exc)}
        return {"status": "ok", "kind": self.kind, "path": str(self.path)}

    async def close(self) -> None:
        def shut() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(shut)
