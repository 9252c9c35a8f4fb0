"""The test servers themselves: ports that are really free, and a start that fails fast."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.services import Gateway, SeaweedFS

pytestmark = pytest.mark.timeout(60)


def test_free_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    low, _ = services._ephemeral_range()
    ports = [services.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(port < low for port in ports), ports


def test_weed_that_finds_its_port_taken_starts_again_on_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.create_server(("127.0.0.1", services.free_port())) as held:
        taken = held.getsockname()[1]
        real = services.free_port
        given = iter([taken])  # the first port asked for (the master's) is in use
        monkeypatch.setattr(services, "free_port", lambda: next(given, None) or real())
        weed = SeaweedFS(tmp_path / "weed").start()
        try:
            assert taken not in weed.ports
            assert httpx.get(weed.endpoint + "/", timeout=5).status_code == 200
        finally:
            weed.stop()


def test_a_server_that_exits_ends_the_wait_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(services.Exited, match="PROMPTPIX_TRANSFORM_THREADS"):
        Gateway(tmp_path, {"PROMPTPIX_TRANSFORM_THREADS": "many"}).start(timeout=45)
    assert time.monotonic() - started < 30
