"""Production backends against real servers: SeaweedFS (S3) and PostgreSQL, several replicas."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from promptpix.cache.s3store import S3Store
from promptpix.cache.store import StoreUnavailable
from tests.services import (
    Gateway,
    Nginx,
    PostgreSQL,
    SeaweedFS,
    free_port,
    nginx_config,
    wait_until,
)

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
    server.remove()


def s3_env(endpoint: str, bucket: str, spool: Path, dsn: str = "") -> dict[str, str]:
    env = {
        "PROMPTPIX_STORE": f"s3://{bucket}/images",
        "PROMPTPIX_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "promptpix",
        "AWS_SECRET_ACCESS_KEY": "promptpix-secret",
        "AWS_REGION": "us-east-1",
        "PROMPTPIX_SPOOL_DIR": str(spool),
    }
    if dsn:
        env["PROMPTPIX_DATABASE_URL"] = dsn
    return env


HELD_LOCKS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


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
        # The bucket does not exist yet: the store creates it.
        store = S3Store("roundtrip", "p", endpoint=seaweed.endpoint, access_key="a", secret_key="b")
        key = "ab" * 32
        assert await store.get(key) is None
        assert await store.head(key) is False
        await store.put(key, b"\xff\xd8jpeg-bytes", {"content_type": "image/jpeg", "n": 1})
        assert await store.head(key) is True
        got = await store.get(key)
        assert got is not None and got.data == b"\xff\xd8jpeg-bytes" and got.meta["n"] == 1
        # The first writer's original stands: a second put replaces neither bytes nor metadata.
        await store.put(key, b"\xff\xd8other", {"content_type": "image/jpeg", "n": 2})
        got = await store.get(key)
        assert got is not None and got.meta["n"] == 1 and got.data == b"\xff\xd8jpeg-bytes"
        # The metadata travels with the object: the store alone lists every original.
        other = "cd" * 32
        await store.put(other, b"\x89PNG", {"content_type": "image/png", "prompt": "x"})
        listed = {m["key"]: m async for m in store.metadata()}
        assert set(listed) == {key, other}
        assert listed[other]["prompt"] == "x" and listed[other]["content_type"] == "image/png"
        assert (await store.check())["status"] == "ok"
        await store.close()
        # One object per original: the image, its metadata in the object's own metadata.
        again = S3Store("roundtrip", "", endpoint=seaweed.endpoint, access_key="a", secret_key="b")
        client = await again._s3()
        page = await client.list_objects_v2(Bucket="roundtrip")
        assert sorted(o["Key"] for o in page["Contents"]) == [
            f"p/originals/ab/{key}",
            f"p/originals/cd/{other}",
        ]
        head = await client.head_object(Bucket="roundtrip", Key=f"p/originals/cd/{other}")
        assert head["ContentType"] == "image/png"
        await again.close()

    asyncio.run(run())


def test_s3_store_a_body_damaged_on_the_way_is_refused(seaweed: SeaweedFS) -> None:
    """The payload is not hashed into the signature: its CRC32, in a signed header, is what
    the server checks, so a body changed after signing is refused, not stored."""

    async def run() -> None:
        store = S3Store("damaged", "p", endpoint=seaweed.endpoint, access_key="a", secret_key="b")
        client = await store._s3()
        sent: list[dict[str, str]] = []

        def damage(request: Any, **_: Any) -> None:
            if request.method == "PUT" and "/originals/" in request.url:
                sent.append({k.lower(): str(v) for k, v in request.headers.items()})
                body = request.body
                request.body = b"X" + bytes(getattr(body, "getvalue", lambda: body)())[1:]

        client.meta.events.register("before-send.s3", damage)
        key = "ef" * 32
        with pytest.raises(StoreUnavailable, match="BadDigest"):
            await store.put(key, b"\xff\xd8jpeg-bytes", {"content_type": "image/jpeg"})
        assert sent and "UNSIGNED-PAYLOAD" in sent[0]["x-amz-content-sha256"]
        assert "x-amz-checksum-crc32" in sent[0]
        client.meta.events.unregister("before-send.s3", damage)
        assert await store.get(key) is None
        await store.close()

    asyncio.run(run())


def test_s3_store_first_requests_on_a_new_bucket(seaweed: SeaweedFS) -> None:
    """Concurrent first requests on a bucket that does not exist yet all wait for it."""

    async def run() -> None:
        bucket = "fresh" + uuid.uuid4().hex[:8]
        store = S3Store(bucket, "p", endpoint=seaweed.endpoint, access_key="a", secret_key="b")
        keys = [f"{i:02x}" * 32 for i in range(40)]
        reads = await asyncio.gather(*(store.get(k) for k in keys), return_exceptions=True)
        assert reads == [None] * len(keys)
        await asyncio.gather(*(store.put(k, b"\xff\xd8" + k.encode(), {"n": 1}) for k in keys))
        assert all(await asyncio.gather(*(store.head(k) for k in keys)))
        await store.close()

    asyncio.run(run())


def test_s3_store_says_why_it_cannot_create_its_bucket(seaweed: SeaweedFS) -> None:
    """A bucket the server refuses to create fails every request with the server's reason,
    instead of each read failing later with "no such bucket"."""

    async def run() -> None:
        # The URL's check refuses this name at start; the store itself asks the server.
        store = S3Store("pp", "", endpoint=seaweed.endpoint, access_key="a", secret_key="b")
        for _ in range(2):  # not remembered as ready
            with pytest.raises(StoreUnavailable, match="CreateBucket"):
                await store.get("ab" * 32)
        assert (await store.check())["status"] == "down"
        await store.close()

    asyncio.run(run())


def test_s3_store_large_metadata_sidecar(seaweed: SeaweedFS) -> None:
    """Metadata past S3's 2 KB of user metadata goes in a sidecar the image names."""

    async def run() -> None:
        store = S3Store("sidecar", "", endpoint=seaweed.endpoint, access_key="a", secret_key="b")
        key = "ef" * 32
        prompt = os.urandom(3000).hex()  # does not deflate below the inline limit
        await store.put(key, b"\xff\xd8one", {"content_type": "image/jpeg", "prompt": prompt})
        got = await store.get(key)
        assert got is not None and got.data == b"\xff\xd8one" and got.meta["prompt"] == prompt
        # A second writer loses the race: its sidecar goes, the first original stands.
        await store.put(key, b"\xff\xd8two", {"content_type": "image/jpeg", "prompt": "y" + prompt})
        got = await store.get(key)
        assert got is not None and got.data == b"\xff\xd8one" and got.meta["prompt"] == prompt
        assert [m["prompt"] async for m in store.metadata()] == [prompt]
        # A loser whose metadata is byte for byte the winner's shares its sidecar: kept.
        await store.put(key, b"\xff\xd8one", {"content_type": "image/jpeg", "prompt": prompt})
        got = await store.get(key)
        assert got is not None and got.meta["prompt"] == prompt
        client = await store._s3()
        names = [o["Key"] for o in (await client.list_objects_v2(Bucket="sidecar"))["Contents"]]
        assert len(names) == 2 and f"originals/ef/{key}" in names
        [sidecar] = [n for n in names if n.endswith(".json")]
        assert sidecar.startswith(f"originals/ef/{key}.")
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


