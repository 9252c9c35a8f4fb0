"""The benchmark: promptpix side by side with ipx, thumbor and nginx, in one run.

    .venv/bin/python -m bench.run [--rounds 3] [--seconds 10] [--workers 1]
    .venv/bin/python -m bench.run --only-api --rounds 3 --seconds 5   # the JSON API alone

Every server is started here, measured back to back under the same wrk load, and stopped
here. Ratios are the median over rounds of promptpix ÷ peer, each round measured within
seconds of each other on the same machine. Writes bench/RESULTS.md and bench/results.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import httpx
import pyvips
import uvloop

from promptpix.cache.filestore import FileStore
from promptpix.gateway.params import split_query
from promptpix.gateway.signing import sign

from . import servers
from .results import Load, Results
from .servers import BENCH, Server, rss_mb
from .source import make_source

if TYPE_CHECKING:
    from promptpix.generators.base import GenerationRequest

WORK = BENCH / ".work"
LUA = BENCH / "wrk" / "sizes.lua"
QUICK_REPORT = WORK / "RESULTS-api.md"  # where `--only-api` writes its report
PROMPT = "bench source photo"
PP_PATH = "/i/demo?prompt=bench+source+photo&ar=16:9&w={w}&h={h}&fmt=%s"
HIT_PATH = "/i/demo?prompt=bench+source+photo&ar=16:9&w=400&h=300&fmt=jpeg"
SIGNED = "signed"  # a project with `signing: required`: its hits check a signature
METERED = "metered"  # a project with a quota and a budget: its misses reserve and settle


# --- wrk ---------------------------------------------------------------------------------


def wrk(
    base: str,
    path: str,
    seconds: int,
    connections: int,
    threads: int = 2,
    request: dict[str, str] | None = None,
) -> Load:
    """`request`: BENCH_METHOD, BENCH_BODY, BENCH_AUTH for `sizes.lua` (a JSON API call)."""
    env = {**os.environ, "BENCH_PATH": path, **(request or {})}
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            base,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(
        data[k]
        for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    ok = data["requests"] - data["status_errors"]
    return Load(
        rps=ok / (data["duration_us"] / 1e6),
        requests=data["requests"],
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


# --- memory sampling ---------------------------------------------------------------------


@contextlib.contextmanager
def sample_rss(server: Server, peak: dict[int, float], every: float = 0.2) -> Iterator[None]:
    """Record the highest VmRSS of each of the server's worker processes while inside."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            pids = server.descendants() or ([server.proc.pid] if server.proc else [])
            for pid in pids:
                peak[pid] = max(peak.get(pid, 0.0), rss_mb(pid))
            stop.wait(every)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# --- set-up ------------------------------------------------------------------------------


