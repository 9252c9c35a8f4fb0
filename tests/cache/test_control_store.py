"""The control plane's store on both databases: a real PostgreSQL (tests/services.py) and a
real SQLite file. Projects, signing secrets, API keys, the version counter, and quotas,
budgets and rate limits that stay exact across connections, pools and processes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from promptpix.cache.backends import build_backends
from promptpix.cache.control import (
    ApiKey,
    InvalidProject,
    LastSecret,
    Project,
    ProjectExists,
    ProjectNotFound,
    current_period,
    period_end,
)
from promptpix.cache.index import original_row
from promptpix.cache.pgcontrol import PgControlStore
from promptpix.cache.pgindex import PgIndex
from promptpix.cache.postgres import Postgres
from promptpix.cache.schema import MIGRATIONS
from promptpix.cache.settings import CacheSettings
from promptpix.cache.sqlcontrol import SqlControlStore
from promptpix.cache.sqlite import SQLiteDatabase
from promptpix.cache.sqlitecontrol import SQLiteControlStore
from promptpix.cache.sqliteindex import SQLiteIndex
from tests.cache import places
from tests.services import PostgreSQL

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parent.parent
PERIOD = "2025-06"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    server = PostgreSQL(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.remove()


def control_store(db: Postgres | SQLiteDatabase) -> SqlControlStore:
    return PgControlStore(db) if isinstance(db, Postgres) else SQLiteControlStore(db)


class Place(places.Place):
    def store(self, **options: Any) -> contextlib.AbstractAsyncContextManager[SqlControlStore]:
        """A store on connections of its own, as another replica or worker would have."""
        return self.opened(control_store, **options)


@pytest.fixture(params=places.KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return Place.fresh(request, tmp_path, "control")


def b64_bytes(text: str) -> int:
    return len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def test_the_demo_project_is_every_default() -> None:
    demo = Project("demo")
    assert (demo.name, demo.style, demo.system_prompt, demo.signing) == ("", "", "", "off")
    assert (demo.quota, demo.rate_limit, demo.budget, demo.generators) == (None,) * 4
    assert (demo.enhance, demo.semantic_reuse) == (False, False)
    assert (demo.on_failure, demo.style_version, demo.secrets) == ("placeholder", 1, ())


def test_periods_are_utc_months() -> None:
    assert current_period(1735689599) == "2024-12"  # 2024-12-31 23:59:59 UTC
    assert current_period(1735689600) == "2025-01"
    assert period_end("2024-12") == 1735689600
    assert period_end("2025-02") == 1740787200  # 2025-03-01
    for bad in ("2025-13", "2025-1", "25-01", "2025-01-01"):
        with pytest.raises(InvalidProject, match="period"):
            period_end(bad)


def test_projects_are_created_listed_read_and_changed(place: Place) -> None:
    async def run() -> None:
        async with place.store() as store:
            made, secret = await store.create_project(
                Project(
                    "acme",
                    name="Acme",
                    style="icon",
                    quota=100,
                    rate_limit=30,
                    budget=12.34,
                    generators=("openai", "local"),
                    enhance=True,
                )
            )
            assert secret is None and made.style_version == 1 and made.created_at > 0
            with pytest.raises(ProjectExists):
                await store.create_project(Project("acme"))
            await store.create_project(Project("beta"))
            assert [p.slug for p in await store.list_projects()] == ["acme", "beta"]
            got = await store.get_project("acme")
            assert got == made and got.budget == 12.34 and got.generators == ("openai", "local")
            assert await store.get_project("nope") is None and await store.load("nope") is None

            renamed, _ = await store.update_project("acme", name="Acme Inc", quota=None)
            assert (renamed.name, renamed.quota, renamed.style_version) == ("Acme Inc", None, 1)
            same, _ = await store.update_project("acme", style="icon")
            assert same.style_version == 1  # the same style is no change
            restyled, _ = await store.update_project("acme", style="logo")
            prompted, _ = await store.update_project("acme", system_prompt="Flat colours.")
            assert (restyled.style_version, prompted.style_version) == (2, 3)
            assert await store.get_project("acme") == prompted

            with pytest.raises(ProjectNotFound):
                await store.update_project("nope", name="x")
            for changes, param in [
                ({"slug": "other"}, "slug"),
                ({"style_version": 9}, "style_version"),
                ({"colour": "red"}, "colour"),
                ({"quota": -1}, "quota"),
                ({"rate_limit": 0}, "rate_limit"),
                ({"budget": -0.01}, "budget"),
                ({"signing": "sometimes"}, "signing"),
                ({"on_failure": "crash"}, "on_failure"),
                ({"generators": ["Not An Id"]}, "generators"),
                ({"enhance": "yes"}, "enhance"),
            ]:
                with pytest.raises(InvalidProject) as refused:
                    await store.update_project("acme", **changes)
                assert refused.value.param == param
            assert await store.get_project("acme") == prompted  # refusals change nothing
            for slug in ("", "-x", "Acme", "a" * 64, "a_b"):
                with pytest.raises(InvalidProject) as refused:
                    await store.create_project(Project(slug))
                assert refused.value.param == "slug"

    asyncio.run(run())


def test_signing_secrets_are_made_rotated_and_never_listed(place: Place) -> None:
    async def run() -> None:
        async with place.store() as store:
            _, first = await store.create_project(Project("signed", signing="required"))
            assert first is not None and b64_bytes(first) == 32
            loaded = await store.load("signed")
            assert loaded is not None and loaded.secrets == (first,)
            assert first not in repr(loaded)
            assert (await store.get_project("signed")).secrets == ()  # type: ignore[union-attr]
            assert all(p.secrets == () for p in await store.list_projects())

            second_id, second = await store.add_secret("signed")
            assert b64_bytes(second) == 32 and second != first
            assert (await store.load("signed")).secrets == (first, second)  # type: ignore[union-attr]
            listed = await store.list_secrets("signed")
            assert [s.id for s in listed][1] == second_id and all(s.created_at for s in listed)
            assert first not in repr(listed) and second not in repr(listed)

            assert await store.delete_secret("signed", listed[0].id)
            assert not await store.delete_secret("signed", listed[0].id)
            assert (await store.load("signed")).secrets == (second,)  # type: ignore[union-attr]
            with pytest.raises(LastSecret):
                await store.delete_secret("signed", second_id)
            await store.update_project("signed", signing="off")
            assert await store.delete_secret("signed", second_id)
            # Turned on again with no secret left: a first one is made and shown.
            on, made = await store.update_project("signed", signing="generation")
            assert on.signing == "generation" and made is not None
            assert (await store.load("signed")).secrets == (made,)  # type: ignore[union-attr]
            # Already on, or on with a secret kept: nothing new.
            assert (await store.update_project("signed", signing="required"))[1] is None

            _, none = await store.create_project(Project("plain"))
            assert none is None and await store.list_secrets("plain") == []
            _, kept = await store.add_secret("plain")
            assert (await store.update_project("plain", signing="required"))[1] is None
            assert (await store.load("plain")).secrets == (kept,)  # type: ignore[union-attr]
            with pytest.raises(ProjectNotFound):
                await store.add_secret("nope")
            with pytest.raises(ProjectNotFound):
                await store.list_secrets("nope")

    asyncio.run(run())


def test_api_keys_are_found_only_whole_and_unrevoked(place: Place) -> None:
    async def run() -> None:
        async with place.store() as store:
            await store.create_project(Project("acme"))
            await store.create_project(Project("beta"))
            key, text = await store.create_key("acme", "ci", ["read", "generate"])
            assert key.scopes == ("generate", "read") and key.revoked_at is None
            prefix, key_id, secret = text.split("_", 2)
            assert (prefix, key_id) == ("ppk", key.id) and b64_bytes(secret) == 32
            assert await store.find_key(text) == key

            other, other_text = await store.create_key("beta", "", ("assets",))
            assert await store.find_key(other_text) == other
            flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
            for wrong in [
                f"ppk_{key.id}_{flipped}",  # the right id, another secret
                f"ppk_{key.id}_{other_text.split('_', 2)[2]}",  # another key's secret
                f"ppk_{'0' * 16}_{secret}",  # an unknown id
                text[:-1],
                text + "x",
                "",
                "Bearer " + text,
                f"ppk_{key.id}",
            ]:
                assert await store.find_key(wrong) is None

            # Nothing of the key's text nor of its hash in what the store answers.
            kept_hash = hashlib.sha256(secret.encode()).digest()
            listed = await store.list_keys("acme")
            assert listed == [key]
            for shown in (repr(key), repr(listed), msgspec.json.encode(listed).decode()):
                assert secret not in shown and kept_hash.hex() not in shown
            assert not hasattr(key, "hash") and "hash" not in ApiKey.__struct_fields__
            rows = await place.rows(f"SELECT * FROM api_keys WHERE id = '{key.id}'")
            assert bytes(rows[0][4]) == kept_hash and not any(secret in str(c) for c in rows[0])

            assert not await store.revoke_key("beta", key.id)  # another project's key
            assert await store.revoke_key("acme", key.id)
            assert not await store.revoke_key("acme", key.id)
            assert await store.find_key(text) is None
            (revoked,) = await store.list_keys("acme")
            assert revoked.revoked_at is not None and revoked.id == key.id
            assert await store.find_key(other_text) == other

            for scopes in ([], ["admin"], "read"):
                with pytest.raises(InvalidProject) as refused:
                    await store.create_key("acme", "x", scopes)
                assert refused.value.param == "scopes"
            with pytest.raises(ProjectNotFound):
                await store.create_key("nope", "x", ["read"])
            with pytest.raises(ProjectNotFound):
                await store.list_keys("nope")

    asyncio.run(run())


def test_the_version_changes_with_every_write_and_every_store_sees_it(place: Place) -> None:
    async def run() -> None:
        async with place.store() as one, place.store() as two:
            seen = [await two.version()]

            async def changed() -> None:
                now = await two.version()
                assert now > seen[-1]
                seen.append(now)

            await one.create_project(Project("acme", signing="required"))
            await changed()
            assert (await two.load("acme")).signing == "required"  # type: ignore[union-attr]
            await one.update_project("acme", name="Acme")
            await changed()
            secret_id, _ = await one.add_secret("acme")
            await changed()
            await one.delete_secret("acme", secret_id)
            await changed()
            key, text = await one.create_key("acme", "ci", ["generate"])
            await changed()
            assert await two.find_key(text) == key
            await one.revoke_key("acme", key.id)
            await changed()
            assert await two.find_key(text) is None

            # Reads, refusals and the counters leave it as it is.
            await one.list_projects()
            await one.load("acme")
            await one.list_keys("acme")
            with pytest.raises(ProjectExists):
                await one.create_project(Project("acme"))
            with pytest.raises(InvalidProject):
                await one.update_project("acme", quota=-5)
            await one.reserve("acme", PERIOD, 0.01, None, None)
            await one.hit_rate("acme", "10.0.0.1", 5, time.time())
            assert await one.version() == await two.version() == seen[-1]

    asyncio.run(run())


async def reserve_many(
    store: SqlControlStore, n: int, price: float, quota: int | None, budget: float | None
) -> list[tuple[bool, str | None]]:
    answers = await asyncio.gather(
        *(store.reserve("acme", PERIOD, price, quota, budget) for _ in range(n))
    )
    return [(r.granted, r.stopped_by) for r in answers]


def test_with_10_left_100_at_once_on_one_pool_make_10(place: Place) -> None:
    async def run() -> None:
        async with place.store() as store:
            for _ in range(5):  # 5 of 15 already used
                assert (await store.reserve("acme", PERIOD, 0.02, 15, None)).granted
            answers = await reserve_many(store, 100, 0.02, 15, None)
            assert answers.count((True, None)) == 10
            assert answers.count((False, "quota")) == 90
            usage = await store.usage("acme", PERIOD)
            assert usage.generations == 15 and usage.estimated_usd == 0.3
            refused = await store.reserve("acme", PERIOD, 0.02, 15, None)
            assert (refused.granted, refused.remaining, refused.stopped_by) == (False, 0, "quota")
            other = await store.reserve("acme", "2025-07", 0.02, 15, None)
            assert other.granted and other.remaining == 14  # another month counts anew

    asyncio.run(run())


def test_with_10_left_100_at_once_on_two_pools_make_10(place: Place) -> None:
    async def run() -> None:
        async with place.store() as one, place.store() as two:
            await one.reserve("acme", PERIOD, 0.0, 10, None)
            await two.reserve("acme", PERIOD, 0.0, 10, None)
            halves = await asyncio.gather(
                reserve_many(one, 50, 0.0, 12, None), reserve_many(two, 50, 0.0, 12, None)
            )
            answers = halves[0] + halves[1]
            assert answers.count((True, None)) == 10
            assert answers.count((False, "quota")) == 90
            assert (await two.usage("acme", PERIOD)).generations == 12

    asyncio.run(run())


CHILD = """
import asyncio, json, sys, time
from pathlib import Path
from promptpix.cache.postgres import Postgres
from promptpix.cache.sqlite import SQLiteDatabase
from promptpix.cache.pgcontrol import PgControlStore
from promptpix.cache.sqlite import SQLiteDatabase
from promptpix.cache.sqlitecontrol import SQLiteControlStore

