"""PostgreSQL through asyncpg: the index (with migrations applied at start) and leases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson

from .index import Row
from .leases import Lease, NoLease

log = logging.getLogger("promptpix.postgres")

MIGRATIONS: list[str] = [
    """
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
]
MIGRATION_LOCK = 0x70726F6D  # advisory lock id: replicas migrate one at a time
JSON_COLUMNS = {"params", "meta", "timings", "attempted"}
CONFLICT = {
    "originals": "ON CONFLICT (key) DO NOTHING",
    "variants": "ON CONFLICT (key) DO NOTHING",
    "generations": "",
}
CHANNEL = "promptpix_stored"
OFF_S = 5.0  # how long leases are not asked for after the database failed to answer


class Postgres:
    """One pool shared by the index and the leases."""

    kind = "postgresql"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self.min_size, self.max_size = min_size, max_size
        self.pool: asyncpg.Pool | None = None
        self._start_lock = asyncio.Lock()
        self._lookups = _Batch(self._lookup_many)

    async def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            async with self._start_lock:
                if self.pool is None:
                    pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=self.min_size,
                        max_size=self.max_size,
                        command_timeout=10,
                        timeout=5,
                    )
                    try:
                        await migrate(pool)
                    except BaseException:
                        await pool.close()
                        raise
                    self.pool = pool
        return self.pool

    async def start(self) -> None:
        await self._pool()

    async def write(self, rows: Sequence[Row]) -> None:
        # Rows of one table with the same columns go in one executemany: one round trip
        # per group rather than one per row.
        groups: dict[tuple[str, tuple[str, ...]], list[list[Any]]] = {}
        for row in rows:
            values = dict(row.values)
            for col in JSON_COLUMNS & values.keys():
                values[col] = orjson.dumps(values[col]).decode()
            groups.setdefault((row.table, tuple(values)), []).append(list(values.values()))
        pool = await self._pool()
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
        pool = await self._pool()
        rows = await pool.fetch(
            "SELECT key FROM originals WHERE key = ANY($1::text[])", list(set(keys))
        )
        found = {r["key"] for r in rows}
        return [k in found for k in keys]

    async def count(self, table: str) -> int:
        if table not in CONFLICT:
            raise ValueError(table)
        pool = await self._pool()
        return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))

    async def check(self) -> dict[str, Any]:
        try:
            pool = await asyncio.wait_for(self._pool(), 3.0)
            await asyncio.wait_for(pool.fetchval("SELECT 1"), 2.0)
        except Exception as exc:  # readiness reports any failure, it never raises
            return {"status": "down", "kind": self.kind, "error": str(exc)[:300]}
        return {"status": "ok", "kind": self.kind}

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


