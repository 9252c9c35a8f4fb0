"""Shared fixtures: one real gateway for the live-path tests that need no special settings."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.live_support import start_gateway
from tests.services import Gateway

# Small enough that clamping is cheap to check, big enough for every size the tests ask for.
LIVE_MAX_DIMENSION = 1500


@pytest.fixture(scope="session")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("live"), PROMPTPIX_MAX_DIMENSION=str(LIVE_MAX_DIMENSION)
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live(live_gateway: Gateway) -> Iterator[httpx.Client]:
    """An HTTP client for the shared gateway; every request has a deadline."""
    with httpx.Client(base_url=live_gateway.url, timeout=60) as client:
        yield client