def sqlite_count(path: Path, sql: str) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(sql).fetchone()[0])


@pytest.mark.parametrize("backends", ["embedded", "s3+postgresql"])
def test_workers_share_one_generation(
    backends: str, seaweed: SeaweedFS, postgres: PostgreSQL, tmp_path: Path
) -> None:
    if backends == "embedded":
        env = {"PROMPTPIX_STORE": f"file://{tmp_path / 'data'}"}
    else:
        dsn = fresh_db(postgres)
        env = s3_env(seaweed.endpoint, "workers", tmp_path / "spool", dsn)
    env["PROMPTPIX_LOCAL_LATENCY_MS"] = "1500"
    gw = Gateway(tmp_path / "gw", env, workers=2).start()
    try:
        url = gw.url + "/i/demo?prompt=two+workers+one+generation&w=100"

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*(client.get(url) for _ in range(40)))

        answers = asyncio.run(burst())
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        ok = "SELECT count(*) FROM generations WHERE outcome = 'success'"
        if backends == "embedded":
            index = tmp_path / "data" / "index.sqlite3"
            wait_until(lambda: sqlite_count(index, ok) >= 1, 10, "index write")
            time.sleep(0.5)
            assert sqlite_count(index, ok) == 1
        else:
            wait_until(lambda: pg_count(dsn, ok) >= 1, 10, "index write")
            time.sleep(0.5)
            assert pg_count(dsn, ok) == 1
            assert s3_keys(seaweed.endpoint, "workers") == [answers[0].headers["x-image-id"]]
    finally:
        gw.stop()


