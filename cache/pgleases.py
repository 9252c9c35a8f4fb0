"""Generation leases in PostgreSQL: a session advisory lock per original key.

A lock lives exactly as long as the connection that took it, so a holder that dies, even by
`kill -9`, releases its locks as soon as PostgreSQL sees the connection close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from .batch import KeyBatch
from .leases import Lease, NoLease
from .postgres import Postgres

log = logging.getLogger("promptpix.postgres")

CHANNEL = "promptpix_stored"
OFF_S = 5.0  # how long leases are not asked for after the database failed to answer


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
        self.db = db  # its DSN: the leases keep a connection of their own, not the pool's
        self.poll_s = 0.5
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._held: set[str] = set()
        self._unlocking: set[str] = set()  # released, the unlock not yet run: not to be taken
        self._events: dict[str, asyncio.Event] = {}
        self._takes = KeyBatch(self._take_many, abandoned=self._abandoned)
        self._releases = KeyBatch(self._release_many)
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
