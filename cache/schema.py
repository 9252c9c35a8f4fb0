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
    # The control plane: projects, their signing secrets and API keys, one version counter
    # that every write to them raises (a secret's or key's `seq` is the version that made
    # it: the order they were made in), and the counters of quotas, budgets and rate limits
    # (USD as whole micro-dollars: sums stay exact).
    Migration(
        2,
        postgres="""
    CREATE TABLE control_version (
        id integer PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL
    );
    INSERT INTO control_version (id, version) VALUES (1, 1);
    CREATE TABLE projects (
        slug text PRIMARY KEY,
        name text NOT NULL,
        style text NOT NULL,
        system_prompt text NOT NULL,
        signing text NOT NULL,
        quota bigint,
        rate_limit integer,
        budget_micro_usd bigint,
        generators text,
        enhance boolean NOT NULL,
        semantic_reuse boolean NOT NULL,
        on_failure text NOT NULL,
        style_version integer NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
    );
    CREATE TABLE signing_secrets (
        id text PRIMARY KEY,
        project text NOT NULL REFERENCES projects (slug) ON DELETE CASCADE,
        secret text NOT NULL,
        created_at bigint NOT NULL,
        seq bigint NOT NULL
    );
    CREATE INDEX signing_secrets_project ON signing_secrets (project);
    CREATE TABLE api_keys (
        id text PRIMARY KEY,
        project text NOT NULL REFERENCES projects (slug) ON DELETE CASCADE,
        name text NOT NULL,
        scopes text NOT NULL,
        hash bytea NOT NULL,
        created_at bigint NOT NULL,
        revoked_at bigint,
        seq bigint NOT NULL
    );
    CREATE INDEX api_keys_project ON api_keys (project);
    CREATE TABLE usage_periods (
        project text NOT NULL,
        period text NOT NULL,
        generations bigint NOT NULL,
        micro_usd bigint NOT NULL,
        PRIMARY KEY (project, period)
    );
    CREATE TABLE usage_generators (
        project text NOT NULL,
        period text NOT NULL,
        generator text NOT NULL,
        generations bigint NOT NULL,
        micro_usd bigint NOT NULL,
        PRIMARY KEY (project, period, generator)
    );
    CREATE TABLE rate_hits (
        project text NOT NULL,
        client text NOT NULL,
        minute bigint NOT NULL,
        hits integer NOT NULL,
        PRIMARY KEY (project, client, minute)
    );
    CREATE INDEX rate_hits_minute ON rate_hits (minute);
    """,
        sqlite="""
    CREATE TABLE control_version (
        id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL
    );
    INSERT INTO control_version (id, version) VALUES (1, 1);
    CREATE TABLE projects (
        slug TEXT PRIMARY KEY, name TEXT NOT NULL, style TEXT NOT NULL,
        system_prompt TEXT NOT NULL, signing TEXT NOT NULL, quota INTEGER, rate_limit INTEGER,
        budget_micro_usd INTEGER, generators TEXT, enhance INTEGER NOT NULL,
        semantic_reuse INTEGER NOT NULL, on_failure TEXT NOT NULL, style_version INTEGER NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
    );
    CREATE TABLE signing_secrets (
        id TEXT PRIMARY KEY, project TEXT NOT NULL REFERENCES projects (slug) ON DELETE CASCADE,
        secret TEXT NOT NULL, created_at INTEGER NOT NULL, seq INTEGER NOT NULL
    );
    CREATE INDEX signing_secrets_project ON signing_secrets (project);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY, project TEXT NOT NULL REFERENCES projects (slug) ON DELETE CASCADE,
        name TEXT NOT NULL, scopes TEXT NOT NULL, hash BLOB NOT NULL,
        created_at INTEGER NOT NULL, revoked_at INTEGER, seq INTEGER NOT NULL
    );
    CREATE INDEX api_keys_project ON api_keys (project);
    CREATE TABLE usage_periods (
        project TEXT NOT NULL, period TEXT NOT NULL, generations INTEGER NOT NULL,
        micro_usd INTEGER NOT NULL, PRIMARY KEY (project, period)
    );
    CREATE TABLE usage_generators (
        project TEXT NOT NULL, period TEXT NOT NULL, generator TEXT NOT NULL,
        generations INTEGER NOT NULL, micro_usd INTEGER NOT NULL,
        PRIMARY KEY (project, period, generator)
    );
    CREATE TABLE rate_hits (
        project TEXT NOT NULL, client TEXT NOT NULL, minute INTEGER NOT NULL,
        hits INTEGER NOT NULL, PRIMARY KEY (project, client, minute)
    );
    CREATE INDEX rate_hits_minute ON rate_hits (minute);
    """,
    ),
    # The JSON API's records (cache/library.py): uploaded assets (an alias names at most one
    # asset of a project), the generations it answered (the history: `seq` is their order,
    # the JSON columns as the API gave them) and flows. Times are Unix seconds.
    Migration(
        3,
        postgres="""
    CREATE TABLE assets (
        project text NOT NULL,
        id text NOT NULL,
        alias text,
        content_type text NOT NULL,
        width integer NOT NULL,
        height integer NOT NULL,
        bytes bigint NOT NULL,
        focal_x double precision NOT NULL,
        focal_y double precision NOT NULL,
        created_at double precision NOT NULL,
        PRIMARY KEY (project, id)
    );
    CREATE UNIQUE INDEX assets_alias ON assets (project, alias) WHERE alias IS NOT NULL;
    CREATE INDEX assets_newest ON assets (project, created_at DESC, id);
    CREATE TABLE api_generations (
        seq bigserial PRIMARY KEY,
        id text NOT NULL UNIQUE,
        project text NOT NULL,
        status text NOT NULL,
        original_key text NOT NULL,
        flow_id text,
        parent_id text,
        generator text NOT NULL,
        aliases jsonb NOT NULL,
        metadata jsonb NOT NULL,
        answer jsonb NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE INDEX api_generations_newest ON api_generations (project, seq DESC);
    CREATE INDEX api_generations_flow ON api_generations (project, flow_id, seq);
    CREATE TABLE flows (
        id text PRIMARY KEY,
        project text NOT NULL,
        name text NOT NULL,
        created_at double precision NOT NULL
    );
    """,
        sqlite="""
    CREATE TABLE assets (
        project TEXT NOT NULL, id TEXT NOT NULL, alias TEXT, content_type TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL,
        focal_x REAL NOT NULL, focal_y REAL NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (project, id)
    );
    CREATE UNIQUE INDEX assets_alias ON assets (project, alias) WHERE alias IS NOT NULL;
    CREATE INDEX assets_newest ON assets (project, created_at DESC, id);
    CREATE TABLE api_generations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, project TEXT NOT NULL,
        status TEXT NOT NULL, original_key TEXT NOT NULL, flow_id TEXT, parent_id TEXT,
        generator TEXT NOT NULL, aliases TEXT NOT NULL, metadata TEXT NOT NULL,
        answer TEXT NOT NULL, created_at REAL NOT NULL
    );
    CREATE INDEX api_generations_newest ON api_generations (project, seq DESC);
    CREATE INDEX api_generations_flow ON api_generations (project, flow_id, seq);
    CREATE TABLE flows (
        id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, created_at REAL NOT NULL
    );
    """,
    ),
    # Page warming jobs (`/v1/warm`): each job's whole state as the API shows it, JSON,
    # rewritten as its items finish, so any worker or replica answers its status.
    Migration(
        4,
        postgres="""
    CREATE TABLE warm_jobs (
        id text PRIMARY KEY,
        project text NOT NULL,
        state text NOT NULL,
        created_at double precision NOT NULL
    );
    """,
        sqlite="""
    CREATE TABLE warm_jobs (
        id TEXT PRIMARY KEY, project TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL
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
