"""Honest fallbacks (SPEC §3), over HTTP against a real gateway whose chain is `gemini,local`
with `gemini` pointed at a local server that speaks its API and can be switched to an outage.

Behind a paid generator the offline `local` generator only stands in: its answer is served
as a `PLACEHOLDER` for a minute, never stored, never charged, and the same URL gets the
real image once Gemini answers again. A project with `on_failure: error` gets a 503 instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.generator_fakes import Answer, Call, FakeServer, gemini_ok, google_error
from tests.live_support import YEAR, assert_error, image, metrics, start_gateway, stored_meta
from tests.live_support import is_stored as stored
from tests.services import Gateway

pytestmark = pytest.mark.timeout(60)

ADMIN_TOKEN = "fallbacks-admin-token-0123456789"
MINUTE = "public, max-age=60"
CALLS_PER_MISS = 2  # the first try and PROMPTPIX_GEMINI_RETRIES=1 retry


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer(gemini_ok) as server:
        yield server


def gemini_env(fake: FakeServer) -> dict[str, str]:
    return {
        "GEMINI_API_KEY": "test-key",
        "PROMPTPIX_GEMINI_BASE_URL": fake.url,
        "PROMPTPIX_GENERATORS": "gemini,local",
        "PROMPTPIX_GEMINI_RPM": "0",
        "PROMPTPIX_GEMINI_RETRIES": "1",
        "PROMPTPIX_GEMINI_BACKOFF_S": "0.05",
        "PROMPTPIX_GEMINI_TIMEOUT_S": "10",
        "PROMPTPIX_GEMINI_BREAKER_FAILURES": "1000",  # every request during an outage asks
        "PROMPTPIX_PROMPT_LLM": "off",  # these tests count image calls only
        "PROMPTPIX_VISION": "off",
        "PROMPTPIX_SEMANTIC": "off",  # a failure is never answered with a similar image
        "PROMPTPIX_ADMIN_TOKEN": ADMIN_TOKEN,
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fallbacks")


@pytest.fixture(scope="module")
def gateway(fake: FakeServer, root: Path) -> Iterator[Gateway]:
    server = start_gateway(root, **gemini_env(fake))
    yield server
    server.stop()


def unavailable(call: Call) -> Answer:
    return Answer(503, google_error(503, "UNAVAILABLE"))


@contextlib.contextmanager
def outage(fake: FakeServer) -> Iterator[None]:
    """Gemini answers 503 UNAVAILABLE to every call until the block ends."""
    fake.respond = unavailable
    try:
        yield
    finally:
        fake.respond = gemini_ok


def images(fake: FakeServer) -> int:
    """Image generations the fake Gemini was asked for."""
    return fake.count("gemini-2.5-flash-image:generateContent")


def get(gateway: Gateway, query: str, project: str = "demo", **headers: str) -> httpx.Response:
    answer = httpx.get(f"{gateway.url}/i/{project}?{query}", headers=headers, timeout=20)
    assert answer.status_code < 500 or answer.status_code == 503, answer.text  # never a 500
    return answer


def is_stored(root: Path, key: str) -> bool:
    return stored(root / "data", key)


def admin(gateway: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.request(method, gateway.url + path, json=body, headers=auth, timeout=30)


def create_project(gateway: Gateway, slug: str, **fields: Any) -> dict[str, Any]:
    answer = admin(gateway, "POST", "/v1/projects", {"slug": slug, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def usage(gateway: Gateway, slug: str) -> dict[str, Any]:
    answer = admin(gateway, "GET", f"/v1/projects/{slug}/usage")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def samples(gateway: Gateway, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """One counter of `/metrics`, by its sorted labels."""
    return {
        tuple(sorted(labels)): value
        for (sample, labels), value in metrics(gateway.url).items()
        if sample == name
    }


def assert_placeholder(answer: httpx.Response, cache_control: str = MINUTE) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == "PLACEHOLDER"
    assert answer.headers["x-generator"] == "local"
    assert answer.headers["cache-control"] == cache_control


def assert_real(answer: httpx.Response, status: str) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == status
    assert answer.headers["x-generator"] == "gemini"
    assert answer.headers["cache-control"] == YEAR


def test_during_an_outage_the_stand_in_is_served_for_a_minute_and_kept_nowhere(
    gateway: Gateway, fake: FakeServer, root: Path
) -> None:
    url = "prompt=a+lighthouse+at+dusk&ar=4:3&w=200"
    with outage(fake):
        before = images(fake)
        first = get(gateway, url)
        assert_placeholder(first)
        assert images(fake) == before + CALLS_PER_MISS
        assert image(first.content).width == 200  # a real image of the asked size
        key = first.headers["x-image-id"]
        assert not is_stored(root, key)

        again = get(gateway, url)  # not remembered: Gemini is asked again
        assert_placeholder(again)
        assert images(fake) == before + 2 * CALLS_PER_MISS
        assert again.headers["x-image-id"] == key

        narrower = get(gateway, "prompt=a+lighthouse+at+dusk&ar=4:3&w=120")
        assert_placeholder(narrower)  # no original to transform from: asked again
        assert images(fake) == before + 3 * CALLS_PER_MISS
        assert image(narrower.content).width == 120
        assert not is_stored(root, key)

    counted = samples(gateway, "promptpix_generations_total")
    assert counted.get((("generator", "local"), ("outcome", "placeholder")), 0) >= 3


def test_after_recovery_the_same_url_gets_the_real_image_and_keeps_it(
    gateway: Gateway, fake: FakeServer, root: Path
) -> None:
    url = "prompt=a+harbour+in+fog&w=160"
    with outage(fake):
        stand_in = get(gateway, url)
    assert_placeholder(stand_in)
    key = stand_in.headers["x-image-id"]
    assert not is_stored(root, key)

    before = images(fake)
    real = get(gateway, url)
    assert_real(real, "MISS")
    assert images(fake) == before + 1
    assert real.headers["x-image-id"] == key  # the same original key, now really made
    assert real.content != stand_in.content
    meta = stored_meta(root / "data", key)
    assert meta["generator"] == "gemini"
    assert meta["generators_attempted"] == ["gemini"] and meta["fallback_used"] is False

    assert_real(get(gateway, url), "HIT")
    other = get(gateway, "prompt=a+harbour+in+fog&w=96")
    assert_real(other, "TRANSFORM")
    assert other.headers["x-image-id"] == key
    assert images(fake) == before + 1  # the stored original serves every variant


def test_the_placeholders_etag_never_validates_the_real_image(
    gateway: Gateway, fake: FakeServer
) -> None:
    url = "prompt=a+windmill+on+a+hill&w=128"
    with outage(fake):
        stand_in = get(gateway, url)
    assert_placeholder(stand_in)
    placeholder_etag = stand_in.headers["etag"]

    real = get(gateway, url, **{"if-none-match": placeholder_etag})
    assert_real(real, "MISS")  # the real image, not 304 "what you hold is current"
    assert real.content
    real_etag = real.headers["etag"]
    assert real_etag != placeholder_etag

    again = get(gateway, url, **{"if-none-match": placeholder_etag})
    assert_real(again, "HIT")
    assert again.content == real.content
    current = get(gateway, url, **{"if-none-match": real_etag})
    assert current.status_code == 304  # the real ETag still validates


def test_placeholders_cost_no_quota(gateway: Gateway, fake: FakeServer, root: Path) -> None:
    create_project(gateway, "one-a-month", quota={"generations_per_month": 1})
    with outage(fake):
        first = get(gateway, "prompt=a+red+kite&w=64", "one-a-month")
        second = get(gateway, "prompt=a+blue+kite&w=64", "one-a-month")
        assert_placeholder(first)
        assert_placeholder(second)  # the first did not use the one generation up
        spent = usage(gateway, "one-a-month")
        assert spent["generations"] == 0 and spent["quota"] == 1
        assert spent["estimated_usd"] == 0

    real = get(gateway, "prompt=a+red+kite&w=64", "one-a-month")
    assert_real(real, "MISS")
    assert stored_meta(root / "data", real.headers["x-image-id"])["generator"] == "gemini"
    spent = usage(gateway, "one-a-month")
    assert spent["generations"] == 1
    assert spent["by_generator"]["gemini"]["generations"] == 1
    # The quota is real: the next new image is refused, the stored one still served.
    assert_error(get(gateway, "prompt=a+blue+kite&w=64", "one-a-month"), 429, "quota_exceeded")
    assert_real(get(gateway, "prompt=a+red+kite&w=80", "one-a-month"), "TRANSFORM")


def test_on_failure_error_answers_503_with_retry_after_and_no_stand_in(
    gateway: Gateway, fake: FakeServer, root: Path
) -> None:
    create_project(gateway, "strict", on_failure="error")
    url = "prompt=a+stone+bridge&w=100"
    with outage(fake):
        before = images(fake)
        failed = get(gateway, url, "strict")
        assert_error(failed, 503, "generators_failed")
        assert images(fake) == before + CALLS_PER_MISS
    assert int(failed.headers["retry-after"]) > 0
    attempted = failed.json()["error"]["generators_attempted"]
    assert attempted == ["gemini"]  # `local` was not asked
    assert "x-generator" not in failed.headers
    assert "x-cache-status" not in failed.headers
    assert usage(gateway, "strict")["generations"] == 0

    real = get(gateway, url, "strict")
    assert_real(real, "MISS")
    assert stored_meta(root / "data", real.headers["x-image-id"])["generator"] == "gemini"


def test_local_first_is_the_real_generator(gateway: Gateway, fake: FakeServer, root: Path) -> None:
    create_project(gateway, "offline", generators=["local"])
    with outage(fake):  # nothing is asked of Gemini: `local` is this project's first
        before = images(fake)
        answer = get(gateway, "prompt=a+paper+boat&w=90", "offline")
        assert images(fake) == before
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == "MISS"
    assert answer.headers["x-generator"] == "local"
    assert answer.headers["cache-control"] == YEAR
    assert stored_meta(root / "data", answer.headers["x-image-id"])["generator"] == "local"
    assert usage(gateway, "offline")["generations"] == 1  # a real generation, counted


def test_the_stand_ins_cache_control_is_configurable(tmp_path: Path, fake: FakeServer) -> None:
    env = {**gemini_env(fake), "PROMPTPIX_FALLBACK_CACHE_CONTROL": "public, max-age=30"}
    server = start_gateway(tmp_path, **env)
    try:
        with outage(fake):
            stand_in = get(server, "prompt=a+quiet+meadow&w=64")
        real = get(server, "prompt=a+quiet+meadow&w=64")
    finally:
        server.stop()
    assert_placeholder(stand_in, "public, max-age=30")
    assert_real(real, "MISS")  # the real image keeps its year


def test_no_answer_was_a_500(gateway: Gateway) -> None:
    answered = samples(gateway, "promptpix_requests_total")
    statuses = {dict(labels)["status"] for labels in answered}
    assert not {s for s in statuses if s.startswith("5") and s != "503"}