def test_store_outage_spools_and_uploads(tmp_path: Path) -> None:
    weed = SeaweedFS(tmp_path / "weed").start()
    # No decoded originals kept in memory: a repeat must read the spool.
    env = {**s3_env(weed.endpoint, "outage", tmp_path / "spool"), "PROMPTPIX_SOURCE_CACHE_MB": "0"}
    gw = Gateway(tmp_path / "gw", env).start()
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

        def uploaded() -> bool:
            httpx.get(gw.url + "/readyz", timeout=10)  # as a readiness probe would
            return set(s3_keys(weed.endpoint, "outage")) == wanted

        wait_until(uploaded, 60, "spool upload")
        wait_until(
            lambda: (
                httpx.get(gw.url + "/readyz", timeout=10).json()["checks"]["store"]["status"]
                == "ok"
            ),
            30,
            "store ready",
        )
        assert not list((tmp_path / "spool" / "originals").glob("??/*"))
    finally:
        gw.stop()
        weed.stop()


def test_database_outage_still_serves(seaweed: SeaweedFS, tmp_path: Path) -> None:
    pg = PostgreSQL(tmp_path / "pg").start()
    dsn = pg.dsn
    # No decoded originals kept in memory: the new variant must read the store.
    env = s3_env(seaweed.endpoint, "dbdown", tmp_path / "spool", dsn)
    gw = Gateway(tmp_path / "gw", {**env, "PROMPTPIX_SOURCE_CACHE_MB": "0"}).start()
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
        pg.remove()


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
            db = await asyncpg.connect(dsn)
            async with httpx.AsyncClient(timeout=60) as client:
                first = asyncio.create_task(client.get(a.url + path))
                # Wait until a holds the generation lock, then ask b, then kill a.
                for _ in range(200):
                    if await db.fetchval(HELD_LOCKS) == 1:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("a never took the generation lock")
                second = asyncio.create_task(client.get(b.url + path))
                await asyncio.sleep(1.0)
                assert not second.done()  # b waits on a's lock instead of generating
                assert await db.fetchval(HELD_LOCKS) == 1
                a.stop(signal.SIGKILL)
                with pytest.raises(httpx.HTTPError):
                    await first
                answer = await second
            await db.close()
            return answer

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
    # An index that does not list them yet: stored originals are still found, not generated.
    fresh = Gateway(tmp_path / "fresh", {**env, "PROMPTPIX_DATABASE_URL": empty}).start()
    try:
        r = httpx.get(fresh.url + "/i/demo?prompt=indexed+0&w=24", timeout=30)
        assert r.status_code == 200 and r.headers["x-cache-status"] == "TRANSFORM"
        assert generations(fresh.url) == 0
    finally:
        fresh.stop()
    wait_until(lambda: pg_count(empty, "SELECT count(*) FROM variants") == 1, 10, "index write")
    # An object whose metadata cannot be read is left out of the rebuild, not fatal to it.
    damaged = "ee" * 32

    async def put_damaged() -> None:
        store = S3Store(
            "reindex", "images", endpoint=seaweed.endpoint, access_key="a", secret_key="b"
        )
        client = await store._s3()
        name = f"images/originals/ee/{damaged}"
        await client.put_object(
            Bucket="reindex", Key=name, Body=b"\xff\xd8", Metadata={"promptpix": "!!"}
        )
        await store.close()

    asyncio.run(put_damaged())
    reindex = [sys.executable, "-m", "promptpix.gateway.cli", "reindex"]
    out = subprocess.run(
        reindex,
        env={**os.environ, **env, "PROMPTPIX_DATABASE_URL": empty},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "reindexed 3 originals" in out.stdout
    assert f"original {damaged} left out" in out.stderr
    assert pg_count(empty, "SELECT count(*) FROM originals") == 3
    # A store that does not answer stops it with one line and status 1.
    down = {**env, "PROMPTPIX_DATABASE_URL": empty}
    down["PROMPTPIX_S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    out = subprocess.run(
        reindex, env={**os.environ, **down}, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("promptpix: reindex stopped: "), out.stderr


# --- nginx in front: the repository's config, run by a real nginx -------------------------


def image_requests(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.findall(r'^promptpix_requests_total\{[^}]*route="/i"[^}]*\} (\S+)$', text, re.M)
    return int(sum(float(v) for v in found))


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    root = tmp_path_factory.mktemp("proxied")
    env = {"PROMPTPIX_STORE": f"file://{root / 'data'}", "PROMPTPIX_LOCAL_LATENCY_MS": "1000"}
    gw = Gateway(root / "gw", env).start()
    port = free_port()
    proxy = Nginx(root / "nginx", nginx_config(root / "nginx", port, f"127.0.0.1:{gw.port}"))
    try:
        proxy.start(port)
        yield gw, f"http://127.0.0.1:{port}"
    finally:
        proxy.stop()
        gw.stop()


def test_nginx_sends_concurrent_first_requests_once(proxied: tuple[Gateway, str]) -> None:
    gw, front = proxied
    before = image_requests(gw.url)
    path = "/i/demo?prompt=a+hundred+at+once+through+nginx&w=200"

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(client.get(front + path) for _ in range(100)))

    answers = asyncio.run(burst())
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert image_requests(gw.url) - before == 1
    assert httpx.get(front + path, timeout=10).headers["x-proxy-cache"] == "HIT"
    assert image_requests(gw.url) - before == 1


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "image/avif"),
        ("image/webp,*/*", "image/webp"),
        ("image/jpeg", "image/jpeg"),
        ("image/avif;q=0, image/webp;q=0,image/*", "image/jpeg"),
        ("*/*", "image/jpeg"),
    ],
)
def test_nginx_negotiated_format_follows_accept(
    proxied: tuple[Gateway, str], accept: str, expected: str
) -> None:
    _, front = proxied
    url = front + "/i/demo?prompt=one+picture+many+formats&w=96&fmt=auto"
    # Another client's answer is cached first: it must not leak to this one.
    for other in ("image/webp,*/*", "image/avif,image/webp,*/*", "image/jpeg"):
        assert httpx.get(url, headers={"accept": other}, timeout=30).status_code == 200
    for _ in range(2):
        r = httpx.get(url, headers={"accept": accept}, timeout=30)
        assert r.status_code == 200
        assert r.headers["content-type"] == expected
    assert r.headers["x-proxy-cache"] == "HIT"


