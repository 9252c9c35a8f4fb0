"""File leases: one holder per key among the workers of one machine, gone with its process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from promptpix.cache.leases import FileLeases

ROOT = Path(__file__).resolve().parents[2]
KEY, OTHER = "ab" * 32, "cd" * 32

HOLDER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from promptpix.cache.leases import FileLeases
    leases = FileLeases(Path(sys.argv[2]))
    lease = asyncio.run(leases.try_acquire(sys.argv[3]))
    print("held" if lease is not None else "refused", flush=True)
    time.sleep(60)
    """
)


def holder(root: Path, key: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ROOT), str(root), key],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_one_holder_per_key_in_and_across_processes(tmp_path: Path) -> None:
    async def run() -> None:
        a, b = FileLeases(tmp_path), FileLeases(tmp_path)
        lease = await a.try_acquire(KEY)
        assert lease is not None
        assert await b.try_acquire(KEY) is None  # another holder in this process
        assert await a.try_acquire(KEY) is None  # and the same holder, asking again
        other = await b.try_acquire(OTHER)  # another key is free
        assert other is not None
        proc, said = holder(tmp_path, KEY)  # and another process
        try:
            assert said == "refused"
        finally:
            stop(proc)
        await lease.release()
        second = await a.try_acquire(KEY)
        assert second is not None
        await lease.release()  # released twice: the new lease still holds
        assert await b.try_acquire(KEY) is None
        await second.release()
        again = await b.try_acquire(KEY)
        assert again is not None
        await again.release()
        await other.release()

    asyncio.run(run())
    # Nothing is created or left behind per key.
    assert [p.name for p in tmp_path.iterdir()] == ["leases.lock"]


def test_a_killed_holder_loses_its_lease(tmp_path: Path) -> None:
    proc, said = holder(tmp_path, KEY)
    try:
        assert said == "held"
        assert asyncio.run(FileLeases(tmp_path).try_acquire(KEY)) is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lease = asyncio.run(FileLeases(tmp_path).try_acquire(KEY))
        assert lease is not None
    finally:
        stop(proc)
