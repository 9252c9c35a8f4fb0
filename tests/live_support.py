"""Helpers for the live-path tests: a gateway per test module, metrics, images, errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyvips

from promptpix.cache.filestore import FileStore
from tests.services import Gateway, PostgreSQL, SeaweedFS

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

YEAR = "public, max-age=31536000, immutable"


def start_gateway(root: Path, workers: int = 1, server: str = "granian", **env: str) -> Gateway:
    """`promptpix serve` on a free loopback port, with its own data directory."""
    data = root / "data"
    # Embedded defaults whatever the calling shell holds: no provider keys, no other backends.
    inherited = {
        name: ""
        for name in os.environ
        if name.startswith("PROMPTPIX_")
        or name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "AWS_ENDPOINT_URL")
    }
    settings = {
        **inherited,
        "PROMPTPIX_STORE": f"file://{data}",
        "PROMPTPIX_GENERATORS": "local",
        "PROMPTPIX_DATABASE_URL": "",
        "PROMPTPIX_DEFAULT_FORMAT": "webp",
        "PROMPTPIX_LOCAL_LATENCY_MS": "0",
        **env,
    }
    return Gateway(root, settings, workers=workers, server=server).start(timeout=60)


@contextlib.contextmanager
def api_gateway(root: Path, admin: str, **env: str) -> Iterator[Gateway]:
    """A gateway with the admin API on `admin`, and no AI stage (semantic cache, prompt
    LLM, vision) that would slow a test of the API itself."""
    server = start_gateway(
        root,
        PROMPTPIX_ADMIN_TOKEN=admin,
        PROMPTPIX_SEMANTIC="off",
        PROMPTPIX_PROMPT_LLM="off",
        PROMPTPIX_VISION="off",
        **env,
    )
    try:
        yield server
    finally:
        server.stop()


def stored_meta(store: Path, key: str) -> dict[str, Any]:
    """An original's metadata as the file store at `store` keeps it."""
    stored = asyncio.run(FileStore(store).get(key))
    assert stored is not None, f"{key} is not stored in {store}"
    return stored.meta


def is_stored(store: Path, key: str) -> bool:
    """Whether the file store at `store` holds an original under `key`."""
    return asyncio.run(FileStore(store).get(key)) is not None


def metrics(client: httpx.Client | str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of `/metrics`, keyed by (name, labels)."""
    if isinstance(client, str):
        text = httpx.get(client + "/metrics", timeout=30).text
    else:
        text = client.get("/metrics").text
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(_LABEL.findall(m[2] or ""))
        out[(m[1], labels)] = float(m[3])
    return out


def generations(client: httpx.Client | str, outcome: str = "success") -> float:
    """How many originals were generated so far (every generator) with this outcome."""
    return sum(
        value
        for (name, labels), value in metrics(client).items()
        if name == "promptpix_generations_total" and ("outcome", outcome) in labels
    )


def size_of(data: bytes) -> tuple[int, int]:
    img = pyvips.Image.new_from_buffer(data, "")
    return img.width, img.height


def image(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def assert_error(
    response: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict[str, str]:
    """A failure answer of SPEC §1: JSON `{"error": {code, message, param}}`, no-store."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error.get("param") == param, error
    return error


def magic(data: bytes) -> str:
    """The format that a file's first bytes say it is."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "avif"
    return "unknown"


def raw_get(base: str, target: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """A GET with the request target sent byte for byte (httpx would re-encode it)."""
    url = httpx.URL(base)
    with socket.create_connection((url.host, url.port or 80), timeout=timeout) as sock:
        sock.sendall(
            b"GET "
            + target
            + b" HTTP/1.1\r\nHost: "
            + url.host.encode()
            + b"\r\nConnection: close\r\n\r\n"
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


WITHIN_S = 5.0  # a change to the control plane holds on every worker and replica within this


def eventually(check: Callable[[], bool], within: float = WITHIN_S) -> float:
    """Seconds until `check()` held; fails the test if it does not within `within`."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.1)


def checked_client(base: str) -> httpx.Client:
    """A client for one gateway; every answer is checked: none may be a server error."""

    def no_server_error(response: httpx.Response) -> None:
        assert response.status_code < 500, (response.status_code, response.read()[:300])

    return httpx.Client(base_url=base, timeout=60, event_hooks={"response": [no_server_error]})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_project(
    base: str,
    admin: str,
    scopes: tuple[str, ...] = ("generate", "read", "assets"),
    **fields: Any,
) -> tuple[str, str]:
    """A new project made with the admin token, and a key of it: (slug, key)."""
    slug = f"p-{uuid.uuid4().hex[:10]}"
    with checked_client(base) as client:
        made = client.post("/v1/projects", json={"slug": slug, **fields}, headers=bearer(admin))
        assert made.status_code == 201, made.text
        key = client.post(
            f"/v1/projects/{slug}/keys",
            json={"name": "t", "scopes": list(scopes)},
            headers=bearer(admin),
        )
        assert key.status_code == 201, key.text
    return slug, str(key.json()["key"])


@contextlib.contextmanager
def replicas(
    root: Path, database: str, *, s3: bool = True, **env: str
) -> Iterator[tuple[Gateway, Gateway, str]]:
    """Two gateway processes on one PostgreSQL database and, with `s3`, one S3 bucket
    (SeaweedFS; else one file store): the two, and the S3 endpoint ("" without)."""
    postgres = PostgreSQL(root / "pg").start()
    weed = SeaweedFS(root / "weed").start() if s3 else None
    started: list[Gateway] = []
    try:
        shared = {"PROMPTPIX_DATABASE_URL": postgres.new_database(database), **env}
        if weed is not None:
            shared |= {
                "PROMPTPIX_STORE": f"s3://{database}/images",
                "PROMPTPIX_S3_ENDPOINT": weed.endpoint,
                "AWS_ACCESS_KEY_ID": "promptpix",
                "AWS_SECRET_ACCESS_KEY": "promptpix-secret",
                "AWS_REGION": "us-east-1",
            }
        else:
            shared["PROMPTPIX_STORE"] = f"file://{root / 'store'}"
        for name in ("a", "b"):
            spool = str(root / name / "spool")
            started.append(start_gateway(root / name, **shared, PROMPTPIX_SPOOL_DIR=spool))
        yield started[0], started[1], weed.endpoint if weed is not None else ""
    finally:
        for server in started:
            server.stop()
        if weed is not None:
            weed.stop()
        postgres.remove()
