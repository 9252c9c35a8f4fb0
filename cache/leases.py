"""Generation leases: one holder per original key across processes and replicas.

A holder that dies loses its lease: a file lock dies with its process, a PostgreSQL
advisory lock with its connection. Waiters poll (or are woken) and give up
waiting as soon as the original appears in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from .keys import is_key

Done = Callable[[], Awaitable[bool]]


class Lease(Protocol):
    async def release(self) -> None: ...


class Leases(Protocol):
    async def try_acquire(self, key: str) -> Lease | None: ...

    async def wait(self, key: str, seconds: float) -> None:
        """Sleep up to `seconds`, waking early if the lease's holder says it is done."""
        ...


async def acquire(leases: Leases, key: str, done: Done, max_wait_s: float) -> Lease | None:
    """The lease for `key`, or None once `done()` says another holder stored the original.
    After `max_wait_s` without either, the caller goes ahead without a lease."""
    deadline = time.monotonic() + max_wait_s
    while True:
        lease = await leases.try_acquire(key)
        if lease is not None:
            return lease
        await leases.wait(key, 0.1)
        if await done():
            return None
        if time.monotonic() > deadline:
            return NoLease()


class NoLease:
    async def release(self) -> None:
        return None


class FileLease:
    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    async def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


class FileLeases:
    """`flock` on a lock file per key: every worker on one machine, released on any exit."""

    def __init__(self, root: Path) -> None:
        self.root = root / "locks"

    async def try_acquire(self, key: str) -> Lease | None:
        if not is_key(key):
            raise ValueError("not a content key")
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{key}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # The file may have been unlinked by the previous holder after we opened it.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return None
        return FileLease(fd, path)

    async def wait(self, key: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
