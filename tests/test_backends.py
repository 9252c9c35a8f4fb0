"""Production backends against real servers: SeaweedFS (S3) and PostgreSQL, several replicas."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from cache.s3store import S3Store
from tests.services import Gateway, PostgreSQL, SeaweedFS, free_port, wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("weed")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    server = PostgreSQL(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.stop()


def s3_env(endpoint: str, bucket: str, spool: Path, dsn: str = "") -> dict[str, str]:
    env = {
        "PROMPTPIX_STORE": f"s3://{bucket}/images",
        "PROMPTPIX_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "promptpix",
        "AWS_SECRET_ACCESS_KEY": "promptpix-secret",
        "AWS_REGION": "us-east-1",
        "PROMPTPIX_SPOOL_DIR": str(spool),
        "PROMPTPIX_LEASE_TTL_S": "2",
    }
    if dsn:
        env["PROMPTPIX_DATABASE_URL"] = dsn
    return env


def generations(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.findall(r'^promptpix_generations_total\{[^}]*outcome="success"\} (\S+)$', text, re.M)
    return int(sum(float(v) for v in found))


def fresh_db(postgres: PostgreSQL) -> str:
    name = "t" + uuid.uuid4().hex[:12]

    async def create() -> None:
        conn = await asyncpg.connect(postgres.dsn)
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()

    asyncio.run(create())
    return postgres.dsn.rsplit("/", 1)[0] + "/" + name


def pg_count(dsn: str, sql: str) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def s3_keys(endpoint: str, bucket: str) -> list[str]:
    async def run() -> list[str]:
        store = S3Store(bucket, "images", endpoint=endpoint, access_key="a", secret_key="b")
        try:
            return [m["key"] async for m in store.metadata()]
        finally:
            await store.close()

    return asyncio.run(run())


def test_s3_store_round_trip(seaweed: SeaweedFS) -> None:
    async def run() -> None:
        store = S3Store("roundtrip", "p", endpoint=seaweed.endpoint, access_key="a", secret_key="b")
        key = "ab" * 32
        assert await store.get(key) is None
        await store.put(key, b"\xff\xd8jpeg-bytes", {"content_type": "image/jpeg", "n": 1})
        got = await store.get(key)
        assert got is not None and got.data == b"\xff\xd8jpeg-bytes" and got.meta["n"] == 1
        # The first writer's metadata stands: a second put does not replace it.
        await store.put(key, b"\xff\xd8other", {"content_type": "image/jpeg", "n": 2})
        got = await store.get(key)
        assert got is not None and got.meta["n"] == 1
        assert [m["key"] async for m in store.metadata()] == []  # "key" is set by the gateway
        assert (await store.check())["status"] == "ok"
        await store.close()

    asyncio.run(run())


def test_two_replicas_one_generation(
    seaweed: SeaweedFS, postgres: PostgreSQL, tmp_path: Path
) -> None:
    dsn = fresh_db(postgres)
    bucket = "replicas"
    env = {
        **s3_env(seaweed.endpoint, bucket, tmp_path / "spool-a", dsn),
        "PROMPTPIX_LOCAL_LATENCY_MS": "1500",
    }
    a = Gateway(tmp_path / "a", env).start()
    b = Gateway(tmp_path / "b", {**env, "PROMPTPIX_SPOOL_DIR": str(tmp_path / "spool-b")}).start()
    try:
        url = "/i/demo?prompt=one+generation+across+replicas&w=160&fmt=png"

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(
                    *(client.get((a.url if i % 2 else b.url) + url) for i in range(40))
                )

        answers = asyncio.run(burst())
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        assert generations(a.url) + generations(b.url) == 1
        wait_until(
            lambda: pg_count(dsn, "SELECT count(*) FROM generations") == 1, 10, "index write"
        )
        assert pg_count(dsn, "SELECT count(*) FROM originals") == 1
        key = answers[0].headers["x-image-id"]
        assert s3_keys(seaweed.endpoint, bucket) == [key]

        # A fresh replica serves the stored original without generating.
        c = Gateway(tmp_path / "c", {**env, "PROMPTPIX_SPOOL_DIR": str(tmp_path / "spool-c")})
        c.start()
        try:
            r = httpx.get(c.url + url.replace("w=160", "w=120"), timeout=30)
            assert r.status_code == 200
            assert r.headers["x-cache-status"] == "TRANSFORM"
            assert r.headers["x-image-id"] == key
            assert generations(c.url) == 0
        finally:
            c.stop()
    finally:
        a.stop()
        b.stop()


def test_store_outage_spools_and_uploads(tmp_path: Path) -> None:
    weed = SeaweedFS(tmp_path / "weed").start()
    gw = Gateway(tmp_path / "gw", s3_env(weed.endpoint, "outage", tmp_path / "spool")).start()
    try:
        first = httpx.get(gw.url + "/i/demo?prompt=before+the+outage&w=64", timeout=30)
        assert first.status_code == 200
        weed.stop()
        during = [
            httpx.get(gw.url + f"/i/demo?prompt=during+the+outage+{i}&w=64", timeout=30)
            for i in range(3)
        ]
        assert [r.status_code for r in during] == [200, 200, 200]
        assert all(r.headers["x-cache-status"] == "MISS" for r in during)
        ready = httpx.get(gw.url + "/readyz", timeout=10).json()
        assert ready["checks"]["store"]["status"] == "degraded"
        assert ready["checks"]["store"]["spooled"] == 3
        # Spooled originals are served from the spool while the store is down.
        again = httpx.get(gw.url + "/i/demo?prompt=during+the+outage+0&w=32", timeout=30)
        assert again.status_code == 200 and again.headers["x-cache-status"] == "TRANSFORM"

        weed.start()  # same data directory and ports
        wanted = {r.headers["x-image-id"] for r in [first, *during]}
        wait_until(lambda: set(s3_keys(weed.endpoint, "outage")) == wanted, 60, "spool upload")
        wait_until(
            lambda: (
                httpx.get(gw.url + "/readyz", timeout=10).json()["checks"]["store"]["status"]
                == "ok"
            ),
            30,
            "store ready",
        )
        assert not list((tmp_path / "spool" / "originals").glob("??/*.json"))
    finally:
        gw.stop()
        weed.stop()


def test_database_outage_still_serves(seaweed: SeaweedFS, tmp_path: Path) -> None:
    pg = PostgreSQL(tmp_path / "pg").start()
    dsn = pg.dsn
    gw = Gateway(tmp_path / "gw", s3_env(seaweed.endpoint, "dbdown", tmp_path / "spool", dsn))
    gw.start()
    try:
        url = gw.url + "/i/demo?prompt=served+without+a+database"
        assert httpx.get(url + "&w=100", timeout=30).status_code == 200
        pg.stop()
        r = httpx.get(url + "&w=90", timeout=30)
        assert r.status_code == 200 and r.headers["x-cache-status"] == "TRANSFORM"
        assert httpx.get(url + "&w=90", timeout=30).headers["x-cache-status"] == "HIT"
        new = httpx.get(gw.url + "/i/demo?prompt=generated+while+the+database+is+down", timeout=30)
        assert new.status_code == 200
        ready = httpx.get(gw.url + "/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["checks"]["index"]["status"] == "degraded"
        pg.start()
        # Index writes made while it was down catch up.
        wait_until(
            lambda: pg_count(dsn, "SELECT count(*) FROM originals") == 2, 60, "index catch-up"
        )
    finally:
        gw.stop()
        pg.stop()


def test_dead_lock_holder_is_replaced(
    seaweed: SeaweedFS, postgres: PostgreSQL, tmp_path: Path
) -> None:
    dsn = fresh_db(postgres)
    env = {
        **s3_env(seaweed.endpoint, "deadholder", tmp_path / "spool-a", dsn),
        "PROMPTPIX_LOCAL_LATENCY_MS": "4000",
    }
    a = Gateway(tmp_path / "a", env).start()
    b = Gateway(tmp_path / "b", {**env, "PROMPTPIX_SPOOL_DIR": str(tmp_path / "spool-b")}).start()
    try:
        path = "/i/demo?prompt=the+holder+dies&w=64"

        async def scenario() -> httpx.Response:
            async with httpx.AsyncClient(timeout=60) as client:
                first = asyncio.create_task(client.get(a.url + path))
                # Wait until a holds the lease, then ask b and kill a.
                for _ in range(100):
                    if pg_count(dsn, "SELECT count(*) FROM leases") == 1:
                        break
                    await asyncio.sleep(0.05)
                second = asyncio.create_task(client.get(b.url + path))
                await asyncio.sleep(0.5)
                a.stop(signal.SIGKILL)
                with pytest.raises(httpx.HTTPError):
                    await first
                return await second

        started = time.monotonic()
        answer = asyncio.run(scenario())
        assert answer.status_code == 200
        assert answer.headers["x-cache-status"] == "MISS"
        assert generations(b.url) == 1
        assert time.monotonic() - started < 30
    finally:
        a.stop()
        b.stop()


def test_reindex_rebuilds_from_store(
    seaweed: SeaweedFS, postgres: PostgreSQL, tmp_path: Path
) -> None:
    env = s3_env(seaweed.endpoint, "reindex", tmp_path / "spool", fresh_db(postgres))
    gw = Gateway(tmp_path / "gw", env).start()
    try:
        for i in range(3):
            url = gw.url + f"/i/demo?prompt=indexed+{i}&w=32"
            assert httpx.get(url, timeout=30).status_code == 200
    finally:
        gw.stop()
    empty = fresh_db(postgres)
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "reindex"],
        env={**__import__("os").environ, **env, "PROMPTPIX_DATABASE_URL": empty},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "reindexed 3 originals" in out.stdout
    assert pg_count(empty, "SELECT count(*) FROM originals") == 3


def test_free_port_helper_gives_distinct_ports() -> None:
    assert free_port() != free_port() or free_port() > 0
