"""The counters' transactions (quotas, budgets, rate limits), for both databases alike.

Each limit is held by one conditional statement, which the database re-checks against the
row as the last concurrent writer left it: PostgreSQL's `INSERT ... ON CONFLICT DO UPDATE
... WHERE` waits for a writer of the same row and evaluates the WHERE on its committed
version (READ COMMITTED); SQLite runs it inside `BEGIN IMMEDIATE`, one writer at a time.
So no number of concurrent requests, processes or replicas takes more than the limit.
"""

from __future__ import annotations

import math

from .control import RateDecision, Reservation, Usage, usd
from .controltx import Tx

RESERVE = """
INSERT INTO usage_periods (project, period, generations, micro_usd)
SELECT $1, $2, 1, CAST($3 AS bigint)
WHERE (CAST($4 AS bigint) IS NULL OR 0 < CAST($4 AS bigint))
  AND (CAST($5 AS bigint) IS NULL OR CAST($3 AS bigint) <= CAST($5 AS bigint))
ON CONFLICT (project, period) DO UPDATE
SET generations = usage_periods.generations + 1,
    micro_usd = usage_periods.micro_usd + excluded.micro_usd
WHERE (CAST($4 AS bigint) IS NULL OR usage_periods.generations < CAST($4 AS bigint))
  AND (CAST($5 AS bigint) IS NULL
       OR usage_periods.micro_usd + excluded.micro_usd <= CAST($5 AS bigint))
RETURNING generations
"""
COUNTED = "SELECT generations, micro_usd FROM usage_periods WHERE project = $1 AND period = $2"
ADD_PERIOD = """
INSERT INTO usage_periods (project, period, generations, micro_usd)
VALUES ($1, $2, CAST($3 AS bigint), CAST($4 AS bigint))
ON CONFLICT (project, period) DO UPDATE
SET generations = usage_periods.generations + excluded.generations,
    micro_usd = usage_periods.micro_usd + excluded.micro_usd
"""
ADD_GENERATOR = """
INSERT INTO usage_generators (project, period, generator, generations, micro_usd)
VALUES ($1, $2, $3, CAST($4 AS bigint), CAST($5 AS bigint))
ON CONFLICT (project, period, generator) DO UPDATE
SET generations = usage_generators.generations + excluded.generations,
    micro_usd = usage_generators.micro_usd + excluded.micro_usd
"""
# A sliding minute: the hits of this minute, and those of the one before weighted by how
# much of it the last 60 s still cover (`$5`: that weighted count, times 1000).
HIT = """
INSERT INTO rate_hits (project, client, minute, hits)
SELECT $1, $2, CAST($3 AS bigint), 1
WHERE CAST($5 AS bigint) < CAST($4 AS bigint) * 1000
ON CONFLICT (project, client, minute) DO UPDATE
SET hits = rate_hits.hits + 1
WHERE rate_hits.hits * 1000 + CAST($5 AS bigint) < CAST($4 AS bigint) * 1000
RETURNING hits
"""
WINDOWS = (
    "SELECT minute, hits FROM rate_hits "
    "WHERE project = $1 AND client = $2 AND minute >= CAST($3 AS bigint) - 1"
)
SWEEP = "DELETE FROM rate_hits WHERE minute < CAST($1 AS bigint)"
TRIES = 3  # a refusal that neither limit explains (a release came between) is tried again


def reserve(
    reservation_id: str,
    slug: str,
    period: str,
    price: int,
    quota: int | None,
    budget: int | None,
) -> Tx[Reservation]:
    """One generation of the month, if the quota and the budget (micro-dollars) allow it."""
    generations = 0
    for _ in range(TRIES):
        rows = yield (RESERVE, (slug, period, price, quota, budget))
        if rows:
            left = None if quota is None else quota - int(rows[0][0])
            return Reservation(reservation_id, slug, period, True, price, left)
        rows = yield (COUNTED, (slug, period))
        generations, spent = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        if quota is not None and generations >= quota:
            return Reservation(reservation_id, slug, period, False, price, 0, "quota")
        if budget is not None and spent + price > budget:
            break
    left = None if quota is None else max(quota - generations, 0)
    return Reservation(reservation_id, slug, period, False, price, left, "budget")


def release(r: Reservation) -> Tx[None]:
    yield (
        "UPDATE usage_periods SET generations = generations - 1, "
        "micro_usd = micro_usd - CAST($3 AS bigint) WHERE project = $1 AND period = $2",
        (r.project, r.period, r.micro_usd),
    )


Counts = dict[tuple[str, ...], tuple[int, int]]  # generations and micro-dollars to add


def ledger(periods: Counts, generators: Counts) -> Tx[None]:
    """Generations already made, added to the month's counters and each generator's: many
    settlements (and records of projects with no limit) in one transaction, one statement
    a row, taken in key order so that concurrent writers lock rows in the same order."""
    for (slug, period), (generations, micro) in sorted(periods.items()):
        if generations or micro:
            yield (ADD_PERIOD, (slug, period, generations, micro))
    for (slug, period, generator), (generations, micro) in sorted(generators.items()):
        yield (ADD_GENERATOR, (slug, period, generator, generations, micro))


def usage(slug: str, period: str) -> Tx[Usage]:
    rows = yield (COUNTED, (slug, period))
    generations, spent = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
    rows = yield (
        "SELECT generator, generations, micro_usd FROM usage_generators "
        "WHERE project = $1 AND period = $2 ORDER BY generator",
        (slug, period),
    )
    by_generator = {r[0]: (int(r[1]), usd(int(r[2]))) for r in rows}
    return Usage(period, generations, usd(spent), by_generator)


def hit_rate(slug: str, client: str, limit: int, now: float, sweep: bool) -> Tx[RateDecision]:
    """One miss of `client`, if fewer than `limit` fall in the sliding minute before `now`."""
    minute = math.floor(now / 60)
    covered = 1.0 - (now / 60 - minute)  # how much of the minute before the last 60 s cover
    if sweep:
        yield (SWEEP, (minute - 1,))
    rows = yield (WINDOWS, (slug, client, minute))
    before = sum(int(hits) for at, hits in rows if at == minute - 1)
    weighted = math.ceil(before * covered * 1000)
    rows = yield (HIT, (slug, client, minute, limit, weighted))
    if rows:
        left = limit - int(rows[0][0]) - weighted / 1000
        return RateDecision(True, 0.0, max(math.floor(left), 0))
    rows = yield (WINDOWS, (slug, client, minute))
    this = sum(int(hits) for at, hits in rows if at == minute)
    return RateDecision(False, wait_s(limit, this, before, covered), 0)


def wait_s(limit: int, this: int, before: int, covered: float) -> float:
    """Seconds until `this + before * covered` falls under `limit`, the window sliding on."""
    if this < limit:  # the minute before still weighs: wait until enough of it has slid out
        covered_then = (limit - this) / before
        return max((covered - covered_then) * 60, 0.0) + 0.001
    # This minute is full: in the next one, it is the minute before, and slides out in turn.
    return covered * 60 + max(1.0 - limit / this, 0.0) * 60 + 0.001
