"""The library (assets, the generations' history, flows) on both databases: a real
PostgreSQL (tests/services.py) and a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from promptpix.cache.backends import build_backends
from promptpix.cache.batch import GroupWrite
from promptpix.cache.library import MAX_PAGE, Asset, Flow, GenerationRecord, History
from promptpix.cache.postgres import Postgres
from promptpix.cache.schema import MIGRATIONS
from promptpix.cache.settings import CacheSettings
from promptpix.cache.sqlite import SQLiteDatabase
from promptpix.cache.sqllibrary import PgLibrary, SQLiteLibrary, SqlLibrary
from tests.cache import places
from tests.services import PostgreSQL

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    server = PostgreSQL(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.remove()


def sql_library(db: Postgres | SQLiteDatabase) -> SqlLibrary:
    return PgLibrary(db) if isinstance(db, Postgres) else SQLiteLibrary(db)


class Place(places.Place):
    def library(self) -> contextlib.AbstractAsyncContextManager[SqlLibrary]:
        """A library on connections of its own, as another replica or worker would have."""
        return self.opened(sql_library)


@pytest.fixture(params=places.KINDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return Place.fresh(request, tmp_path, "library")


def asset_id(n: int) -> str:
    return f"{n:064x}"


def an_asset(n: int, project: str = "acme", **fields: Any) -> Asset:
    values: dict[str, Any] = {
        "content_type": "image/png",
        "width": 640 + n,
        "height": 480,
        "bytes": 1000 + n,
        **fields,
    }
    return Asset(project, asset_id(n), **values)


def test_same_bytes_keep_their_row_and_an_alias_moves_between_assets(place: Place) -> None:
    async def run() -> None:
        async with place.library() as lib:
            first = await lib.put_asset(an_asset(1, focal_x=0.3, focal_y=0.7))
            assert first.created_at > 1e9 and first.alias is None  # 0 means "now"
            assert first == msgspec.structs.replace(
                an_asset(1, focal_x=0.3, focal_y=0.7), created_at=first.created_at
            )
            assert await lib.asset("acme", asset_id(1)) == first
            assert await lib.asset("other", asset_id(1)) is None
            assert await lib.asset("acme", asset_id(9)) is None

            # The same bytes again: the row stays, created_at with it.
            again = await lib.put_asset(an_asset(1, created_at=first.created_at + 50))
            assert again == first
            named = await lib.put_asset(an_asset(1, alias="logo"))
            assert named == msgspec.structs.replace(first, alias="logo")
            assert await lib.asset_by_alias("acme", "logo") == named

            # Uploaded under an existing alias: it moves, the earlier asset keeps its row.
            second = await lib.put_asset(an_asset(2, alias="logo", created_at=first.created_at + 1))
            assert second.alias == "logo" and second.created_at == first.created_at + 1
            assert await lib.asset_by_alias("acme", "logo") == second
            assert await lib.asset("acme", asset_id(1)) == first  # no alias now
            # The same bytes again without an alias keep the one they have.
            assert await lib.put_asset(an_asset(2)) == second
            assert await lib.put_asset(an_asset(1)) == first

            # An asset takes a second alias: it leaves its first one.
            await lib.put_asset(an_asset(1, alias="brand"))
            moved = await lib.put_asset(an_asset(1, alias="logo"))
            assert moved.alias == "logo"
            assert await lib.asset_by_alias("acme", "brand") is None
            assert (await lib.asset("acme", asset_id(2))).alias is None  # type: ignore[union-attr]

            # Aliases are per project.
            theirs = await lib.put_asset(an_asset(2, project="other", alias="logo"))
            assert await lib.asset_by_alias("other", "logo") == theirs
            assert await lib.asset_by_alias("acme", "logo") == moved
            assert await lib.asset_by_alias("acme", "nope") is None

            # Delete: the row and its alias go, another project's row stays.
            assert await lib.delete_asset("acme", asset_id(1))
            assert not await lib.delete_asset("acme", asset_id(1))
            assert await lib.asset("acme", asset_id(1)) is None
            assert await lib.asset_by_alias("acme", "logo") is None
            assert await lib.asset_by_alias("other", "logo") == theirs
            # The alias is free again: a new upload takes it.
            third = await lib.put_asset(an_asset(3, alias="logo"))
            assert await lib.asset_by_alias("acme", "logo") == third

    asyncio.run(run())


def test_uploads_under_one_alias_at_once_leave_it_on_exactly_one(place: Place) -> None:
    async def run() -> None:
        async with place.library() as one, place.library() as two:
            stores = (one, two)
            for n in range(3):
                await one.put_asset(an_asset(100 + n))
            for round_ in range(3):
                answers = await asyncio.gather(
                    *(
                        stores[n % 2].put_asset(an_asset(n, alias="hero"))
                        for n in range(round_ * 10, round_ * 10 + 10)
                    )
                )
                assert all(a.alias == "hero" for a in answers)
                holders = await place.rows(
                    "SELECT id FROM assets WHERE project = 'acme' AND alias = 'hero'"
                )
                assert len(holders) == 1
                held = await one.asset_by_alias("acme", "hero")
                assert held is not None and held.id == holders[0][0]
                assert held.id in {a.id for a in answers}
            assert len(await place.rows("SELECT id FROM assets")) == 33

    asyncio.run(run())


def test_two_assets_swapping_aliases_at_once_both_get_theirs(place: Place) -> None:
    async def run() -> None:
        async with place.library() as one, place.library() as two:
            await one.put_asset(an_asset(1, alias="left"))
            await one.put_asset(an_asset(2, alias="right"))
            for n in range(20):
                a, b = ("right", "left") if n % 2 == 0 else ("left", "right")
                await asyncio.gather(
                    one.put_asset(an_asset(1, alias=a)), two.put_asset(an_asset(2, alias=b))
                )
                # Whichever ran first, each holds the alias it asked for.
                assert (await one.asset_by_alias("acme", a)).id == asset_id(1)  # type: ignore[union-attr]
                assert (await one.asset_by_alias("acme", b)).id == asset_id(2)  # type: ignore[union-attr]

    asyncio.run(run())


def test_assets_are_listed_newest_first_in_pages(place: Place) -> None:
    async def run() -> None:
        async with place.library() as lib:
            base = 1_700_000_000.0
            times = [base + t for t in (5, 1, 3, 3, 3, 9, 2)]  # three made in the same second
            for n, created in enumerate(times):
                await lib.put_asset(an_asset(n, created_at=created))
            await lib.put_asset(an_asset(50, project="other", created_at=base + 100))
            expected = sorted(
                (an_asset(n, created_at=c) for n, c in enumerate(times)),
                key=lambda a: (-a.created_at, a.id),
            )
            assert await lib.assets("acme", 100) == expected
            seen: list[Asset] = []
            before: tuple[float, str] | None = None
            while page := await lib.assets("acme", 2, before):
                assert len(page) <= 2
                seen += page
                before = (page[-1].created_at, page[-1].id)
            assert seen == expected
            assert await lib.assets("acme", 0) == []
            assert await lib.assets("nobody", 10) == []
            assert [a.id for a in await lib.assets("other", 10)] == [asset_id(50)]

    asyncio.run(run())


def a_record(project: str = "acme", **fields: Any) -> GenerationRecord:
    values: dict[str, Any] = {"status": "queued", "created_at": 0.0, **fields}
    return GenerationRecord(uuid.uuid4().hex, project, **values)


def test_generations_are_added_updated_and_read_in_their_project(place: Place) -> None:
    async def run() -> None:
        async with place.library() as lib:
            made = await lib.add_generation(
                a_record(
                    flow_id="f1",
                    parent_id="p0",
                    aliases=["logo"],
                    metadata={"page": "home", "user.id": "7"},
                    answer={"prompt": {"given": "a fox"}},
                )
            )
            assert made.seq > 0 and made.created_at > 1e9  # 0 means "now"
            assert await lib.generation("acme", made.id) == made
            assert await lib.generation("other", made.id) is None
            assert await lib.generation("acme", "nope") is None
            later = await lib.add_generation(a_record(created_at=1_700_000_000.5))
            assert later.seq > made.seq and later.created_at == 1_700_000_000.5

            done = msgspec.structs.replace(
                made,
                status="completed",
                original_key="ab" * 32,
                generator="openai",
                aliases=["logo", "hero"],
                answer={"id": made.id, "image": {"width": 1024, "url": "/i/x"}, "n": [1, 2.5]},
                # Not what an update changes: these stay as they were.
                metadata={"page": "other"},
                flow_id="f2",
                parent_id=None,
                created_at=5.0,
            )
            await lib.update_generation(done)
            got = await lib.generation("acme", made.id)
            assert got == msgspec.structs.replace(
                done,
                metadata=made.metadata,
                flow_id="f1",
                parent_id="p0",
                created_at=made.created_at,
            )
            # Another project's update of the id changes nothing.
            await lib.update_generation(
                msgspec.structs.replace(done, project="other", status="failed")
            )
            assert (await lib.generation("acme", made.id)).status == "completed"  # type: ignore[union-attr]
            assert await lib.generation("acme", later.id) == later

    asyncio.run(run())


HistoryCase = tuple[History, Callable[[GenerationRecord], bool]]


def test_history_is_newest_first_and_every_filter_holds(place: Place) -> None:
    base = 1_700_000_000.0
    cases: list[HistoryCase] = [
        (History(), lambda r: True),
        (History(flow_id="f1"), lambda r: r.flow_id == "f1"),
        (History(alias="logo"), lambda r: "logo" in r.aliases),
        (History(alias="log"), lambda r: "log" in r.aliases),  # a whole alias, not a part
        (History(generator="openai"), lambda r: r.generator == "openai"),
        (History(since=base + 10), lambda r: r.created_at >= base + 10),
        (History(until=base + 10), lambda r: r.created_at < base + 10),
        (History(since=base + 5, until=base + 15), lambda r: base + 5 <= r.created_at < base + 15),
        (History(metadata=(("page", "home"),)), lambda r: r.metadata.get("page") == "home"),
        (
            History(metadata=(("page", "home"), ("user.id", "7"))),
            lambda r: r.metadata.get("page") == "home" and r.metadata.get("user.id") == "7",
        ),
        (History(metadata=(("a-b:c", "x"),)), lambda r: r.metadata.get("a-b:c") == "x"),
        (
            History(flow_id="f1", alias="logo", generator="gemini", since=base + 3),
            lambda r: (
                r.flow_id == "f1"
                and "logo" in r.aliases
                and r.generator == "gemini"
                and r.created_at >= base + 3
            ),
        ),
        (
            History(generator="openai", metadata=(("page", "home"), ("user.id", "7"))),
            lambda r: (
                r.generator == "openai"
                and r.metadata.get("page") == "home"
                and r.metadata.get("user.id") == "7"
            ),
        ),
        (History(generator="nobody"), lambda r: False),
    ]

    async def run() -> None:
        async with place.library() as lib:
            made: list[GenerationRecord] = []
            combos = list(
                itertools.product(
                    ("f1", None), (["logo"], ["hero", "logo"], []), ("openai", "gemini")
                )
            )
            for n, (flow, aliases, generator) in enumerate(combos * 2):
                metadata = {"page": ("home", "about")[n % 2], "user.id": str(n % 3)}
                if n % 5 == 0:
                    metadata["a-b:c"] = "x"
                made.append(
                    await lib.add_generation(
                        a_record(
                            flow_id=flow,
                            aliases=aliases,
                            generator=generator,
                            metadata=metadata,
                            created_at=base + n,
                        )
                    )
                )
            # Another project's records match no filter of this one.
            for _ in range(3):
                await lib.add_generation(
                    a_record("other", flow_id="f1", aliases=["logo"], generator="openai")
                )
            newest_first = made[::-1]
            assert [r.seq for r in newest_first] == sorted((r.seq for r in made), reverse=True)
            for filters, holds in cases:
                expected = [r for r in newest_first if holds(r)]
                assert await lib.generations("acme", filters, 100) == expected, filters
                # The same filters, page by page.
                seen: list[GenerationRecord] = []
                before: int | None = None
                while page := await lib.generations("acme", filters, 5, before):
                    seen += page
                    before = page[-1].seq
                assert seen == expected, filters
            assert len(await lib.generations("other", History(alias="logo"), 100)) == 3
            with pytest.raises(ValueError, match="metadata key"):
                await lib.generations("acme", History(metadata=(("a'b", "x"),)), 10)

    asyncio.run(run())


def test_a_page_is_at_most_max_page_and_one_more(place: Place) -> None:
    # The one more tells the API whether to answer a cursor for a next page.
    async def run() -> None:
        async with place.library() as lib:
            for _ in range(MAX_PAGE + 5):
                await lib.add_generation(a_record())
            for n in range(MAX_PAGE + 5):
                await lib.put_asset(an_asset(n))
            for limit, size in ((MAX_PAGE + 1, MAX_PAGE + 1), (MAX_PAGE + 50, MAX_PAGE + 1)):
                assert len(await lib.generations("acme", History(), limit)) == size
                assert len(await lib.assets("acme", limit)) == size
            assert len(await lib.generations("acme", History(), MAX_PAGE)) == MAX_PAGE
            assert await lib.generations("acme", History(), 0) == []

    asyncio.run(run())


def test_pages_stay_stable_while_records_arrive(place: Place) -> None:
    async def run() -> None:
        async with place.library() as lib, place.library() as other:
            existing = {(await lib.add_generation(a_record(generator="g"))).id for _ in range(60)}
            go, done = asyncio.Event(), asyncio.Event()
            added: list[str] = []
            added_by_page: list[int] = []  # how many the writers had added as each page came

            async def writer(store: SqlLibrary) -> None:
                await go.wait()
                while not done.is_set():
                    added.append((await store.add_generation(a_record(generator="g"))).id)
                    await asyncio.sleep(0.001)

            writers = [asyncio.create_task(writer((lib, other)[n % 2])) for n in range(4)]
            try:
                first = await lib.generations("acme", History(generator="g"), 7)
                go.set()  # from the first page on, new records arrive
                seen = [r.id for r in first]
                before = first[-1].seq
                while True:
                    await asyncio.sleep(0.005)  # the writers go on between pages
                    page = await lib.generations("acme", History(generator="g"), 7, before)
                    added_by_page.append(len(added))
                    if not page:
                        break
                    seen += [r.id for r in page]
                    before = page[-1].seq
            finally:
                done.set()
                await asyncio.gather(*writers)
            assert len(seen) == len(set(seen)) == len(existing)  # no duplicates
            assert set(seen) == existing
            # The writers really did add records before and while the pages were read.
            assert 0 < added_by_page[0] < added_by_page[-1]
            # A fresh first page starts with them.
            fresh = await lib.generations("acme", History(generator="g"), 7)
            assert {r.id for r in fresh} <= set(added)

    asyncio.run(run())


def test_flows_keep_their_steps_oldest_first(place: Place) -> None:
    async def run() -> None:
        async with place.library() as lib:
            flow = await lib.add_flow(Flow("flow1", "acme", name="landing page"))
            assert flow.created_at > 1e9 and flow.name == "landing page"
            assert await lib.flow("acme", "flow1") == flow
            assert await lib.flow("other", "flow1") is None
            assert await lib.flow("acme", "nope") is None
            assert await lib.flow_steps("acme", "flow1") == []
            kept = await lib.add_flow(Flow("flow2", "acme", created_at=1_700_000_000.0))
            assert await lib.flow("acme", "flow2") == kept and kept.name == ""

            steps: list[GenerationRecord] = []
            parent: str | None = None
            for n in range(4):
                step = await lib.add_generation(a_record(flow_id="flow1", parent_id=parent))
                await lib.add_generation(a_record(flow_id="flow2"))  # another flow's
                await lib.add_generation(a_record("other", flow_id="flow1"))  # another project's
                if n == 1:
                    await lib.update_generation(msgspec.structs.replace(step, status="completed"))
                    step = msgspec.structs.replace(step, status="completed")
                steps.append(step)
                parent = step.id
            assert await lib.flow_steps("acme", "flow1") == steps
            assert [s.parent_id for s in steps] == [None, *(s.id for s in steps[:-1])]
            assert len(await lib.flow_steps("acme", "flow2")) == 4
            assert len(await lib.flow_steps("other", "flow1")) == 4

    asyncio.run(run())


def test_a_database_of_version_2_takes_the_library_tables(place: Place) -> None:
    tables = {"assets", "api_generations", "flows"}
    if place.kind == "postgresql":
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"

    async def run() -> None:
        old = place.database(migrations=MIGRATIONS[:2])
        await old.start()
        await old.close()
        assert [r[0] for r in await place.rows("SELECT version FROM schema_migrations")] == [1, 2]
        assert not tables & {r[0] for r in await place.rows(sql)}
        async with place.library() as lib:
            made = await lib.put_asset(an_asset(1, alias="logo"))
            assert await lib.asset_by_alias("acme", "logo") == made
        versions = [r[0] for r in await place.rows("SELECT version FROM schema_migrations")]
        assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
        assert tables <= {r[0] for r in await place.rows(sql)}
        # The alias index is unique: a second row under one alias is refused.
        insert = (
            "INSERT INTO assets (project, id, alias, content_type, width, height, bytes, "
            "focal_x, focal_y, created_at) VALUES ('p', '{}', 'a', 'image/png', 1, 1, 1, "
            "0.5, 0.5, 1)"
        )
        await place.rows(insert.format("x"))
        with pytest.raises((asyncpg.UniqueViolationError, sqlite3.IntegrityError)):
            await place.rows(insert.format("y"))

    asyncio.run(run())


def test_the_backends_carry_the_library_of_their_database(tmp_path: Path) -> None:
    embedded = build_backends(CacheSettings(store=f"file://{tmp_path}"))
    assert isinstance(embedded.library, SQLiteLibrary)
    assert embedded.library.db is embedded.database
    shared = build_backends(
        CacheSettings(store=f"file://{tmp_path}", database_url="postgresql://127.0.0.1:9/x")
    )
    assert isinstance(shared.library, PgLibrary)
    assert shared.library.db is shared.database


def test_records_written_together_share_one_transaction_and_all_arrive(place: Place) -> None:
    async def run() -> None:
        async with place.library() as lib:
            calls: list[int] = []

            async def write(records: list[GenerationRecord]) -> None:
                calls.append(len(records))
                await lib.add_generations(records)

            group = GroupWrite(write)
            records = [a_record(generator=f"g{i}") for i in range(40)]
            first = asyncio.create_task(group.add(records[0]))
            await asyncio.sleep(0.001)  # its write is under way, held for no one
            await asyncio.gather(first, *(group.add(r) for r in records[1:]))
            stored = await lib.generations("acme", History(), MAX_PAGE)
            assert {r.id for r in stored} == {r.id for r in records}
            assert calls == [1, 39]  # those that arrived meanwhile went together

            duplicate = GroupWrite(lib.add_generations)
            errors = (sqlite3.IntegrityError, asyncpg.UniqueViolationError)
            with pytest.raises(errors):  # the id exists: the whole group fails, and says so
                await asyncio.gather(duplicate.add(records[0]), duplicate.add(a_record()))

    asyncio.run(run())
