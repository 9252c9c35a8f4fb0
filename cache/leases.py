"""Generation leases: one holder per original key across processes and replicas.

A holder that dies loses its lease: a file lock dies with its process, a PostgreSQL
advisory lock with its connection. Waiters poll (or are woken) and give up
waiting as soon as the original appears in the store.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
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
    def __init__(self, leases: FileLeases, offset: int) -> None:
        self.leases, self.offset = leases, offset
        self.released = False

    async def release(self) -> None:
        if not self.released:  # once: a later holder of the key keeps its lock
            self.released = True
            self.leases.unlock(self.offset)


class FileLeases:
    """A one-byte lock per key in one lock file, at an offset taken from the key: every
    worker on one machine, released on any exit (the kernel drops a dead process's locks).
    Open-file-description locks on Linux, so two instances in one process exclude each
    other too; elsewhere POSIX record locks, which do so between processes only. One system call
    takes a lease and one gives it back: nothing is created or removed per key."""

    def __init__(self, root: Path) -> None:
        self.path = root / "leases.lock"
        self._fd: int | None = None
        # The kernel lets one open file take its own lock again: what this instance holds
        # is refused here, as another holder's is refused by the kernel.
        self._held: set[int] = set()

    def _file(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    async def try_acquire(self, key: str) -> Lease | None:
        if not is_key(key):
            raise ValueError("not a content key")
        offset = int(key[:15], 16)  # 60 bits: a valid file offset, collisions negligible
        if offset in self._held or not _range_lock(self._file(), offset, fcntl.F_WRLCK):
            return None
        self._held.add(offset)
        return FileLease(self, offset)

    def unlock(self, offset: int) -> None:
        if self._fd is not None:
            self._held.discard(offset)
            _range_lock(self._fd, offset, fcntl.F_UNLCK)

    async def wait(self, key: str, seconds: float) -> None:
        await asyncio.sleep(seconds)


_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)


def _range_lock(fd: int, offset: int, kind: int) -> bool:
    """Lock (F_WRLCK) or unlock (F_UNLCK) one byte at `offset`, never waiting; False if
    another holder has it."""
    try:
        if _OFD_SETLK is not None:  # struct flock: type, whence, start, len, pid (0)
            fcntl.fcntl(fd, _OFD_SETLK, struct.pack("@hhqqi4x", kind, os.SEEK_SET, offset, 1, 0))
        else:
            op = fcntl.LOCK_UN if kind == fcntl.F_UNLCK else fcntl.LOCK_EX | fcntl.LOCK_NB
            fcntl.lockf(fd, op, 1, offset, os.SEEK_SET)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True
