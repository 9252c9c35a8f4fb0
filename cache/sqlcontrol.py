"""`ControlStore` over SQL: each operation one transaction of `controltx` or `usagetx`, run
by the database's driver (`PgControlStore`, `SQLiteControlStore`)."""

from __future__ import annotations

import abc
import asyncio
import math
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

from . import controltx as tx
from . import usagetx
from .control import (
    ApiKey,
    InvalidProject,
    Project,
    RateDecision,
    Reservation,
    SigningSecret,
    Usage,
    check_period,
    micro_usd,
)
from .controltx import Mode, Tx

T = TypeVar("T")


def now_s() -> int:
    return int(time.time())


class SqlControlStore(abc.ABC):
    """The operations; a subclass runs a transaction on its database (`_run`)."""

    def __init__(self) -> None:
        # Reservations of this store not yet settled or released: each ends once.
        self._open: set[str] = set()
        self._swept_minute = 0  # rate windows before the last minute go, once a minute
        # Group commit of what generations cost: what arrives while a commit runs goes in
        # the next one, so a burst of misses costs a few transactions, not one each.
        self._periods: usagetx.Counts = {}
        self._generators: usagetx.Counts = {}
        self._next: asyncio.Future[None] | None = None
        self._committing = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @abc.abstractmethod
    async def _run(self, transaction: Tx[T], mode: Mode) -> T:
        """The transaction, in one database transaction: `write` one writer at a time,
        `read` one snapshot; `single` is one statement, atomic without a transaction."""

    async def start(self) -> None:
        await self.version()

    async def close(self) -> None:
        """Wait for the counts under way (the database belongs to its owner, which closes it)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def version(self) -> int:
        return await self._run(tx.version(), "single")

    # --- projects -------------------------------------------------------------------------

    async def create_project(self, project: Project) -> tuple[Project, str | None]:
        return await self._run(tx.create_project(project, now_s()), "write")

    async def list_projects(self) -> list[Project]:
        return await self._run(tx.list_projects(), "single")

    async def get_project(self, slug: str) -> Project | None:
        return await self._run(tx.get_project(slug, with_secrets=False), "single")

    async def load(self, slug: str) -> Project | None:
        """The project with its signing secrets' texts, to verify signatures with."""
        return await self._run(tx.get_project(slug, with_secrets=True), "read")

    async def update_project(self, slug: str, /, **changes: Any) -> tuple[Project, str | None]:
        """The changed project, and the text of a first signing secret when the change
        turned signing on for a project that had none."""
        return await self._run(tx.update_project(slug, changes, now_s()), "write")

    # --- signing secrets ------------------------------------------------------------------

    async def add_secret(self, slug: str) -> tuple[str, str]:
        """(id, secret): the secret's text is shown this once."""
        return await self._run(tx.add_secret(slug, now_s()), "write")

    async def delete_secret(self, slug: str, secret_id: str) -> bool:
        return await self._run(tx.delete_secret(slug, secret_id), "write")

    async def list_secrets(self, slug: str) -> list[SigningSecret]:
        return await self._run(tx.list_secrets(slug), "read")

    # --- API keys -------------------------------------------------------------------------

    async def create_key(self, slug: str, name: str, scopes: Sequence[str]) -> tuple[ApiKey, str]:
        """(the key's record, its text): the text is shown this once, only its hash is kept."""
        return await self._run(tx.create_key(slug, name, scopes, now_s()), "write")

    async def find_key(self, key_text: str) -> ApiKey | None:
        """The key's record if the text is a key that is not revoked, else None."""
        return await self._run(tx.find_key(key_text), "single")

    async def list_keys(self, slug: str) -> list[ApiKey]:
        return await self._run(tx.list_keys(slug), "read")

    async def revoke_key(self, slug: str, key_id: str) -> bool:
        return await self._run(tx.revoke_key(slug, key_id, now_s()), "write")

    # --- quotas and budgets ---------------------------------------------------------------

    async def reserve(
        self,
        slug: str,
        period: str,
        price_usd: float | Decimal,
        quota: int | None,
        budget: float | Decimal | None,
    ) -> Reservation:
        """Hold one generation of the period (`YYYY-MM`) at `price_usd`, if the quota (None:
        unlimited) and the budget in USD (None: unlimited) leave room for it."""
        period = check_period(period)
        price = micro_usd(price_usd)
        if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int)):
            raise InvalidProject("quota: must be a whole number or None", "quota")
        cap = micro_usd(budget, "budget")
        assert price is not None
        reservation = await self._run(
            usagetx.reserve(uuid.uuid4().hex, slug, period, price, quota, cap), "write"
        )
        if reservation.granted:
            self._open.add(reservation.id)
        return reservation

    async def release(self, reservation: Reservation) -> bool:
        """Give a granted reservation back (the generation failed, or a stand-in answered).
        False when it was not granted, or was already settled or released."""
        if reservation.id not in self._open:
            return False
        self._open.discard(reservation.id)  # at once: a second call meanwhile does nothing
        try:
            await self._run(usagetx.release(reservation), "write")
        except BaseException:
            self._open.add(reservation.id)  # not given back: it can be tried again
            raise
        return True

    async def settle(
        self, reservation: Reservation, generator: str, price_usd: float | Decimal
    ) -> bool:
        """Count the generation for `generator`, at its real price. False as for `release`."""
        if reservation.id not in self._open:
            return False
        price = micro_usd(price_usd)
        assert price is not None
        self._open.discard(reservation.id)  # at once: a second call meanwhile does nothing
        try:
            r = reservation
            await self._add(r.project, r.period, generator, 0, price - r.micro_usd, price)
        except BaseException:
            self._open.add(reservation.id)  # not counted: it can be tried again
            raise
        return True

    async def record(self, slug: str, period: str, generator: str, price_usd: float) -> None:
        """Count a generation made for a project with no quota and no budget (nothing was
        reserved: there was nothing to hold it against)."""
        price = micro_usd(price_usd)
        assert price is not None
        await self._add(slug, check_period(period), generator, 1, price, price)

    async def _add(
        self, slug: str, period: str, generator: str, generations: int, micro: int, cost: int
    ) -> None:
        """Add to the month's counters (`generations`, `micro`) and the generator's (one,
        at `cost`), in the next group commit; answers once it is committed."""
        for counts, key, add in (
            (self._periods, (slug, period), (generations, micro)),
            (self._generators, (slug, period, generator), (1, cost)),
        ):
            was = counts.get(key, (0, 0))
            counts[key] = (was[0] + add[0], was[1] + add[1])
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._commit(self._next))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.shield(self._next)

    async def _commit(self, done: asyncio.Future[None]) -> None:
        async with self._committing:  # one commit at a time; arrivals meanwhile wait for it
            periods, generators = self._periods, self._generators
            self._periods, self._generators, self._next = {}, {}, None
            try:
                await self._run(usagetx.ledger(periods, generators), "write")
            except asyncio.CancelledError:
                done.cancel()
                raise
            except Exception as exc:
                done.set_exception(exc)
                done.exception()  # each caller raises it; none is left unretrieved
            else:
                done.set_result(None)

    async def usage(self, slug: str, period: str) -> Usage:
        return await self._run(usagetx.usage(slug, check_period(period)), "read")

    # --- rate limits ----------------------------------------------------------------------

    async def hit_rate(self, slug: str, client: str, limit: int | None, now: float) -> RateDecision:
        """A miss of `client` (its IP) on the project, counted if fewer than `limit` fell in
        the minute before `now` (None: no limit, nothing counted)."""
        if limit is None:
            return RateDecision(True)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidProject("rate_limit: must be a whole number, 1 or more", "rate_limit")
        minute = math.floor(now / 60)
        sweep = minute > self._swept_minute
        self._swept_minute = max(self._swept_minute, minute)
        return await self._run(usagetx.hit_rate(slug, client[:100], limit, now, sweep), "write")