kind, target, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])

async def main():
    if kind == "postgresql":
        db = Postgres(target)
        store = PgControlStore(db)
    else:
        db = SQLiteDatabase(Path(target))
        store = SQLiteControlStore(db)
    await store.start()
    await asyncio.sleep(max(start_at - time.time(), 0))
    answers = await asyncio.gather(
        *(store.reserve("acme", "2025-06", 0.039, 13, None) for _ in range(50))
    )
    print(json.dumps([[r.granted, r.stopped_by] for r in answers]))
    await db.close()

asyncio.run(main())
"""


def test_with_10_left_100_at_once_from_two_processes_make_10(place: Place) -> None:
    async def used_three() -> None:
        async with place.store() as store:
            for _ in range(3):
                assert (await store.reserve("acme", PERIOD, 0.039, 13, None)).granted

    asyncio.run(used_three())
    start_at = str(time.time() + 3.0)  # both connected and waiting by then
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, place.kind, place.target, start_at],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    answers: list[list[Any]] = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        answers += json.loads(out)
    assert answers.count([True, None]) == 10
    assert answers.count([False, "quota"]) == 90

    async def counted() -> tuple[int, float]:
        async with place.store() as store:
            usage = await store.usage("acme", PERIOD)
            return usage.generations, usage.estimated_usd

    assert asyncio.run(counted()) == (13, 0.507)


def test_a_budget_of_039_at_0039_each_grants_10_and_sums_stay_exact(place: Place) -> None:
    async def run() -> None:
        async with place.store() as store:
            answers = await reserve_many(store, 30, 0.039, None, 0.39)
            assert answers.count((True, None)) == 10
            assert answers.count((False, "budget")) == 20
            usage = await store.usage("acme", PERIOD)
            assert (usage.generations, usage.estimated_usd) == (10, 0.39)
            refused = await store.reserve("acme", PERIOD, 0.039, 50, 0.39)
            assert (refused.stopped_by, refused.remaining) == ("budget", 40)
            assert (await store.reserve("acme", PERIOD, 0, 50, 0.39)).granted  # free fits

            # A thousand small prices: a float sum would drift, the store's does not.
            prices = [0.001, 0.013, 0.0017] * 334
            held = await asyncio.gather(
                *(store.reserve("acme", "2025-08", p, None, None) for p in prices)
            )
            assert all(r.granted for r in held) and sum(prices) != 5.2438
            usage = await store.usage("acme", "2025-08")
            assert (usage.generations, usage.estimated_usd) == (1002, 5.2438)

    asyncio.run(run())


def test_release_makes_room_again_once(place: Place) -> None:
    async def run() -> None:
        async with place.store() as store:
            first = await store.reserve("acme", PERIOD, 0.04, 2, 1.0)
            second = await store.reserve("acme", PERIOD, 0.04, 2, 1.0)
            refused = await store.reserve("acme", PERIOD, 0.04, 2, 1.0)
            assert first.granted and second.granted and second.remaining == 0
            assert not refused.granted and refused.stopped_by == "quota"
            assert await store.release(second)
            assert not await store.release(second)  # once
            assert not await store.release(refused)  # nothing was held
            again = await store.reserve("acme", PERIOD, 0.04, 2, 1.0)
            assert again.granted and again.remaining == 0
            usage = await store.usage("acme", PERIOD)
            assert (usage.generations, usage.estimated_usd) == (2, 0.08)
            assert await store.settle(first, "openai", 0.04)
            assert not await store.release(first)  # settled: it is spent

    asyncio.run(run())


def test_counts_of_concurrent_generations_are_exact_and_committed_in_groups(
    place: Place,
) -> None:
    """Settlements and records arriving together share a transaction (a group commit), on
    two stores as two replicas would have; each call answers once its count is committed."""

    async def run() -> None:
        async with place.store() as one, place.store() as two:
            transactions = 0
            plain_run = one._run

            async def counted(transaction: Any, mode: Any) -> Any:
                nonlocal transactions
                transactions += 1
                return await plain_run(transaction, mode)

            one._run = counted  # type: ignore[method-assign]  # observed, not replaced
            held = await asyncio.gather(
                *(one.reserve("acme", PERIOD, 0.04, 1000, 100.0) for _ in range(100))
            )
            before = transactions
            await asyncio.gather(
                *(one.settle(r, "gemini", 0.039) for r in held),
                *(one.record("free", PERIOD, "local", 0) for _ in range(100)),
                *(two.record("free", PERIOD, "openai", 0.042) for _ in range(50)),
            )
            assert transactions - before <= 4, transactions - before  # not 200
            # Committed when the calls answered: the other store reads it at once.
            acme, free = await two.usage("acme", PERIOD), await two.usage("free", PERIOD)
            assert (acme.generations, acme.by_generator) == (100, {"gemini": (100, 3.9)})
            assert acme.estimated_usd == 3.9  # the reserved 0.04 each, corrected
            assert free.generations == 150
            assert free.by_generator == {"local": (100, 0.0), "openai": (50, 2.1)}
            assert free.estimated_usd == 2.1

    asyncio.run(run())


def test_settle_corrects_the_price_and_counts_each_generator(place: Place) -> None:
    async def run() -> None:
        async with place.store() as store:
            held = [await store.reserve("acme", PERIOD, 0.04, 10, None) for _ in range(6)]
            for r, (generator, price) in zip(
                held[:5],
                [
                    ("openai", 0.04),
                    ("openai", 0.04),
                    ("gemini", 0.039),
                    ("local", 0),
                    ("gemini", 0.039),
                ],
                strict=True,
            ):
                assert await store.settle(r, generator, price)
            assert not await store.settle(held[0], "openai", 0.04)  # once
            assert await store.release(held[5])
            usage = await store.usage("acme", PERIOD)
            assert usage.by_generator == {
                "gemini": (2, 0.078),
                "local": (1, 0.0),
                "openai": (2, 0.08),
            }
            assert usage.generations == 5 == sum(g for g, _ in usage.by_generator.values())
            assert usage.estimated_usd == 0.158
            assert (await store.usage("beta", PERIOD)) == msgspec.structs.replace(
                usage, generations=0, estimated_usd=0.0, by_generator={}
            )
            with pytest.raises(InvalidProject):
                await store.reserve("acme", PERIOD, -0.01, None, None)
            with pytest.raises(InvalidProject):
                await store.reserve("acme", "June", 0.01, None, None)

    asyncio.run(run())


def test_rate_limits_slide_over_the_minute_and_are_shared(place: Place) -> None:
    async def run() -> None:
        start = 1_800_000_000.0 - 1_800_000_000.0 % 60  # the start of a minute
        async with place.store() as one, place.store() as two:
            at = start + 10
            assert [(await one.hit_rate("acme", "ip1", 3, at)).allowed for _ in range(2)] == [
                True,
                True,
            ]
            third = await two.hit_rate("acme", "ip1", 3, at)  # another worker: the same count
            assert third.allowed and third.remaining == 0
            refused = await one.hit_rate("acme", "ip1", 3, at + 1)
            # Full this minute: the next one starts in 49 s, where these three still weigh
            # fully and then slide out.
            assert not refused.allowed and 49 < refused.retry_after_s < 50
            assert (await one.hit_rate("acme", "ip2", 3, at)).allowed  # another client
            assert (await one.hit_rate("beta", "ip1", 3, at)).allowed  # another project
            assert (await one.hit_rate("acme", "ip1", None, at)).allowed  # no limit

            # 10 s into the next minute the three weigh 2.5: one place, then 10 s to wait.
            later = start + 70
            assert (await two.hit_rate("acme", "ip1", 3, later)).allowed
            refused = await one.hit_rate("acme", "ip1", 3, later)
            assert not refused.allowed and 9.9 < refused.retry_after_s < 10.1
            assert (await one.hit_rate("acme", "ip1", 3, later + 10.1)).allowed

            # Exact at once too: 20 misses together, 4 places.
            answers = await asyncio.gather(
                *(s.hit_rate("acme", "ip3", 4, at) for s in (one, two) for _ in range(10))
            )
            assert sum(a.allowed for a in answers) == 4

            # Windows older than the minute before go as the minutes pass.
            await one.hit_rate("acme", "ip9", 3, start + 180)
            minutes = {r[0] for r in await place.rows("SELECT minute FROM rate_hits")}
            assert minutes == {int(start // 60) + 3}
            with pytest.raises(InvalidProject):
                await one.hit_rate("acme", "ip1", 0, at)

    asyncio.run(run())


def test_control_versions_apply_on_a_fresh_database_and_on_version_1(place: Place) -> None:
    old = place.database(migrations=MIGRATIONS[:1])

    async def at_version_1() -> None:
        index = PgIndex(old) if isinstance(old, Postgres) else SQLiteIndex(old)
        await index.start()
        await index.write([original_row({"key": "ab" * 32, "created_at": 1.0})])
        await old.close()

    asyncio.run(at_version_1())
    assert [r[0] for r in asyncio.run(place.rows("SELECT version FROM schema_migrations"))] == [1]

    async def upgraded() -> None:
        async with place.store() as store:
            await store.create_project(Project("acme"))
            assert [p.slug for p in await store.list_projects()] == ["acme"]
        versions = [r[0] for r in await place.rows("SELECT version FROM schema_migrations")]
        assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
        assert await place.rows("SELECT count(*) FROM originals") == [(1,)]

    asyncio.run(upgraded())


def test_a_fresh_database_has_every_version(place: Place) -> None:
    async def run() -> None:
        async with place.store() as store:
            assert await store.version() == 1 and await store.list_projects() == []
        versions = [r[0] for r in await place.rows("SELECT version FROM schema_migrations")]
        assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))

    asyncio.run(run())


def test_the_backends_carry_the_store_of_their_database(tmp_path: Path) -> None:
    embedded = build_backends(CacheSettings(store=f"file://{tmp_path}"))
    assert isinstance(embedded.control, SQLiteControlStore)
    assert embedded.control.db is embedded.database
    shared = build_backends(
        CacheSettings(store=f"file://{tmp_path}", database_url="postgresql://127.0.0.1:9/x")
    )
    assert isinstance(shared.control, PgControlStore)
    assert shared.control.db is shared.database