def test_nginx_fixed_format_ignores_accept(proxied: tuple[Gateway, str]) -> None:
    _, front = proxied
    url = front + "/i/demo?prompt=one+picture+many+formats&w=80"
    first = httpx.get(url, headers={"accept": "image/avif,image/webp"}, timeout=30)
    second = httpx.get(url, headers={"accept": "image/jpeg"}, timeout=30)
    assert first.headers["content-type"] == second.headers["content-type"] == "image/webp"
    assert "vary" not in second.headers
    assert second.headers["x-proxy-cache"] == "HIT"


def test_nginx_passes_a_long_prompt(proxied: tuple[Gateway, str]) -> None:
    _, front = proxied
    prompt = " ".join(f"détail{i}" for i in range(1000))  # ~9,900 characters, ~12 KiB encoded
    assert 3000 < len(prompt) <= 10_000
    answer = httpx.get(front + "/i/demo", params={"prompt": prompt, "w": "64"}, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["content-type"] == "image/webp"


def test_index_writer_drops_only_a_refused_row() -> None:
    from promptpix.cache.index import IndexWriter, Row

    class Picky:
        kind = "picky"

        def __init__(self) -> None:
            self.rows: list[Row] = []

        async def start(self) -> None:
            return None

        async def write(self, rows: list[Row]) -> None:
            if any(r.values.get("bad") for r in rows):
                raise ValueError("refused")
            self.rows.extend(rows)

        async def count(self, table: str) -> int:
            return len(self.rows)

        async def check(self) -> dict[str, str]:
            return {"status": "ok"}

        async def close(self) -> None:
            return None

    async def run() -> None:
        backend = Picky()
        writer = IndexWriter(backend)  # type: ignore[arg-type]
        await writer.start()
        for i in range(5):
            writer.add(Row("generations", {"n": i, "bad": i == 2}))
        assert await writer.flush(5)
        assert [r.values["n"] for r in backend.rows] == [0, 1, 3, 4]
        assert writer.dropped == 1
        await writer.close()

    asyncio.run(run())


def test_pg_leases_in_a_burst(postgres: PostgreSQL) -> None:
    """Many takes at once go in few statements and each key still has one holder."""
    from promptpix.cache.pgleases import PgLeases
    from promptpix.cache.postgres import Postgres

    dsn = fresh_db(postgres)

    async def run() -> None:
        mine, theirs = PgLeases(Postgres(dsn)), PgLeases(Postgres(dsn))
        keys = [f"{i:016x}" * 4 for i in range(1, 201)]
        taken = await asyncio.gather(*(mine.try_acquire(k) for k in [*keys, keys[0]]))
        assert sum(lease is not None for lease in taken) == 200  # the repeated key: once
        assert not any(await asyncio.gather(*(theirs.try_acquire(k) for k in keys)))
        assert await asyncio.to_thread(pg_count, dsn, HELD_LOCKS) == 200
        await asyncio.gather(*(lease.release() for lease in taken if lease is not None))
        assert await asyncio.to_thread(pg_count, dsn, HELD_LOCKS) == 0  # one count each
        # A lease released twice leaves a later holder of its key alone.
        stale = next(lease for lease in taken if lease is not None)
        later = await mine.try_acquire(stale.key)
        assert later is not None
        await stale.release()
        assert await theirs.try_acquire(stale.key) is None
        await later.release()
        again = await asyncio.gather(*(theirs.try_acquire(k) for k in keys))
        assert all(lease is not None for lease in again)
        await mine.close()
        await theirs.close()

    asyncio.run(run())


def test_index_lookups(postgres: PostgreSQL) -> None:
    """The index answers whether it lists an original; a database that does not answer
    gives no answer at once, and is not asked again for a while."""
    from promptpix.cache.index import IndexWriter, original_row
    from promptpix.cache.pgindex import PgIndex
    from promptpix.cache.postgres import Postgres

    dsn = fresh_db(postgres)

    async def run() -> None:
        database = Postgres(dsn)
        rows = PgIndex(database)
        index = IndexWriter(rows, linger_s=0, lookup=rows.has_original)
        await index.start()
        key = "ab" * 32
        assert await index.known(key) is False
        index.add(original_row({"key": key, "prompt": "p", "created_at": time.time()}))
        assert await index.flush()
        found = await asyncio.gather(*(index.known(k) for k in [key, "cd" * 32, key]))
        assert found == [True, False, True]
        await index.close()
        await database.close()

        # A server that takes connections and never answers: the lookup gives up in time.
        import socket

        with socket.create_server(("127.0.0.1", 0)) as silent:
            port = silent.getsockname()[1]
            unanswered = PgIndex(Postgres(f"postgresql://x@127.0.0.1:{port}/x"))
            down = IndexWriter(unanswered, lookup=unanswered.has_original)
            started = time.monotonic()
            assert await down.known(key) is None
            assert time.monotonic() - started < 2.5
            started = time.monotonic()
            assert await down.known(key) is None  # not asked again meanwhile
            assert time.monotonic() - started < 0.1

    asyncio.run(run())


def test_pg_leases_when_the_database_does_not_answer() -> None:
    """A database that takes connections and never answers costs one wait, not one a miss:
    misses go ahead (single-flight per process) without asking again for a while."""
    import socket

    from promptpix.cache.leases import NoLease
    from promptpix.cache.pgleases import PgLeases
    from promptpix.cache.postgres import Postgres

    async def run() -> None:
        with socket.create_server(("127.0.0.1", 0)) as silent:
            port = silent.getsockname()[1]
            leases = PgLeases(Postgres(f"postgresql://x@127.0.0.1:{port}/x"))
            started = time.monotonic()
            first = await asyncio.gather(*(leases.try_acquire(f"{i:016x}" * 4) for i in range(20)))
            assert all(isinstance(lease, NoLease) for lease in first)
            assert time.monotonic() - started < 5  # one connection timeout (3 s) for all
            started = time.monotonic()
            assert isinstance(await leases.try_acquire("ab" * 32), NoLease)
            assert time.monotonic() - started < 0.1  # not asked again meanwhile
            await leases.close()

    asyncio.run(run())


def test_an_indexed_original_is_not_generated_again_while_the_store_is_down(
    postgres: PostgreSQL, tmp_path: Path
) -> None:
    weed = SeaweedFS(tmp_path / "weed").start()
    dsn = fresh_db(postgres)
    env = {**s3_env(weed.endpoint, "indexed", tmp_path / "spool-a", dsn)}
    a = Gateway(tmp_path / "a", env).start()
    b = Gateway(tmp_path / "b", {**env, "PROMPTPIX_SPOOL_DIR": str(tmp_path / "spool-b")})
    try:
        url = "/i/demo?prompt=stored+before+the+outage"
        assert httpx.get(a.url + url + "&w=64", timeout=30).status_code == 200
        wait_until(lambda: pg_count(dsn, "SELECT count(*) FROM originals") == 1, 10, "index")
        b.start()  # a replica that has never seen it
        weed.stop()
        r = httpx.get(b.url + url + "&w=48", timeout=30)
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert r.headers["retry-after"] == "5"
        assert generations(b.url) == 0
        # An original nobody has made is still generated (and spooled) meanwhile.
        new = httpx.get(b.url + "/i/demo?prompt=new+during+the+outage&w=48", timeout=30)
        assert new.status_code == 200 and new.headers["x-cache-status"] == "MISS"
        weed.start()
        wait_until(
            lambda: httpx.get(b.url + url + "&w=48", timeout=30).status_code == 200, 30, "read"
        )
        assert generations(b.url) == 1  # the new one only
    finally:
        b.stop()
        a.stop()
        weed.stop()
