"""A gateway configured away from the defaults: timeouts, cache lifetime, default format."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.live_support import assert_error, generations, magic, start_gateway
from tests.services import Gateway


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("tuned"),
        PROMPTPIX_LOCAL_LATENCY_MS="1500",
        PROMPTPIX_GENERATION_TIMEOUT_S="0.5",
        PROMPTPIX_CACHE_CONTROL="public, max-age=600",
        PROMPTPIX_DEFAULT_FORMAT="jpeg",
        PROMPTPIX_MAX_DIMENSION="256",
    )
    yield server
    server.stop()


def test_slow_generation_answers_504_and_is_still_stored(tuned: Gateway) -> None:
    query = {"prompt": f"slow {uuid.uuid4().hex}", "w": "40"}
    before = generations(tuned.url)
    started = time.monotonic()
    r = httpx.get(tuned.url + "/i/demo", params=query, timeout=30)
    assert time.monotonic() - started < 1.4  # did not wait for the generation
    assert_error(r, 504, "generation_timeout")
    assert int(r.headers["retry-after"]) > 0
    time.sleep(2.0)
    assert generations(tuned.url) - before == 1
    again = httpx.get(tuned.url + "/i/demo", params=query, timeout=30)
    assert again.status_code == 200
    assert again.headers["x-cache-status"] in ("HIT", "TRANSFORM")
    # Another crop of it comes from the stored original, without generating again.
    other = httpx.get(tuned.url + "/i/demo", params={**query, "w": "41"}, timeout=30)
    assert other.headers["x-cache-status"] == "TRANSFORM"
    assert generations(tuned.url) - before == 1


def test_configured_cache_control_and_default_format(tuned: Gateway) -> None:
    query = {"prompt": "configured", "w": "30"}
    first = httpx.get(tuned.url + "/i/demo", params=query, timeout=30)
    if first.status_code == 504:  # the first generation outlasts the request
        time.sleep(2.0)
        first = httpx.get(tuned.url + "/i/demo", params=query, timeout=30)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=600"
    assert first.headers["content-type"] == "image/jpeg"
    assert magic(first.content) == "jpeg"
    assert "vary" not in first.headers
    # The default spelled out is the same image.
    named = httpx.get(tuned.url + "/i/demo", params={**query, "fmt": "jpeg"}, timeout=30)
    assert named.headers["etag"] == first.headers["etag"]
    assert named.content == first.content
    # With a format that has no alpha by default, rmbg needs a format named.
    assert_error(
        httpx.get(tuned.url + "/i/demo", params={**query, "rmbg": "1"}, timeout=30),
        400,
        "invalid_parameter",
        "rmbg",
    )


def test_configured_maximum_dimension(tuned: Gateway) -> None:
    assert_error(
        httpx.get(tuned.url + "/i/demo", params={"prompt": "x", "w": "257"}, timeout=30),
        400,
        "invalid_parameter",
        "w",
    )
    assert_error(
        httpx.get(tuned.url + "/i/demo", params={"prompt": "x", "h": "257"}, timeout=30),
        400,
        "invalid_parameter",
        "h",
    )