async def migrate(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in enumerate(MIGRATIONS, 1):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version
                    )
                log.info("applied migration %d", version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


def lock_id(key: str) -> int:
    """The advisory lock number for a content key: its first 64 bits."""
    return int.from_bytes(bytes.fromhex(key[:16]), "big", signed=True)


class PgLease:
    def __init__(self, leases: PgLeases, key: str) -> None:
        self.leases, self.key = leases, key
        self.released = False

    async def release(self) -> None:
        if not self.released:  # once: a later holder of the key keeps its lock
            self.released = True
            await self.leases.release(self.key)


class PgLeases:
    """Session advisory locks (`pg_try_advisory_lock`) on one dedicated connection per
    process. A lock lives exactly as long as the connection that took it, so a replica that
    dies, even by `kill -9`, releases its locks as soon as PostgreSQL sees the connection
    close. Releases are announced with NOTIFY, so waiters wake at once; they also poll, which
    is how they notice a dead holder. Without the database (and for `OFF_S` after it failed to
    answer), single-flight stays per process (the store's conditional write still keeps the
    first original).

    Takes and releases asked for while a statement is under way go together in the next
    one: a burst of misses costs a few round trips, not one each in turn."""

    def __init__(self, db: Postgres) -> None:
        self.db = db
        self.poll_s = 0.5
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._held: set[str] = set()
        self._unlocking: set[str] = set()  # released, the unlock not yet run: not to be taken
        self._events: dict[str, asyncio.Event] = {}
        self._takes = _Batch(self._take_many, abandoned=self._abandoned)
        self._releases = _Batch(self._release_many)
        self._releasing: set[asyncio.Task[None]] = set()
        self._off_until = 0.0  # after a failure, misses go ahead without asking until then

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._held.clear()  # a lost connection took its locks with it
            conn = await asyncpg.connect(
                self.db.dsn,
                timeout=3,
                command_timeout=5,
                server_settings={"application_name": "promptpix-leases"},
            )
            await conn.add_listener(CHANNEL, self._notified)
            self._conn = conn
        return self._conn

    async def try_acquire(self, key: str) -> Lease | None:
        if key in self._held:
            return None
        loop = asyncio.get_running_loop()
        if loop.time() < self._off_until:  # the database did not answer a moment ago
            return NoLease()
        try:
            got = await self._takes.ask(key)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if loop.time() >= self._off_until:
                log.warning("generation locks unavailable (%s): going ahead for %.0f s", exc, OFF_S)
            self._off_until = loop.time() + OFF_S
            return NoLease()
        return PgLease(self, key) if got else None

    async def _take_many(self, keys: list[str]) -> list[bool]:
        # Only keys not held (a session lock taken twice would need two releases), each once.
        busy = self._held | self._unlocking
        wanted = [k for k in dict.fromkeys(keys) if k not in busy]
        got: dict[str, bool] = {}
        if wanted:
            async with self._lock:
                conn = await self._connection()
                rows = await conn.fetch(
                    "SELECT pg_try_advisory_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY"
                    " AS t(k, i) ORDER BY i",
                    [lock_id(k) for k in wanted],
                )
            got = {k: bool(r[0]) for k, r in zip(wanted, rows, strict=True)}
        out = []
        for k in keys:  # the same key asked twice at once: the first ask has it
            out.append(got.pop(k, False))
            if out[-1]:
                self._held.add(k)
        return out

    def _abandoned(self, key: str) -> None:
        """A lease taken for an asker that gave up meanwhile: give it back."""
        task = asyncio.get_running_loop().create_task(self.release(key))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def release(self, key: str) -> None:
        if key not in self._held:
            return
        self._held.discard(key)
        self._unlocking.add(key)
        try:
            with contextlib.suppress(Exception):
                await self._releases.ask(key)
        finally:
            self._unlocking.discard(key)

    async def _release_many(self, keys: list[str]) -> list[bool]:
        async with self._lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                return [False] * len(keys)
            await conn.execute(
                "SELECT pg_advisory_unlock(k), pg_notify($1, key)"
                " FROM unnest($2::bigint[], $3::text[]) AS t(k, key)",
                CHANNEL,
                [lock_id(k) for k in keys],
                keys,
            )
        return [True] * len(keys)

    async def wait(self, key: str, seconds: float) -> None:
        event = self._events.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), max(seconds, self.poll_s))
        except TimeoutError:
            pass
        finally:
            self._events.pop(key, None)

    def _notified(self, conn: object, pid: int, channel: str, key: str) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 3)
            self._conn = None


class _Batch:
    """Calls `run` with every key asked for since its last call began: one call at a time,
    each answering all the asks it took. A True answer whose asker gave up meanwhile goes to
    `abandoned`."""

    def __init__(
        self,
        run: Callable[[list[str]], Awaitable[list[bool]]],
        abandoned: Callable[[str], None] | None = None,
    ) -> None:
        self._run = run
        self._abandoned = abandoned
        self._waiting: list[tuple[str, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    async def ask(self, key: str) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                answers = await self._run([k for k, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (key, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
                elif answer and self._abandoned is not None:
                    self._abandoned(key)
