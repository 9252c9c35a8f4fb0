"""What a generation may cost a project: its rate limit, its monthly quota and budget.

Only a generation about to run is charged: hits, new variants of a stored original and
waiters on another request's generation cost nothing. For a project with a quota or a
budget the single-flight leader reserves before the chain runs (one conditional statement
in the shared database, so the count is exact across workers and replicas), settles at the
price of the generator that answered, and releases when the generation failed or only the
offline stand-in answered. A project with neither has nothing to hold: its generations are
only recorded once made. Settlements and records share group commits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from promptpix.cache.control import (
    ControlStore,
    Project,
    Reservation,
    current_period,
    period_end,
)
from promptpix.generators.chain import Chain

from .errors import BudgetExceeded, DatabaseDown, QuotaExceeded, RateLimited
from .failures import DATABASE_DOWN
from .metrics import Metrics

log = logging.getLogger("promptpix.spending")

MONTH_S = 2_592_000  # the quota's window as the RateLimit fields state it (30 days)


@dataclass(frozen=True, slots=True)
class Held:
    """A generation about to run: settled or given back once the chain has answered.
    `reservation` is what the quota or budget holds, None for a project with neither (its
    generation is recorded for `period` once made)."""

    reservation: Reservation | None
    period: str


class Spending:
    def __init__(self, store: ControlStore, chain: Chain, metrics: Metrics) -> None:
        self.store = store
        self.chain = chain
        self.metrics = metrics

    def charge(self, project: Project, client: str) -> Charge:
        return Charge(self, project, client)


class Charge:
    """One request's right to make one generation, checked only when it is about to."""

    def __init__(self, spending: Spending, project: Project, client: str) -> None:
        self.spending = spending
        self.project = project
        self.client = client

    async def reserve(self, candidates: list[str]) -> Held:
        """Hold the generation, or raise 429 (`rate_limited`, `quota_exceeded`,
        `budget_exceeded`) before anything is generated."""
        try:
            return await self._reserve(candidates)
        except DATABASE_DOWN as exc:  # only a project with a limit asks the database here
            raise DatabaseDown(
                "the database that keeps this project's limits cannot be reached; nothing "
                "was generated: try again shortly",
                retry_after=5,
            ) from exc

    async def _reserve(self, candidates: list[str]) -> Held:
        project, store = self.project, self.spending.store
        now = time.time()
        if project.rate_limit is not None:
            decision = await store.hit_rate(project.slug, self.client, project.rate_limit, now)
            if not decision.allowed:
                self._refused("rate_limited")
                raise RateLimited(
                    f"more than {project.rate_limit} new images a minute from this client; "
                    "images already made are still served",
                    retry_after=int(decision.retry_after_s + 0.999),
                    policy="minute",
                    quota=project.rate_limit,
                    window_s=60,
                    left=0,
                )
        period = current_period(now)
        if project.quota is None and project.budget is None:
            return Held(None, period)
        # The most the request may cost: the dearest generator it may be answered by.
        price = max((self.spending.chain.price(g) for g in candidates), default=0.0)
        held = await store.reserve(project.slug, period, price, project.quota, project.budget)
        if held.granted:
            return Held(held, period)
        until = int(period_end(period) - now)
        if held.stopped_by == "budget":
            self._refused("budget_exceeded")
            raise BudgetExceeded(
                f"this month's budget of ${project.budget:g} would be passed; images already "
                "made are still served",
                retry_after=until,
                policy="monthly-usd-cents",  # the draft's quota is an integer
                quota=round((project.budget or 0) * 100),
                window_s=MONTH_S,
                left=0,
            )
        self._refused("quota_exceeded")
        raise QuotaExceeded(
            f"this month's {project.quota} new images are used up; images already made are "
            "still served",
            retry_after=until,
            policy="monthly",
            quota=project.quota or 0,
            window_s=MONTH_S,
            left=0,
        )

    async def settle(self, held: Held, generator: str) -> None:
        """The generation happened, by `generator`: counted at its price."""
        price = self.spending.chain.price(generator)
        metrics = self.spending.metrics
        metrics.cost_usd.inc(self.project.slug, generator, amount=price)
        metrics.quota_used.inc(self.project.slug)
        store = self.spending.store
        try:
            if held.reservation is None:
                await store.record(self.project.slug, held.period, generator, price)
            else:
                await store.settle(held.reservation, generator, price)
        except DATABASE_DOWN as exc:  # the image is made: it is stored and served anyway
            log.warning("a generation of %s was not settled: %s", self.project.slug, exc)

    async def release(self, held: Held) -> None:
        """Nothing was generated that counts (a failure, or only the stand-in answered)."""
        if held.reservation is None:
            return
        try:
            await self.spending.store.release(held.reservation)
        except DATABASE_DOWN as exc:
            log.warning("a reservation of %s was not given back: %s", self.project.slug, exc)

    def _refused(self, code: str) -> None:
        self.spending.metrics.refusals.inc(code, self.project.slug)
