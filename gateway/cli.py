"""The `promptpix` command: `serve`, `reindex`, the control plane (projects, keys, sign), the
commands that talk to a running gateway (generate, batch, warm) and `mcp`."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import sys
import tempfile

from .admin_cli import add_commands, control_command
from .config import Config, ConfigError
from .remote_cli import COMMANDS as REMOTE_COMMANDS
from .remote_cli import add_commands as add_remote_commands
from .remote_cli import remote_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promptpix", description="The promptpix image gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--server",
        choices=("granian", "uvicorn"),
        default="granian",
        help="the HTTP server that runs the ASGI app (default granian)",
    )
    sub.add_parser("reindex", help="rebuild the index from what the store holds")
    add_commands(sub)
    add_remote_commands(sub)
    sub.add_parser(
        "mcp",
        help="the MCP tools over stdio, against PROMPTPIX_URL with PROMPTPIX_API_KEY",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve_command(args.host, args.port, args.workers, args.server)
    if args.command == "reindex":
        return reindex_command()
    if args.command in REMOTE_COMMANDS:
        return remote_command(args)
    if args.command == "mcp":
        from .mcp_stdio import run  # the MCP SDK loads only for this command

        return run(os.environ)
    return control_command(args)


def reindex_command() -> int:
    import asyncio
    import sqlite3

    import asyncpg

    from promptpix.cache.backends import build_backends
    from promptpix.cache.index import original_row
    from promptpix.cache.store import StoreUnavailable

    try:
        settings = Config.from_env().cache
    except ConfigError as exc:
        print(f"promptpix: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        backends = build_backends(settings)
        index = backends.index.backend  # written directly: a rebuild waits for each batch
        await index.start()
        count = 0
        batch = []
        try:
            async for meta in backends.store.metadata():
                if meta.get("kind") == "asset":  # an upload: its row is in the library
                    continue
                batch.append(original_row(meta))
                if len(batch) >= 500:
                    await index.write(batch)
                    count, batch = count + len(batch), []
            if batch:
                await index.write(batch)
                count += len(batch)
            total = await index.count("originals")
        finally:
            await backends.close()
        print(f"reindexed {count} originals; the index holds {total}")
        return 0

    try:
        return asyncio.run(run())
    # The store or the index failed (a connection that fails is an OSError): one line.
    except (StoreUnavailable, OSError, sqlite3.Error, asyncpg.PostgresError) as exc:
        print(f"promptpix: reindex stopped: {exc}", file=sys.stderr)
        return 1


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(count: int = 2) -> None:
    """glibc's MALLOC_ARENA_MAX=2 unless set: a few malloc arenas, not 8 per core, keep a
    worker's memory flat. glibc reads the variable when a process starts, and granian forks
    its workers from this one, so the limit is set here, in this process, before the fork."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    os.environ["MALLOC_ARENA_MAX"] = str(count)  # for workers started afresh (uvicorn's)
    with contextlib.suppress(OSError, AttributeError, TypeError):  # not glibc: nothing to set
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, count)


def private_metrics_dir(workers: int) -> str | None:
    """Several workers add up their metrics through files in a directory of this run's own,
    new and so empty; prometheus_client reads `PROMETHEUS_MULTIPROC_DIR` when a worker imports
    it, so it is set here, before any worker starts. One worker counts in memory."""
    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
        os.environ.pop(name, None)  # another run's directory is not this one's
    if workers == 1:
        return None
    path = tempfile.mkdtemp(prefix="promptpix-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def serve_command(host: str | None, port: int | None, workers: int, server: str) -> int:
    # Flags win over the environment; workers read the result from the environment.
    if host is not None:
        os.environ["PROMPTPIX_HOST"] = host
    if port is not None:
        os.environ["PROMPTPIX_PORT"] = str(port)
    limit_malloc_arenas()
    try:  # every setting is checked here, before anything listens or forks
        config = Config.from_env()
    except ConfigError as exc:
        print(f"promptpix: {exc}", file=sys.stderr)
        return 2
    if workers < 1:
        print("promptpix: --workers must be at least 1", file=sys.stderr)
        return 2
    metrics_dir = private_metrics_dir(workers)
    try:
        serve(config, workers, server)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def serve(config: Config, workers: int, server: str) -> None:
    target = "promptpix.gateway.app:create_app"
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            target,
            factory=True,
            host=config.server.host,
            port=config.server.port,
            workers=workers,
            log_level="info",
            access_log=False,
            lifespan="on",
        )
        return
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        target,
        factory=True,
        address=config.server.host,
        port=config.server.port,
        interface=Interfaces.ASGI,
        workers=workers,
        websockets=False,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    sys.exit(main())
