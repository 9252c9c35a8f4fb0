"""Quotas, budgets and rate limits end to end (SPEC §3): real `promptpix serve` processes,
projects made through the admin API, and `gemini` pointed at a local server that speaks
its API, so every generation the provider really received is counted where it happens.

Exact under concurrency in one process, across two workers (embedded database) and across
two replicas sharing one PostgreSQL; refusals are 429s with `Retry-After` and the
`RateLimit-Policy`/`RateLimit` fields, cost the provider nothing, and never stop stored
images from being served."""

from __future__ import annotations

import asyncio
import calendar
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.generator_fakes import FakeServer, gemini_ok
from tests.live_support import assert_error, eventually, metrics, start_gateway
from tests.services import Gateway, PostgreSQL

pytestmark = pytest.mark.timeout(180)

ADMIN = "quota-tests-admin-token-0123456789"
PRICE = 0.04  # USD per gemini image, as configured below
MONTH_S = 30 * 24 * 3600  # the quota's window as the RateLimit fields state it
GENERATE = "gemini-2.5-flash-image:generateContent"
POLICY = re.compile(r'^"(?P<name>[a-z0-9-]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
# A sample line; label values may hold braces (`route="/v1/projects/{slug}/usage"`).
LIMIT = re.compile(r'^"(?P<name>[a-z0-9-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def env(fake: FakeServer, **more: str) -> dict[str, str]:
    """Only `gemini` in the chain (no offline stand-in), unthrottled, at a known price."""
    return {
        "GEMINI_API_KEY": "test-key",
        "PROMPTPIX_GEMINI_BASE_URL": fake.url,
        "PROMPTPIX_GENERATORS": "gemini",
        "PROMPTPIX_GEMINI_CONCURRENCY": "200",
        "PROMPTPIX_GEMINI_RPM": "0",
        "PROMPTPIX_GEMINI_RETRIES": "0",
        "PROMPTPIX_GEMINI_TIMEOUT_S": "30",
        "PROMPTPIX_GEMINI_BREAKER_FAILURES": "1000",
        "PROMPTPIX_GEMINI_USD_PER_IMAGE": str(PRICE),
        "PROMPTPIX_TRANSFORM_QUEUE": "1000",
        "PROMPTPIX_PROMPT_LLM": "off",  # the provider sees image calls only
        "PROMPTPIX_VISION": "off",
        "PROMPTPIX_SEMANTIC": "off",
        "PROMPTPIX_ADMIN_TOKEN": ADMIN,
        **more,
    }


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer(gemini_ok) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(fake: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One worker, no trusted proxy: X-Forwarded-For is the client's own word, ignored."""
    server = start_gateway(tmp_path_factory.mktemp("quotas-one"), **env(fake))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workers(fake: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Two workers on one embedded database, behind a trusted proxy on loopback."""
    server = start_gateway(
        tmp_path_factory.mktemp("quotas-workers"),
        workers=2,
        **env(fake, PROMPTPIX_TRUSTED_PROXIES="127.0.0.1/32"),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(
    fake: FakeServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateway processes on one PostgreSQL database and one store."""
    root = tmp_path_factory.mktemp("quotas-replicas")
    postgres = PostgreSQL(root / "pg").start()
    started: list[Gateway] = []
    try:
        dsn = postgres.new_database("q")
        shared = {"PROMPTPIX_DATABASE_URL": dsn, "PROMPTPIX_STORE": f"file://{root / 'store'}"}
        for name in ("a", "b"):
            started.append(start_gateway(root / name, **env(fake, **shared)))
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
        postgres.remove()


# --- helpers ----------------------------------------------------------------------------


def admin(method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(
        method, url, json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
    )


def project(gateway: Gateway, **fields: Any) -> str:
    """A new project, made through the admin API; its slug."""
    slug = "p-" + uuid.uuid4().hex[:10]
    made = admin("POST", gateway.url + "/v1/projects", {"slug": slug, **fields})
    assert made.status_code == 201, made.text
    body = made.json()
    for name in ("quota", "rate_limit", "budget"):
        assert body[name] == fields.get(name), body
    return slug


def usage(gateway: Gateway, slug: str) -> dict[str, Any]:
    answer = admin("GET", f"{gateway.url}/v1/projects/{slug}/usage")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["period"] == time.strftime("%Y-%m", time.gmtime())
    return body


def calls(fake: FakeServer) -> int:
    """Image generations the provider received so far."""
    return fake.count(GENERATE)


def sample(url: str, name: str, **labels: str) -> float:
    return metrics(url).get((name, frozenset(labels.items())), 0.0)


def burst(targets: list[tuple[str, str]]) -> list[httpx.Response]:
    """Every (base URL, path) at once, each on its own connection."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(targets), max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=90, limits=limits) as client:
            return await asyncio.gather(*(client.get(base + path) for base, path in targets))

    return asyncio.run(run())


def get(gateway: Gateway, path: str, **headers: str) -> httpx.Response:
    return httpx.get(gateway.url + path, headers=headers, timeout=60)


def seconds_to_month_end() -> float:
    now = time.gmtime()
    year, month = (now.tm_year + 1, 1) if now.tm_mon == 12 else (now.tm_year, now.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)) - time.time()


def assert_refused(answer: httpx.Response, code: str, policy: str, quota: int | None = None) -> int:
    """A 429 of SPEC §3: JSON error, no-store, Retry-After and the IETF RateLimit fields
    (policy `name`, its quota `q` and window `w`; nothing left, reset in Retry-After)."""
    assert_error(answer, 429, code)
    retry_after = int(answer.headers["retry-after"])
    assert retry_after >= 1
    stated = POLICY.match(answer.headers["ratelimit-policy"])
    assert stated, answer.headers["ratelimit-policy"]
    assert stated["name"] == policy
    if quota is not None:
        assert int(stated["q"]) == quota
    left = LIMIT.match(answer.headers["ratelimit"])
    assert left, answer.headers["ratelimit"]
    assert left["name"] == policy and int(left["r"]) == 0
    assert int(left["t"]) == retry_after
    return retry_after


def assert_monthly(
    answer: httpx.Response, code: str, policy: str, quota: int | None = None
) -> None:
    """A monthly refusal: Retry-After is the time left in the UTC month."""
    retry_after = assert_refused(answer, code, policy, quota)
    assert abs(retry_after - seconds_to_month_end()) < 60, retry_after
    assert int(POLICY.match(answer.headers["ratelimit-policy"])["w"]) == MONTH_S  # type: ignore[index]


def no_server_errors(*gateways: Gateway) -> None:
    for server in gateways:
        failed = {
            dict(labels).get("status"): value
            for (name, labels), value in metrics(server.url).items()
            if name == "promptpix_requests_total" and dict(labels).get("status", "").startswith("5")
        }
        assert not failed, (failed, server.log())


def clear_of_minute_boundary(needed_s: float = 8.0) -> None:
    """Rate limits count in a sliding minute that weighs the minute before by how much of it
    the last 60 s still cover: misses that straddle a minute's end are not exactly "N in a
    minute". Start where the whole check fits in one UTC minute."""
    into = time.time() % 60
    if into > 60 - needed_s:
        time.sleep(60 - into + 0.05)


def quota_burst(targets: list[str], slug: str, fake: FakeServer, count: int = 100) -> None:
    """`count` distinct misses at once against a quota of 10, spread over `targets`."""
    before = calls(fake)
    paths = [
        (targets[i % len(targets)], f"/i/{slug}?prompt=quota+burst+{slug}+{i}&w=64")
        for i in range(count)
    ]
    answers = burst(paths)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 10 + [429] * (count - 10), statuses
    made = [a for a in answers if a.status_code == 200]
    assert {a.headers["x-cache-status"] for a in made} == {"MISS"}
    assert {a.headers["x-generator"] for a in made} == {"gemini"}
    assert len({a.headers["x-image-id"] for a in made}) == 10
    for refused in (a for a in answers if a.status_code == 429):
        assert_monthly(refused, "quota_exceeded", "monthly", 10)
    assert calls(fake) == before + 10  # the provider got exactly the ten
    answer = admin("GET", f"{targets[0]}/v1/projects/{slug}/usage")
    assert answer.status_code == 200, answer.text
    counted = answer.json()
    assert counted["generations"] == 10 and counted["quota"] == 10
    assert counted["by_generator"]["gemini"]["generations"] == 10
    refusals = sum(
        sample(t, "promptpix_refusals_total", code="quota_exceeded", project=slug)
        for t in set(targets)
    )
    assert refusals == count - 10


# --- quotas -----------------------------------------------------------------------------


def test_a_quota_of_10_against_100_concurrent_distinct_misses(
    gateway: Gateway, fake: FakeServer
) -> None:
    slug = project(gateway, quota={"generations_per_month": 10})
    quota_burst([gateway.url], slug, fake)
    assert sample(gateway.url, "promptpix_quota_generations_total", project=slug) == 10
    # Used up: one more miss is refused without a call, and the count stays.
    before = calls(fake)
    assert_monthly(get(gateway, f"/i/{slug}?prompt=one+more&w=64"), "quota_exceeded", "monthly", 10)
    assert calls(fake) == before
    assert usage(gateway, slug)["generations"] == 10
    no_server_errors(gateway)


def test_a_quota_across_two_workers(workers: Gateway, fake: FakeServer) -> None:
    slug = project(workers, quota={"generations_per_month": 10})
    quota_burst([workers.url], slug, fake)
    assert sample(workers.url, "promptpix_quota_generations_total", project=slug) == 10
    no_server_errors(workers)


def test_a_quota_across_two_replicas_on_postgresql(
    replicas: tuple[Gateway, Gateway], fake: FakeServer
) -> None:
    a, b = replicas
    slug = project(a, quota={"generations_per_month": 10})
    assert admin("GET", f"{b.url}/v1/projects/{slug}").status_code == 200  # one database
    quota_burst([a.url, b.url], slug, fake)
    assert usage(b, slug) == usage(a, slug)
    counted = sum(
        sample(r.url, "promptpix_quota_generations_total", project=slug) for r in replicas
    )
    assert counted == 10
    no_server_errors(a, b)


def test_identical_concurrent_misses_cost_one_generation(
    gateway: Gateway, workers: Gateway, fake: FakeServer
) -> None:
    # A quota of 1: a waiter charged as well would be refused.
    for server, count in ((gateway, 60), (workers, 40)):
        slug = project(server, quota={"generations_per_month": 1})
        before = calls(fake)
        path = f"/i/{slug}?prompt=one+image+for+everyone&w=96"
        answers = burst([(server.url, path)] * count)
        assert [a.status_code for a in answers] == [200] * count, {
            a.status_code: a.text for a in answers if a.status_code != 200
        }
        assert len({a.content for a in answers}) == 1
        assert calls(fake) == before + 1
        counted = usage(server, slug)
        assert counted["generations"] == 1
        assert counted["by_generator"] == {"gemini": {"generations": 1, "estimated_usd": PRICE}}
        no_server_errors(server)


def test_stored_images_are_served_after_the_quota_is_used_up(
    gateway: Gateway, fake: FakeServer
) -> None:
    slug = project(gateway, quota={"generations_per_month": 2})
    before = calls(fake)
    first = get(gateway, f"/i/{slug}?prompt=a+lighthouse&w=120")
    second = get(gateway, f"/i/{slug}?prompt=a+harbour&ar=16:9&w=160")
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert first.headers["x-cache-status"] == second.headers["x-cache-status"] == "MISS"
    assert calls(fake) == before + 2

    assert_monthly(
        get(gateway, f"/i/{slug}?prompt=a+third+picture&w=120"), "quota_exceeded", "monthly", 2
    )
    # Another seed is another original: a miss, refused too.
    assert_monthly(
        get(gateway, f"/i/{slug}?prompt=a+lighthouse&seed=7&w=120"), "quota_exceeded", "monthly", 2
    )

    again = get(gateway, f"/i/{slug}?prompt=a+lighthouse&w=120")
    assert again.status_code == 200 and again.headers["x-cache-status"] == "HIT"
    assert again.content == first.content
    # New variants of stored originals: made from the store, for nothing.
    for path in (
        f"/i/{slug}?prompt=a+lighthouse&w=48",
        f"/i/{slug}?prompt=a+lighthouse&w=80&fmt=png",
        f"/i/{slug}?prompt=a+harbour&ar=16:9&w=100&blur=2",
        f"/i/{slug}?prompt=a+harbour&ar=2:1&w=100",  # another crop of the same 16:9 original
    ):
        variant = get(gateway, path)
        assert variant.status_code == 200, (path, variant.text)
        assert variant.headers["x-cache-status"] == "TRANSFORM", path
        assert variant.headers["x-image-id"] in (
            first.headers["x-image-id"],
            second.headers["x-image-id"],
        )
    assert calls(fake) == before + 2
    assert usage(gateway, slug)["generations"] == 2
    assert sample(gateway.url, "promptpix_refusals_total", code="quota_exceeded", project=slug) == 2
    no_server_errors(gateway)


# --- budgets ----------------------------------------------------------------------------


def test_a_budget_refuses_the_miss_that_would_pass_it(gateway: Gateway, fake: FakeServer) -> None:
    slug = project(gateway, budget={"usd_per_month": 0.1})
    before = calls(fake)
    made = [get(gateway, f"/i/{slug}?prompt=budget+picture+{i}&w=64") for i in (1, 2)]
    assert [a.status_code for a in made] == [200, 200], [a.text for a in made]
    third = get(gateway, f"/i/{slug}?prompt=budget+picture+3&w=64")  # 0.12 > 0.10
    assert_monthly(third, "budget_exceeded", "monthly-usd-cents", quota=10)  # $0.10
    assert "budget" in third.json()["error"]["message"]
    assert calls(fake) == before + 2

    counted = usage(gateway, slug)
    assert counted["generations"] == 2 and counted["quota"] is None
    assert counted["estimated_usd"] == pytest.approx(2 * PRICE)
    assert counted["budget"] == pytest.approx(0.1)
    assert counted["by_generator"] == {"gemini": {"generations": 2, "estimated_usd": 2 * PRICE}}
    cost = sample(
        gateway.url, "promptpix_generation_cost_usd_total", project=slug, generator="gemini"
    )
    assert cost == pytest.approx(counted["estimated_usd"])
    refused = sample(gateway.url, "promptpix_refusals_total", code="budget_exceeded", project=slug)
    assert refused == 1

    # What was paid for is still served, in any size.
    assert get(gateway, f"/i/{slug}?prompt=budget+picture+1&w=64").status_code == 200
    assert get(gateway, f"/i/{slug}?prompt=budget+picture+2&w=32").status_code == 200
    assert calls(fake) == before + 2
    no_server_errors(gateway)


# --- rate limits ------------------------------------------------------------------------


def test_a_rate_limit_counts_misses_per_client_and_never_hits(
    gateway: Gateway, fake: FakeServer
) -> None:
    slug = project(gateway, rate_limit={"misses_per_minute": 3})
    clear_of_minute_boundary()
    before = calls(fake)
    made = [get(gateway, f"/i/{slug}?prompt=rate+picture+{i}&w=64") for i in range(3)]
    assert [a.status_code for a in made] == [200] * 3, [a.text for a in made]
    fourth = get(gateway, f"/i/{slug}?prompt=rate+picture+3&w=64")
    retry_after = assert_refused(fourth, "rate_limited", "minute", 3)
    assert retry_after <= 60
    assert int(POLICY.match(fourth.headers["ratelimit-policy"])["w"]) == 60  # type: ignore[index]
    assert calls(fake) == before + 3  # the refused miss reached no provider

    # Hits and new variants of what was made are never limited.
    for i in range(3):
        for w in (64, 40):
            hit = get(gateway, f"/i/{slug}?prompt=rate+picture+{i}&w={w}")
            assert hit.status_code == 200, hit.text

    # Without a trusted proxy, X-Forwarded-For is the client's own word: still one client.
    for spoofed in ("198.51.100.7", "203.0.113.9", "198.51.100.7, 203.0.113.10"):
        refused = get(
            gateway, f"/i/{slug}?prompt=rate+picture+{spoofed}&w=64", **{"X-Forwarded-For": spoofed}
        )
        assert_refused(refused, "rate_limited", "minute", 3)
    assert calls(fake) == before + 3
    assert sample(gateway.url, "promptpix_refusals_total", code="rate_limited", project=slug) == 4
    assert usage(gateway, slug)["generations"] == 3
    no_server_errors(gateway)


def test_a_trusted_proxy_names_the_client_in_x_forwarded_for(
    workers: Gateway, fake: FakeServer
) -> None:
    slug = project(workers, rate_limit={"misses_per_minute": 2})
    clear_of_minute_boundary()
    before = calls(fake)

    def miss(name: str, forwarded: str | None) -> httpx.Response:
        headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
        return get(workers, f"/i/{slug}?prompt=proxied+{name}&w=64", **headers)

    for client in ("198.51.100.7", "203.0.113.9"):
        first, second = miss(client + "-1", client), miss(client + "-2", client)
        assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
        assert_refused(miss(client + "-3", client), "rate_limited", "minute", 2)
    assert calls(fake) == before + 4

    # What a client wrote stays left of what the proxy appended: the last hop counts.
    assert_refused(miss("spoofed", "10.9.9.9, 198.51.100.7"), "rate_limited", "minute", 2)
    fresh = miss("fresh", "198.51.100.7, 192.0.2.44")
    assert fresh.status_code == 200, fresh.text
    # The proxy itself (no header) is one more client, with its own minute.
    assert miss("direct", None).status_code == 200
    assert calls(fake) == before + 6
    refused = sample(workers.url, "promptpix_refusals_total", code="rate_limited", project=slug)
    assert refused == 3
    no_server_errors(workers)


# --- changes reach every worker and replica ---------------------------------------------


def assert_changes_reach(maker: Gateway, readers: list[Gateway], asks: int) -> None:
    """A key revoked and signing turned on through `maker` hold on every one of `readers`
    (`asks` fresh connections each, so every worker answers some)."""
    slug = project(maker)
    made = admin("POST", f"{maker.url}/v1/projects/{slug}/keys", {"scopes": ["generate"]})
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    path = f"/i/{slug}?prompt=reaches+every+worker&w=64"
    body = {"prompt": "reaches every worker"}

    def answers(method: str, target: str, **kw: Any) -> set[int]:
        return {
            httpx.request(method, r.url + target, timeout=30, **kw).status_code
            for r in readers
            for _ in range(asks)
        }

    bearer = {"Authorization": f"Bearer {key}"}
    eventually(lambda: answers("POST", "/v1/urls", json=body, headers=bearer) == {200})
    assert answers("GET", path) == {200}  # generated once, then hits

    assert admin("DELETE", f"{maker.url}/v1/projects/{slug}/keys/{key_id}").status_code == 200
    eventually(lambda: answers("POST", "/v1/urls", json=body, headers=bearer) == {401})

    changed = admin("PATCH", f"{maker.url}/v1/projects/{slug}", {"signing": "required"})
    assert changed.status_code == 200, changed.text
    eventually(lambda: answers("GET", path) == {403})  # the stored image's hits too


def test_changes_reach_both_replicas_eventually(replicas: tuple[Gateway, Gateway]) -> None:
    a, b = replicas
    assert_changes_reach(a, [b], asks=3)
    no_server_errors(a, b)


def test_changes_reach_both_workers_eventually(workers: Gateway) -> None:
    # One worker takes the admin call; the other must see the change too.
    assert_changes_reach(workers, [workers], asks=8)
    no_server_errors(workers)