def control(store: Path, *args: str) -> dict[str, Any]:
    """`promptpix ARGS...` against the store's embedded database, its JSON answer."""
    done = subprocess.run(
        [str(servers.VENV_BIN / "promptpix"), *args],
        env={**os.environ, "PROMPTPIX_STORE": f"file://{store}"},
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def signed(path: str, secret: str) -> str:
    """`path` with its `signing: required` signature."""
    target, _, query = path.partition("?")
    params = split_query(query)
    return f"{path}&sig={sign(secret, target, params, 'required')}"


def seed_store(store: Path, source: bytes) -> str:
    """Make the fixed prompt's original once in `demo` and once in the signing project, then
    make the detailed source their stored bytes; answers the signing project's secret.

    The gateway's own keying and metadata are kept; only the image file is replaced, so
    promptpix transforms exactly the pixels ipx and thumbor read from disk.
    """
    secret = control(store, "projects", "create", SIGNED, "--signing", "required")
    first = PP_PATH.replace("{w}", "64").replace("{h}", "36") % "jpeg"
    paths = [first, signed(first.replace("/i/demo", f"/i/{SIGNED}"), secret["signing_secret"])]
    files = FileStore(store)
    with servers.running(servers.promptpix(WORK, store, 1)) as pp:
        for path in paths:
            r = httpx.get(pp.url + path)
            r.raise_for_status()
            key = r.headers["x-image-id"]
            stored = asyncio.run(files.get(key))
            assert stored is not None, "the fixed prompt's original was not stored"
            meta = {**stored.meta, "content_type": "image/jpeg", "bytes": len(source)}
            asyncio.run(files.put(key, source, meta))
    return str(secret["signing_secret"])


def warm(base: str, path: str, n: int = 6) -> httpx.Response:
    last = None
    for i in range(n):
        url = base + path.replace("{w}", str(300 + i)).replace("{h}", str(200 + i))
        last = httpx.get(url, timeout=30)
        last.raise_for_status()
    assert last is not None
    return last


# --- the generation benchmark ------------------------------------------------------------


def parse_timing(header: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in header.split(","):
        name, _, rest = item.strip().partition(";")
        for part in rest.split(";"):
            k, _, v = part.strip().partition("=")
            if k == "dur":
                with contextlib.suppress(ValueError):
                    out[name] = float(v)
    return out


async def _get(host: str, port: int, target: str) -> tuple[int, dict[str, str]]:
    """One GET on its own connection, read to the end: a load generator that costs the
    machine little (an HTTP client library costs several milliseconds of CPU a request,
    taken from the server it measures on the same cores; on uvloop, 0.25 ms a miss where
    asyncio's own loop took 0.4)."""
    status, headers, _ = await _http(host, port, "GET", target)
    return status, headers


async def _http(
    host: str, port: int, method: str, target: str, body: bytes = b"", key: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection (a JSON body and a bearer key when given), read
    to the end: status, headers (lower-case names) and body."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    try:
        writer.write(head.encode() + b"\r\n" + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        data = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(lines[0].split()[1]), headers, data
    finally:
        writer.close()


async def _misses(base: str, count: int, tag: str, project: str = "demo") -> dict[str, Any]:
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80

    async def one(i: int) -> tuple[int, float, dict[str, float], str]:
        t0 = time.perf_counter()
        query = urlencode({"prompt": f"{tag} {i}", "w": "256", "fmt": "jpeg"})
        try:
            status, headers = await _get(host, port, f"/i/{project}?{query}")
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return 0, (time.perf_counter() - t0) * 1000, {}, ""
        elapsed = (time.perf_counter() - t0) * 1000
        timing = parse_timing(headers.get("server-timing", ""))
        return status, elapsed, timing, headers.get("x-cache-status", "")

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.perf_counter() - started
    ok = [r for r in results if r[0] == 200 and r[3] == "MISS"]
    totals = [r[2].get("total", 0.0) for r in ok]
    gen = [r[2].get("generate", 0.0) for r in ok]

    def median_of(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    stages = {
        stage: median_of([r[2][stage] for r in ok if stage in r[2]])
        for stage in ("generate", "analyse", "store", "transform")
    }
    return {
        "count": count,
        "ok_misses": len(ok),
        "statuses": sorted({r[0] for r in results}),
        "wall_s": wall,
        "client_p50_ms": statistics.median(r[1] for r in results),
        "client_max_ms": max(r[1] for r in results),
        "server_total_p50_ms": median_of(totals),
        "overhead_p50_ms": median_of([t - 2000 for t in totals]),
        "overhead_max_ms": max(t - 2000 for t in totals) if totals else None,
        "beyond_generator_p50_ms": median_of([t - g for t, g in zip(totals, gen, strict=True)]),
        "stages_p50_ms": stages,
    }


RUNS = WORK / "runs"


def run_dir(name: str) -> Path:
    """A new directory for one generation run's stores and servers. Nothing is removed
    between runs: on ext4 without a journal (as here), a new file's inode is searched for
    past every inode freed in the last minutes, so a run started right after removing the
    last one's thousands of files paid 0.5-0.7 ms of CPU per file created, against 0.02.
    `run` removes them all at its start, minutes before the first generation run."""
    path = RUNS / f"{name}-{time.time_ns()}"
    path.mkdir(parents=True)
    return path


WARM_UP = 100  # misses before measuring: the local generator has drawn its 16 square scenes


BURSTS = 3  # bursts per generation run: this machine's speed drifts from one to the next


def generation_benchmark(
    workers: int,
    count: int,
    latency_ms: int,
    label: str,
    env: dict[str, str] | None = None,
    others: dict[str, int] | None = None,
    bursts: int = BURSTS,
    project: str = "demo",
) -> dict[str, Any]:
    """`bursts` times `count` distinct misses at once, on one warmed gateway; reported: the
    burst of median wall time, with every burst's wall time and CPU beside it. `others`: the
    PIDs of servers the gateway uses (object store, database) whose CPU the run costs too.
    `project` other than `demo` is made first with a quota and a budget that every miss
    reserves from and settles (a price of 0 for `local`, but the statements all run)."""
    store = run_dir("gen-store")
    if project != "demo":
        control(store, "projects", "create", project, "--quota", "1000000000", "--budget", "1e6")
    # The local generator's own limit (16 calls at once by default, like a provider quota)
    # is lifted: this measures the gateway, not a quota.
    env = {
        "PROMPTPIX_LOCAL_LATENCY_MS": str(latency_ms),
        "PROMPTPIX_LOCAL_CONCURRENCY": str(count * 2),
        **(env or {}),
    }
    with servers.running(servers.promptpix(WORK, store, workers, env)) as pp:
        # warm, as a server that has been up is: imports, pools, the local generator's scenes
        uvloop.run(_misses(pp.url, WARM_UP, f"warm-up {time.time_ns()}", project))
        assert pp.proc is not None
        servers.wait_idle(pp.proc.pid)  # the warm-up's prompts are embedded before we start
        runs = [_burst(pp.url, pp.proc.pid, count, others or {}, project) for _ in range(bursts)]
    out = sorted(runs, key=lambda r: float(r["wall_s"]))[len(runs) // 2]
    out["bursts"] = [
        {k: r[k] for k in ("wall_s", "server_cpu_ms_per_miss", "ok_misses")} for r in runs
    ]
    out["server_cpu_ms_per_miss"] = statistics.median(r["server_cpu_ms_per_miss"] for r in runs)
    out["drawing_cpu_ms"] = drawing_cost()
    out["raw_libvips_s"] = raw_libvips(count, os.cpu_count() or 1)
    out["label"] = label
    out["project"] = project
    out["workers"] = workers
    return out


def _burst(
    url: str, pid: int, count: int, others: dict[str, int], project: str = "demo"
) -> dict[str, Any]:
    """One burst of `count` misses on an idle gateway, and the background work it left."""
    cpu = servers.cpu_seconds(pid)
    other_cpu = {name: servers.tree_cpu_seconds(other) for name, other in others.items()}
    out = uvloop.run(_misses(url, count, f"bench distinct {time.time_ns()}", project))
    out["server_cpu_ms_per_miss"] = (servers.cpu_seconds(pid) - cpu) * 1000 / count
    out["other_cpu_ms_per_miss"] = {
        name: (servers.tree_cpu_seconds(other) - other_cpu[name]) * 1000 / count
        for name, other in others.items()
    }
    # the background work the misses left (embedding their prompts), until it is over
    idle_from = time.monotonic()
    servers.wait_idle(pid)
    out["background_s"] = time.monotonic() - idle_from - servers.QUIET_S
    out["server_cpu_ms_per_miss_with_background"] = (servers.cpu_seconds(pid) - cpu) * 1000 / count
    return out


def _placeholder(i: int, tag: str) -> GenerationRequest:
    """The local generator's request for the i-th of a run's distinct square prompts."""
    from promptpix.generators.base import GenerationRequest

    return GenerationRequest(f"{i:064x}", f"{tag} {i}", (1, 1), (1024, 1024), "", 0, "")


def drawing_cost(count: int = 200) -> float:
    """CPU ms the local generator spends drawing one placeholder (work a real provider does
    elsewhere), measured here in this process on fresh keys."""
    from promptpix.generators.local import render
    from promptpix.transforms.vips import configure

    configure()  # libvips as the gateway sets it up: one thread an image, no cache
    for i in range(40):  # the scenes are drawn once per process: not part of a key's cost
        render(_placeholder(i, "bench drawing"))
    started = time.process_time()
    for i in range(count):
        render(_placeholder(1000 + i, "bench drawing"))
    return (time.process_time() - started) * 1000 / count


def raw_libvips(count: int, threads: int) -> float:
    """Seconds raw libvips takes for the image work of `count` misses, one thread a core:
    each placeholder thumbnailed to 256 px (shrunk on load) and saved as a JPEG, with no
    focal point, store, HTTP or bookkeeping. The peer that the gateway's time beyond the
    generator's 2 s is set against, measured in the same minute."""
    from promptpix.generators.local import render
    from promptpix.transforms.vips import configure

    configure()
    originals = [render(_placeholder(i, f"raw {time.time_ns()}")) for i in range(count)]

    def thumbnail(data: bytes) -> int:
        return len(pyvips.Image.thumbnail_buffer(data, 256).jpegsave_buffer(Q=80))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(thumbnail, originals[:20]))  # warm: the threads, libvips' operations
        started = time.perf_counter()
        list(pool.map(thumbnail, originals))
        return time.perf_counter() - started


def idle_penalty(idle_s: float = 2.0, samples: int = 7) -> dict[str, float]:
    """CPU ms of one new original's analysis (decode and focal point), warm and after
    `idle_s` of idleness, here in this process: what a lone miss pays on a machine whose
    cores are slow to come back from idle, whatever the gateway does."""
    from promptpix.generators.base import GenerationRequest
    from promptpix.generators.local import render
    from promptpix.transforms.analysis import analyse
    from promptpix.transforms.vips import configure

    configure()
    data = render(GenerationRequest("0" * 64, "idle penalty", (1, 1), (1024, 1024), "", 0, ""))
    out = {}
    for label, pause in (("warm_ms", 0.0), ("after_idle_ms", idle_s)):
        times = []
        for _ in range(samples):
            time.sleep(pause)
            started = time.thread_time()
            analyse(data, 100_000_000)
            times.append((time.thread_time() - started) * 1000)
        out[label] = statistics.median(times)
    return out


def miss_cost(workers: int, count: int = 20, latency_ms: int = 2000) -> dict[str, Any]:
    """One miss at a time, the generator answering after `latency_ms`: what the gateway adds
    to a generation, as a client sees it (its latency - `latency_ms`) and by stage."""
    store = run_dir("cost-store")
    env = {"PROMPTPIX_LOCAL_LATENCY_MS": str(latency_ms)}
    rows: list[dict[str, float]] = []
    added: list[float] = []
    with servers.running(servers.promptpix(WORK, store, workers, env)) as pp:
        uvloop.run(_misses(pp.url, WARM_UP, f"warm-up {time.time_ns()}"))
        assert pp.proc is not None
        servers.wait_idle(pp.proc.pid)
        url = urlsplit(pp.url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        tag = f"cost {time.time_ns()}"

        async def one(i: int) -> None:
            query = urlencode({"prompt": f"{tag} {i}", "w": "256", "fmt": "jpeg"})
            started = time.perf_counter()
            status, headers = await _get(host, port, f"/i/demo?{query}")
            if status == 200 and headers.get("x-cache-status") == "MISS":
                added.append((time.perf_counter() - started) * 1000 - latency_ms)
                rows.append(parse_timing(headers.get("server-timing", "")))

        for i in range(count):
            uvloop.run(one(i))
    stages = ("parse", "store_read", "lease", "generate", "analyse", "store", "transform", "total")
    return {
        "idle_penalty": idle_penalty(),
        "misses": len(added),
        "added_p50_ms": statistics.median(added) if added else None,
        "added_min_ms": min(added, default=None),
        "added_max_ms": max(added, default=None),
        "stages_p50_ms": {
            stage: statistics.median(row[stage] for row in rows if stage in row)
            for stage in stages
            if any(stage in row for row in rows)
        },
    }


def s3_postgres_generation(workers: int, count: int) -> dict[str, Any]:
    """The same misses with originals in SeaweedFS (S3) and the index in PostgreSQL."""
    from tests.services import PostgreSQL, SeaweedFS

    root = run_dir("s3pg")
    weed = SeaweedFS(root / "weed")
    pg = PostgreSQL(root / "pg")
    try:
        weed.start()
        pg.start()
        env = {
            "PROMPTPIX_STORE": "s3://promptpix-bench/images",
            "PROMPTPIX_S3_ENDPOINT": weed.endpoint,
            "AWS_ACCESS_KEY_ID": "promptpix",
            "AWS_SECRET_ACCESS_KEY": "promptpix-secret",
            "AWS_REGION": "us-east-1",
            "PROMPTPIX_SPOOL_DIR": str(root / "spool"),
            "PROMPTPIX_DATABASE_URL": pg.dsn,
        }
        assert weed.proc is not None and pg.proc is not None
        others = {"SeaweedFS": weed.proc.pid, "PostgreSQL": pg.proc.pid}
        return generation_benchmark(
            workers, count, 2000, "S3 (SeaweedFS) + PostgreSQL", env, others
        )
    finally:
        weed.stop()
        pg.remove()


# --- the JSON API ------------------------------------------------------------------------

API_PROJECT = "api"  # a project of its own, with a `generate` key: the JSON API needs one
API_HIT_PROMPT = "bench api hit"
BATCH = 16  # the most items `POST /v1/generations/batch` takes


def api_benchmark(workers: int, rounds: int, seconds: int, connections: int) -> dict[str, Any]:
    """The JSON API beside the live URL, on one gateway whose local generator answers after
    2 s with its limits as shipped (no `PROMPTPIX_LOCAL_CONCURRENCY`): a stored image asked
    again by `POST /v1/generations` against its live URL's hit, in gateway CPU per request;
    then 16 misses in one batch against one miss alone, in the client's wall time."""
    store = run_dir("api")
    control(store, "projects", "create", API_PROJECT)
    key = str(control(store, "keys", "create", API_PROJECT, "--scopes", "generate")["key"])
    env = {"PROMPTPIX_LOCAL_LATENCY_MS": "2000"}
    with servers.running(servers.promptpix(WORK, store, workers, env)) as pp:
        hit = api_hit_cost(pp, key, rounds, seconds, connections)
        batch = batch_time(pp, key, rounds)
    return {"hit": hit, "batch": batch, "workers": workers, "env": env}


def api_hit_cost(
    pp: Server, key: str, rounds: int, seconds: int, connections: int
) -> dict[str, Any]:
    """Gateway CPU per request (all its processes, from /proc, over one wrk load each) for
    the same stored image through its live URL and through `POST /v1/generations` with the
    same body every time, back to back in each round on the same gateway; and, for scale,
    the same call to `POST /v1/prompts/validate`."""
    assert pp.proc is not None
    body = json.dumps({"prompt": API_HIT_PROMPT})
    live = f"/i/{API_PROJECT}?" + urlencode({"prompt": API_HIT_PROMPT})
    auth = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    for _ in range(20):  # the first generates the original; then every worker holds it
        api = httpx.post(pp.url + "/v1/generations", content=body, headers=auth, timeout=30)
        api.raise_for_status()
        get = httpx.get(pp.url + live, timeout=30)
        get.raise_for_status()
    if not api.json()["cache"]["hit"] or get.headers.get("x-cache-status") != "HIT":
        raise RuntimeError(f"not hits: {api.json()['cache']}, {get.headers}")
    servers.wait_idle(pp.proc.pid)  # the original's prompt is embedded before we start
    post = {"BENCH_METHOD": "POST", "BENCH_BODY": body, "BENCH_AUTH": key}
    loads = (
        ("live", live, None),
        ("api", "/v1/generations", post),
        # beside them, no target: the same key and body on a JSON route that generates
        # nothing, what any call through the API's routing, key check and answer costs
        ("route", "/v1/prompts/validate", post),
    )
    per_round = []
    for _ in range(rounds):
        row = {}
        for name, path, request in loads:
            before = servers.tree_cpu_seconds(pp.proc.pid)
            load = wrk(pp.url, path, seconds, connections, request=request)
            used = servers.tree_cpu_seconds(pp.proc.pid) - before
            row[name] = {**vars(load), "cpu_ms": used * 1000 / max(1, load.requests)}
        per_round.append(row)
        print(f"  api hit: {row}", flush=True)
    ratios = [r["api"]["cpu_ms"] / r["live"]["cpu_ms"] for r in per_round]
    return {"rounds": per_round, "ratios": ratios, "ratio": statistics.median(ratios)}


async def _api_call(
    url: str, key: str, target: str, payload: dict[str, Any]
) -> tuple[float, int, Any]:
    """One JSON API call on its own connection: the client's wall time, status, answer."""
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    started = time.perf_counter()
    status, _, data = await _http(host, port, "POST", target, json.dumps(payload).encode(), key)
    return time.perf_counter() - started, status, json.loads(data) if data else None


def _made(status: int, generation: dict[str, Any] | None) -> bool:
    return status == 200 and generation is not None and bool(generation["cache"]["generated"])


def _timed_call(
    pp: Server, key: str, target: str, payload: dict[str, Any]
) -> tuple[float, float, int, Any]:
    """One JSON API call on an idle gateway: wall seconds, the gateway's CPU seconds until
    the answer (the prompts' embedding waits for a quiet second, so it is not in it), the
    status and answer; then until the gateway is idle again."""
    assert pp.proc is not None
    cpu = servers.tree_cpu_seconds(pp.proc.pid)
    wall, status, answer = uvloop.run(_api_call(pp.url, key, target, payload))
    used = servers.tree_cpu_seconds(pp.proc.pid) - cpu
    servers.wait_idle(pp.proc.pid)
    return wall, used, status, answer


def batch_time(pp: Server, key: str, rounds: int) -> dict[str, Any]:
    """Per round, each on an idle gateway: one `POST /v1/generations` miss, then one batch
    of 16 distinct misses; the client's wall time for each, the gateway's CPU, and the
    items' stages."""
    assert pp.proc is not None
    # as a server that has been up: the local generator has drawn its 16 scenes, the API's
    # miss path has run once
    uvloop.run(_misses(pp.url, WARM_UP, f"api warm-up {time.time_ns()}", API_PROJECT))
    warm = [{"prompt": f"api warm-up batch {time.time_ns()} {i}"} for i in range(BATCH)]
    uvloop.run(_api_call(pp.url, key, "/v1/generations/batch", {"items": warm}))
    servers.wait_idle(pp.proc.pid)
    per_round = []
    for _ in range(rounds):
        tag = f"api distinct {time.time_ns()}"
        one_s, one_cpu, status, one = _timed_call(
            pp, key, "/v1/generations", {"prompt": f"{tag} alone"}
        )
        items = [{"prompt": f"{tag} {i}"} for i in range(BATCH)]
        batch_s, batch_cpu, batch_status, answer = _timed_call(
            pp, key, "/v1/generations/batch", {"items": items}
        )
        outs = (answer or {}).get("items", []) if batch_status == 200 else []
        made = [o["generation"] for o in outs if _made(o["status"], o.get("generation"))]
        row = {
            "one_s": one_s,
            "one_cpu_s": one_cpu,
            "one_made": _made(status, one),
            "one_timings_ms": (one or {}).get("timings_ms", {}),
            "batch_s": batch_s,
            "batch_cpu_s": batch_cpu,
            "batch_status": batch_status,
            "batch_made": len(made),
            "batch_timings_ms": [g["timings_ms"] for g in made],
            "ratio": batch_s / one_s,
        }
        per_round.append(row)
        print(
            f"  batch: one {one_s:.2f} s ({one_cpu:.2f} CPU s), {BATCH} in a batch "
            f"{batch_s:.2f} s ({batch_cpu:.2f} CPU s)",
            flush=True,
        )
    ratios = [r["ratio"] for r in per_round]
    return {"rounds": per_round, "ratios": ratios, "ratio": statistics.median(ratios)}


# --- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Results:
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "logs").mkdir(exist_ok=True)
    shutil.rmtree(RUNS, ignore_errors=True)  # an earlier run's stores (see `run_dir`)
    if args.only_api:
        res = Results(settings=vars(args).copy())
        res.api = run_api(args)
        return res
    images = WORK / "images"
    images.mkdir(exist_ok=True)
    source = make_source(images / "source.jpg")
    res = Results(source_bytes=len(source))
    res.settings = vars(args).copy()

    store = WORK / "store"
    shutil.rmtree(store, ignore_errors=True)
    secret = seed_store(store, source)
    signed_hit = signed(HIT_PATH.replace("/i/demo", f"/i/{SIGNED}"), secret)

    pp = servers.promptpix(WORK, store, args.workers)
    peers: list[tuple[str, Server, dict[str, str]]] = [
        (
            "promptpix",
            pp,
            {f: PP_PATH % f for f in ("jpeg", "webp")},
        ),
        (
            "ipx",
            servers.ipx(WORK, images),
            {f: f"/s_{{w}}x{{h}},f_{f},q_80/source.jpg" for f in ("jpeg", "webp")},
        ),
        (
            "thumbor",
            servers.thumbor(WORK, images, processes=2),
            {
                "jpeg": "/unsafe/{w}x{h}/source.jpg",
                "webp": "/unsafe/{w}x{h}/filters:format(webp)/source.jpg",
            },
        ),
    ]
    static_root = WORK / "static"
    static_root.mkdir(exist_ok=True)
    started: list[Server] = []
    try:
        for _, server, _ in peers:
            started.append(server.start())
        for name, server, paths in peers:
            for fmt, path in paths.items():
                r = warm(server.url, path)
                kind = r.headers.get("content-type", "")
                if fmt not in kind:
                    raise RuntimeError(f"{name} answered {kind} for {fmt}")
        # the hit path: the same bytes promptpix caches, as nginx's static file
        hit = b""
        for _ in range(20):  # every worker holds it
            hit = httpx.get(pp.url + HIT_PATH).content
            httpx.get(pp.url + signed_hit).raise_for_status()
        (static_root / "hit.jpg").write_bytes(hit)
        res.hit_bytes = len(hit)
        static = servers.nginx_static(WORK, static_root, args.nginx_workers)
        started.append(static.start())
        proxy = servers.nginx_repo_proxy(WORK, pp.port, args.nginx_workers)
        started.append(proxy.start())
        for _ in range(3):
            r = httpx.get(proxy.url + HIT_PATH)
        if r.content != hit:
            res.notes.append("nginx/promptpix.conf answered other bytes than the gateway")
        cache_state = r.headers.get("x-proxy-cache", "(no X-Proxy-Cache header)")
        res.notes.append(f"nginx/promptpix.conf cache status after warm-up: {cache_state}")

        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", flush=True)
            loads: dict[str, Load] = {}
            for fmt in ("jpeg", "webp"):
                for name, server, paths in peers:
                    sampler = (
                        sample_rss(server, res.rss_peak)
                        if name == "promptpix"
                        else contextlib.nullcontext()
                    )
                    with sampler:
                        loads[f"transform/{fmt}/{name}"] = wrk(
                            server.url, paths[fmt], args.seconds, args.connections
                        )
                    print(f"  {fmt} {name}: {loads[f'transform/{fmt}/{name}'].rps:.1f} req/s")
            for name, base, path in (
                ("promptpix", pp.url, HIT_PATH),
                ("promptpix-signed", pp.url, signed_hit),
                ("nginx-static", static.url, "/hit.jpg"),
                ("nginx-proxy", proxy.url, HIT_PATH),
            ):
                loads[f"hit/{name}"] = wrk(base, path, args.seconds, args.hit_connections)
                print(f"  hit {name}: {loads[f'hit/{name}'].rps:.0f} req/s")
            res.rounds.append(loads)
        res.gateway_rss_parent = rss_mb(pp.proc.pid) if pp.proc else 0.0
    finally:
        for server in reversed(started):
            server.stop()

    if not args.skip_api:
        res.api = run_api(args)
    if not args.skip_generation:
        print("generation throughput", flush=True)
        runs = [
            (f"file store, {args.misses} misses", args.misses),
            ("file store, 50 misses", 50),
        ]
        for label, count in runs:
            res.generation.append(generation_benchmark(args.miss_workers, count, 2000, label))
            print(f"  {res.generation[-1]}", flush=True)
        label = f"file store, {args.misses} misses, a project with a quota and a budget"
        res.generation.append(
            generation_benchmark(args.miss_workers, args.misses, 2000, label, project=METERED)
        )
        print(f"  {res.generation[-1]}", flush=True)
        res.miss_cost = miss_cost(args.miss_workers)
        print(f"  one miss alone: {res.miss_cost}", flush=True)
        if not args.skip_s3:
            try:
                res.generation.append(s3_postgres_generation(args.miss_workers, args.misses))
                print(f"  {res.generation[-1]}", flush=True)
            except Exception as exc:  # report it, do not lose the rest of the run
                res.notes.append(f"S3 + PostgreSQL generation run failed: {exc!r}"[:400])
    return res


def run_api(args: argparse.Namespace) -> dict[str, Any]:
    print("JSON API", flush=True)
    return api_benchmark(args.workers, args.rounds, args.seconds, args.hit_connections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="promptpix worker processes")
    parser.add_argument(
        "--nginx-workers", type=int, default=os.cpu_count() or 1, help="nginx worker processes"
    )
    parser.add_argument("--connections", type=int, default=8, help="wrk connections, transforms")
    parser.add_argument("--hit-connections", type=int, default=50)
    parser.add_argument("--misses", type=int, default=500)
    parser.add_argument(
        "--miss-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="promptpix worker processes for the generation runs (default: one per core)",
    )
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-s3", action="store_true", help="no S3 + PostgreSQL run")
    parser.add_argument("--skip-api", action="store_true", help="no JSON API measurements")
    parser.add_argument(
        "--only-api",
        action="store_true",
        help="only the JSON API measurements, reported in bench/.work/RESULTS-api.md",
    )
    args = parser.parse_args(argv)
    for tool in ("wrk",) if args.only_api else ("wrk", "nginx", "node"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed: run bench/run.sh, which installs the peers")
    res = run(args)
    from .report import write_report

    # a partial run leaves the full run's RESULTS.md as it is
    path = QUICK_REPORT if args.only_api else BENCH / "RESULTS.md"
    write_report(res, machine=f"{platform.machine()}, {os.cpu_count()} cores", path=path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
