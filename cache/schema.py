"""The database schema as one ordered list of migrations, each for PostgreSQL and SQLite.

Both runners (`postgres.migrate`, `sqlite.migrate`) apply, in order, every version their
database's `schema_migrations` table does not list yet, each in its own transaction with
its row. A new table is one more entry at the end, with the next version number; an entry
once released is never edited.

Version 1 of SQLite is the schema the embedded index had before it was versioned, written
with IF NOT EXISTS so that a file made then takes it as a no-op and is simply recorded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    postgres: str
    sqlite: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        postgres="""
    CREATE TABLE originals (
        key text PRIMARY KEY,
        project text NOT NULL,
        prompt text NOT NULL,
        params jsonb NOT NULL,
        generator text,
        model text,
        content_type text,
        width integer,
        height integer,
        bytes integer,
        focal_x real,
        focal_y real,
        meta jsonb NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE INDEX originals_project_created ON originals (project, created_at DESC);
    CREATE TABLE variants (
        key text PRIMARY KEY,
        original_key text NOT NULL,
        params jsonb NOT NULL,
        content_type text,
        width integer,
        height integer,
        bytes integer,
        created_at timestamptz NOT NULL
    );
    CREATE INDEX variants_original ON variants (original_key);
    CREATE TABLE generations (
        id bigserial PRIMARY KEY,
        original_key text NOT NULL,
        project text,
        generator text,
        outcome text NOT NULL,
        attempted jsonb,
        fallback_used boolean,
        timings jsonb,
        error text,
        created_at timestamptz NOT NULL
    );
    CREATE INDEX generations_key ON generations (original_key);
    """,
        sqlite="""
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
    """,
    ),
)


def pending(applied: Collection[int], migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations not applied yet, in order. ValueError if the list's versions are not
    1, 2, 3, ... (a gap or a repeat would be applied out of order, or never)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must run 1, 2, 3, ...: {versions}")
    return [m for m in migrations if m.version not in applied]
