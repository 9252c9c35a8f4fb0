"""Start and stop the servers under test: each in its own session, stopped by its PID."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
VENV_BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process (and whatever it forks), on a loopback port."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
        ready_path: str = "/",
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.ready_path = ready_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=2).status_code < 500:
                    return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.name} did not come up in {timeout} s: {self.tail()}")

    def descendants(self) -> list[int]:
        """The PIDs forked by the server (its workers), depth first."""
        if self.proc is None:
            return []
        found: list[int] = []
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except FileNotFoundError:
                continue
            for tid in tasks:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                    for child in map(int, children):
                        found.append(child)
                        todo.append(child)
        return found

    def stop(self) -> None:
        """SIGTERM to the process group this server leads, SIGKILL if it lingers."""
        proc = self.proc
        if proc is None:
            return
        pids = self.descendants()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for pid in pids:  # a worker that outlived its parent
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def running(server: Server, timeout: float = 60) -> Iterator[Server]:
    server.start(timeout)
    try:
        yield server
    finally:
        server.stop()


def rss_mb(pid: int) -> float:
    """VmRSS of one process, in MB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        stats[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total


QUIET_S = 2.5


def wait_idle(pid: int, timeout: float = 90.0, quiet_s: float = QUIET_S) -> None:
    """Until a process tree has used (almost) no CPU for `quiet_s`, or `timeout`. The window
    is longer than the gateway's own wait for a quiet moment (1 s) before it starts its
    background work (embedding stored prompts), so that work is over, not about to begin."""
    deadline = time.monotonic() + timeout
    quiet_since, last = time.monotonic(), cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_seconds(pid)
        if now - last > 0.03:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        last = now


# --- the servers -------------------------------------------------------------------------


def promptpix(
    work: Path, store: Path, workers: int, extra_env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    env = {"PROMPTPIX_STORE": f"file://{store}", **(extra_env or {})}
    argv = [
        str(VENV_BIN / "promptpix"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return Server("promptpix", argv, port, work / "logs" / "promptpix.log", env, "/healthz")


def ipx(work: Path, images: Path) -> Server:
    port = free_port()
    argv = [
        "node",
        str(PEERS / "ipx" / "node_modules" / "ipx" / "bin" / "ipx.mjs"),
        "serve",
        "--dir",
        str(images),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {"NODE_ENV": "production"}
    return Server("ipx", argv, port, work / "logs" / "ipx.log", env, "/_/source.jpg")


def thumbor(work: Path, images: Path, processes: int = 2) -> Server:
    port = free_port()
    conf = work / "thumbor.conf"
    conf.write_text(
        "LOADER = 'thumbor.loaders.file_loader'\n"
        f"FILE_LOADER_ROOT_PATH = {str(images)!r}\n"
        "STORAGE = 'thumbor.storages.no_storage'\n"
        "RESULT_STORAGE = None\n"
        "QUALITY = 80\n"
        "ALLOW_UNSAFE_URL = True\n"
    )
    argv = [
        str(PEERS / "thumbor-venv" / "bin" / "thumbor"),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-c",
        str(conf),
        "-l",
        "error",
        "--processes",
        str(processes),
    ]
    return Server("thumbor", argv, port, work / "logs" / "thumbor.log", None, "/healthcheck")


NGINX_HEAD = """\
user root;
worker_processes {workers};
daemon off;
pid {work}/{name}.pid;
error_log {work}/logs/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {work}/{name}-tmp/body;
    proxy_temp_path {work}/{name}-tmp/proxy;
    fastcgi_temp_path {work}/{name}-tmp/fastcgi;
    uwsgi_temp_path {work}/{name}-tmp/uwsgi;
    scgi_temp_path {work}/{name}-tmp/scgi;
    types {{ image/jpeg jpg; image/webp webp; }}
{body}
}}
"""


def _nginx(work: Path, name: str, body: str, port: int, workers: int, ready: str) -> Server:
    (work / f"{name}-tmp").mkdir(parents=True, exist_ok=True)
    conf = work / f"{name}.conf"
    conf.write_text(NGINX_HEAD.format(workers=workers, work=work, name=name, body=body))
    argv = ["nginx", "-p", str(work), "-c", str(conf)]
    return Server(name, argv, port, work / "logs" / f"{name}.log", None, ready)


def nginx_static(work: Path, root: Path, workers: int) -> Server:
    port = free_port()
    body = (
        f"    server {{\n        listen 127.0.0.1:{port};\n"
        f"        location / {{ root {root}; }}\n    }}"
    )
    return _nginx(work, "nginx-static", body, port, workers, "/hit.jpg")


def adapt_repo_conf(text: str, work: Path, gateway_port: int, port: int) -> str:
    """The repository's nginx/promptpix.conf with only paths and ports changed.

    Its template values (`${PROMPTPIX_UPSTREAM}` and friends) are filled in as envsubst
    would; a config with literal addresses has those replaced instead.
    """
    cache = work / "nginx-proxy-cache"
    cache.mkdir(parents=True, exist_ok=True)
    values = {
        "PROMPTPIX_UPSTREAM": f"127.0.0.1:{gateway_port}",
        "NGINX_PORT": f"127.0.0.1:{port}",
        "NGINX_CACHE_DIR": str(cache),
    }
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    text = re.sub(r"(proxy_cache_path\s+)\S+", lambda m: f"{m.group(1)}{cache}", text)
    text = re.sub(r"127\.0\.0\.1:8080|localhost:8080", f"127.0.0.1:{gateway_port}", text)
    listens = list(re.finditer(r"^(\s*)listen\s+[^;]*;", text, re.M))
    for i, m in enumerate(reversed(listens)):  # the first server's listen becomes ours
        keep = i == len(listens) - 1
        line = f"{m.group(1)}listen 127.0.0.1:{port};" if keep else ""
        text = text[: m.start()] + line + text[m.end() :]
    return text


def nginx_repo_proxy(work: Path, gateway_port: int, workers: int) -> Server:
    port = free_port()
    conf = (ROOT / "nginx" / "promptpix.conf").read_text()
    body = adapt_repo_conf(conf, work, gateway_port, port)
    return _nginx(work, "nginx-proxy", body, port, workers, "/healthz")
