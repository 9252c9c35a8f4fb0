"""Real servers for tests: SeaweedFS (S3), PostgreSQL and nginx, on free loopback ports.

Each starts in a temp directory, is stopped by PID, and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on, chosen below the kernel's ephemeral range.

    A port the kernel hands out for `bind(0)` is also one it may give an outgoing
    connection's local end a moment later (a server's own internal clients, say), and then
    the server that was told to listen there fails with "address already in use". Ports
    below the range are only ever taken on purpose. Each is handed out once per process.
    """
    low, _ = _ephemeral_range()
    if low > 12000:
        for _ in range(200):
            port = random.randrange(10000, low)
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class Exited(RuntimeError):
    """The server's process ended while we waited for it: waiting longer cannot help."""


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exited:
            raise
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up in {timeout} s ({last})")


def _log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-3000:]
    except FileNotFoundError:
        return ""


# --- SeaweedFS --------------------------------------------------------------------------


@dataclass
class SeaweedFS:
    """`weed mini` (master, volume, filer, S3) with every port chosen, telemetry off."""

    root: Path
    s3_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ports: list[int] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60) -> SeaweedFS:
        if self.ports:  # a restart keeps its ports: clients hold the endpoint
            return self._start(timeout)
        for attempt in range(3):
            self.ports = [free_port() for _ in range(13)]
            try:
                return self._start(timeout)
            except Exited as exc:
                taken = ("address already in use", "is not available")  # at bind, at its check
                if attempt == 2 or not any(words in str(exc) for words in taken):
                    raise
                # A new start from nothing: the data and log name the ports it was given.
                shutil.rmtree(self.root / "data")
                (self.root / "weed.log").unlink()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> SeaweedFS:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        p = self.ports
        self.s3_port = p[6]
        args = [
            weed,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-master.port={p[0]}",
            f"-master.port.grpc={p[1]}",
            f"-volume.port={p[2]}",
            f"-volume.port.grpc={p[3]}",
            f"-filer.port={p[4]}",
            f"-filer.port.grpc={p[5]}",
            f"-s3.port={p[6]}",
            f"-s3.port.grpc={p[7]}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-webdav.port={p[8]}",
            f"-admin.port={p[9]}",
            f"-admin.port.grpc={p[10]}",
            "-admin.ui=false",
            f"-debug.port={p[11]}",
            f"-metricsPort={p[12]}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            f"-s3.localSocket={self.root / 's3.sock'}",
        ]
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            args, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Exited(f"weed exited: {_log(self.root / 'weed.log')}")
            # A bucket listing answers only once the filer behind S3 is ready.
            return httpx.get(self.endpoint + "/", timeout=2).status_code == 200

        wait_until(up, timeout, "SeaweedFS")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


# --- PostgreSQL -------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found and "postgresql" in os.path.realpath(found):
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return candidates[0]


@dataclass
class PostgreSQL:
    """A throwaway cluster on a loopback port, run as the `postgres` user when we are root."""

    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    home: Path = field(init=False)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self, prefix: str = "d") -> str:
        """A new, empty database on this server: its DSN."""
        import asyncio
        import uuid

        import asyncpg

        name = prefix + uuid.uuid4().hex[:12]

        async def create() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f"CREATE DATABASE {name}")
            finally:
                await conn.close()

        asyncio.run(create())
        return self.dsn.rsplit("/", 1)[0] + "/" + name

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def __post_init__(self) -> None:
        # The cluster lives in its own directory: pytest's temp tree is private to root,
        # and the server runs as `postgres`.
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = Path(tempfile.mkdtemp(prefix="promptpix-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres")

    def start(self, timeout: float = 60) -> PostgreSQL:
        data = self.home / "pgdata"
        if not data.exists():
            subprocess.run(
                self._as_owner(
                    [
                        pg_bin("initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        "-A",
                        "trust",
                        "--no-sync",
                        "-E",
                        "UTF8",
                    ]
                ),
                check=True,
                capture_output=True,
            )
        self.port = self.port or free_port()
        args = self._as_owner(
            [
                pg_bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.home}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "max_connections=200",
                "-c",
                "full_page_writes=off",
            ]
        )
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Exited(f"postgres exited: {_log(self.root / 'postgres.log')}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            ready = subprocess.run(
                [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            return ready.returncode == 0

        wait_until(up, timeout, "PostgreSQL")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGINT)  # fast shutdown

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


# --- nginx ------------------------------------------------------------------------------


def nginx_bin() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        raise RuntimeError("nginx not found (apt-get install nginx)")
    return found


REPO = Path(__file__).resolve().parent.parent


def nginx_config(root: Path, port: int, upstream: str) -> str:
    """The repository's `nginx/promptpix.conf`, its placeholders filled, in a main config
    whose every path is under `root`."""
    site = (REPO / "nginx" / "promptpix.conf").read_text()
    for name, value in {
        "PROMPTPIX_UPSTREAM": upstream,
        "NGINX_PORT": f"127.0.0.1:{port}",
        "NGINX_CACHE_DIR": str(root / "cache"),
    }.items():
        site = site.replace("${" + name + "}", value)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {root / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 2;\npid {root / 'nginx.pid'};\n"
        f"error_log {root / 'logs' / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    log_format upstream '$request_uri $status $upstream_cache_status "
        "$upstream_addr';\n"
        f"    access_log {root / 'logs' / 'access.log'} upstream;\n"
        f"{temp}\n{site}\n}}\n"
    )


@dataclass
class Nginx:
    """nginx in the foreground with a config written into a temp dir."""

    root: Path
    conf: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int, timeout: float = 20) -> Nginx:
        for sub in ("logs", "tmp", "cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        path = self.root / "nginx.conf"
        path.write_text(self.conf)
        log = open(self.root / "nginx.out", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [nginx_bin(), "-p", str(self.root), "-c", str(path), "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Exited(f"nginx exited: {_log(self.root / 'nginx.out')}")
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_until(up, timeout, "nginx")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGQUIT)


# --- the gateway ------------------------------------------------------------------------


@dataclass
class Gateway:
    """`promptpix serve` as a real process."""

    root: Path
    env: dict[str, str]
    workers: int = 1
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    server: str = "granian"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Gateway:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = {**os.environ, **self.env}
        log = open(self.root / f"gateway-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "promptpix.gateway.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--server",
                self.server,
            ],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Exited(f"gateway exited: {_log(self.root / f'gateway-{self.port}.log')}")
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200

        wait_until(up, timeout, "promptpix")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop(self.proc, sig)

    def log(self) -> str:
        return _log(self.root / f"gateway-{self.port}.log")


@contextlib.contextmanager
def running(*servers: object) -> Iterator[None]:
    try:
        yield
    finally:
        for server in reversed(servers):
            server.stop()  # type: ignore[attr-defined]
