"""SPEC §1 success headers, conditional requests, HEAD, and the health and metrics routes."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.live_support import YEAR, assert_error, metrics


def fresh() -> str:
    return f"headers {uuid.uuid4().hex[:12]}"


ETAG = re.compile(r'^"[0-9a-f]{64}"$')
KEY = re.compile(r"^[0-9a-f]{64}$")
TIMING = re.compile(r"^[a-z_]+;dur=[0-9]+(\.[0-9]+)?$")


def timing_stages(response: httpx.Response) -> dict[str, float]:
    stages: dict[str, float] = {}
    for item in response.headers["server-timing"].split(","):
        item = item.strip()
        assert TIMING.match(item), item
        name, _, dur = item.partition(";dur=")
        stages[name] = float(dur)
    return stages


def test_success_headers_and_cache_status_sequence(live: httpx.Client) -> None:
    p = fresh()
    first = live.get("/i/demo", params={"prompt": p, "w": "200"})
    assert first.status_code == 200
    h = first.headers
    assert h["cache-control"] == YEAR
    assert ETAG.match(h["etag"]), h["etag"]
    assert h["content-type"] == "image/webp"
    assert int(h["content-length"]) == len(first.content) > 0
    assert h["access-control-allow-origin"] == "*"
    assert h["x-content-type-options"] == "nosniff"
    assert KEY.match(h["x-image-id"])
    assert h["x-image-id"] != h["etag"].strip('"')
    assert h["x-generator"] == "local"
    assert h["x-cache-status"] == "MISS"
    assert "vary" not in h
    stages = timing_stages(first)
    assert {"generate", "transform", "total"} <= stages.keys(), stages
    assert stages["total"] >= stages["generate"]

    again = live.get("/i/demo", params={"prompt": p, "w": "200"})
    assert again.headers["x-cache-status"] == "HIT"
    assert again.headers["etag"] == h["etag"]
    assert again.content == first.content
    assert "generate" not in timing_stages(again)
    assert "total" in timing_stages(again)

    other = live.get("/i/demo", params={"prompt": p, "w": "201"})
    assert other.headers["x-cache-status"] == "TRANSFORM"
    assert other.headers["x-image-id"] == h["x-image-id"]
    assert other.headers["etag"] != h["etag"]
    assert "generate" not in timing_stages(other)
    assert "transform" in timing_stages(other)


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("webp", "image/webp"), ("jpeg", "image/jpeg"), ("png", "image/png"), ("avif", "image/avif")],
)
def test_content_type_per_format(live: httpx.Client, fmt: str, content_type: str) -> None:
    r = live.get("/i/demo", params={"prompt": "content types", "w": "32", "fmt": fmt})
    assert r.headers["content-type"] == content_type
    assert "vary" not in r.headers


def test_auto_format_varies_on_accept(live: httpx.Client) -> None:
    query = {"prompt": fresh(), "w": "48", "fmt": "auto"}
    avif = live.get("/i/demo", params=query, headers={"accept": "image/avif,image/webp,*/*"})
    webp = live.get("/i/demo", params=query, headers={"accept": "image/webp,*/*;q=0.8"})
    jpeg = live.get("/i/demo", params=query, headers={"accept": "*/*"})
    for r in (avif, webp, jpeg):
        assert r.status_code == 200
        assert r.headers["vary"] == "Accept"
        assert r.headers["cache-control"] == YEAR
    assert avif.headers["content-type"] == "image/avif"
    assert webp.headers["content-type"] == "image/webp"
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert len({avif.headers["etag"], webp.headers["etag"], jpeg.headers["etag"]}) == 3
    # A repeat with the same Accept is a hit of the same variant.
    again = live.get("/i/demo", params=query, headers={"accept": "image/webp,*/*;q=0.8"})
    assert again.headers["x-cache-status"] == "HIT"
    assert again.headers["etag"] == webp.headers["etag"]
    assert again.headers["vary"] == "Accept"
    # `auto` resolved is the same variant as the format named: same ETag, same bytes.
    named = live.get("/i/demo", params={**query, "fmt": "webp"})
    assert named.headers["etag"] == webp.headers["etag"]
    assert named.content == webp.content
    assert "vary" not in named.headers


def test_if_none_match_answers_304(live: httpx.Client) -> None:
    query = {"prompt": fresh(), "w": "64"}
    first = live.get("/i/demo", params=query)
    etag = first.headers["etag"]
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = live.get("/i/demo", params=query, headers={"if-none-match": value})
        assert r.status_code == 304, value
        assert r.content == b""
        assert r.headers["etag"] == etag
        assert r.headers["cache-control"] == YEAR
    stale = live.get("/i/demo", params=query, headers={"if-none-match": '"0000"'})
    assert stale.status_code == 200
    assert stale.content == first.content


def test_304_before_anything_is_made(live: httpx.Client) -> None:
    """An ETag is the variant key: a new server process would still answer 304 for it."""
    p = fresh()
    probe = live.head("/i/demo", params={"prompt": p, "w": "10"})
    etag = probe.headers["etag"]
    # Same variant, different URL spelling, never asked for in this spelling.
    r = live.get(
        f"/i/demo?w=10&dpr=1&prompt={p.replace(' ', '+')}", headers={"if-none-match": etag}
    )
    assert r.status_code == 304


def test_304_with_auto_keeps_vary(live: httpx.Client) -> None:
    query = {"prompt": fresh(), "w": "20", "fmt": "auto"}
    first = live.get("/i/demo", params=query, headers={"accept": "image/webp"})
    r = live.get(
        "/i/demo",
        params=query,
        headers={"accept": "image/webp", "if-none-match": first.headers["etag"]},
    )
    assert r.status_code == 304
    assert r.headers["vary"] == "Accept"
    # The same ETag under another Accept is another variant: a full answer.
    r = live.get(
        "/i/demo",
        params=query,
        headers={"accept": "image/avif", "if-none-match": first.headers["etag"]},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/avif"


def test_head_has_the_headers_and_no_body(live: httpx.Client) -> None:
    query = {"prompt": fresh(), "w": "90", "fmt": "png"}
    head = live.head("/i/demo", params=query)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["x-cache-status"] == "MISS"
    get = live.get("/i/demo", params=query)
    assert get.headers["x-cache-status"] == "HIT"
    for name in ("content-type", "content-length", "etag", "x-image-id", "cache-control"):
        assert head.headers[name] == get.headers[name], name
    assert int(head.headers["content-length"]) == len(get.content)
    again = live.head("/i/demo", params=query)
    assert again.content == b""
    assert again.headers["content-length"] == get.headers["content-length"]


def test_errors_are_never_cached(live: httpx.Client) -> None:
    r = live.get("/i/demo", params={"prompt": "x", "q": "0"})
    assert_error(r, 400)
    assert "etag" not in r.headers
    assert r.headers["access-control-allow-origin"] == "*"


def test_healthz(live: httpx.Client) -> None:
    r = live.get("/healthz")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["status"] == "ok"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/v1/providers"])
def test_other_routes_answer_a_wrong_method_in_json(live: httpx.Client, path: str) -> None:
    r = live.post(path, content=b"{}")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, HEAD"
    assert live.head(path).status_code == 200


def test_readyz_reports_each_dependency(live: httpx.Client) -> None:
    r = live.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    checks = body["checks"]
    assert {"store", "generators", "transforms", "index"} <= checks.keys()
    for name, check in checks.items():
        assert check["status"] in ("ok", "degraded", "down"), name
    assert checks["store"]["status"] == "ok"
    assert [g["id"] for g in checks["generators"]["chain"]] == ["local"]


def test_metrics_in_prometheus_text(live: httpx.Client) -> None:
    before = metrics(live)
    p = fresh()
    live.get("/i/demo", params={"prompt": p, "w": "30"})  # MISS
    live.get("/i/demo", params={"prompt": p, "w": "30"})  # HIT
    live.get("/i/demo", params={"prompt": p, "w": "31"})  # TRANSFORM
    live.get("/i/demo", params={"prompt": p, "w": "0"})  # 400
    r = live.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE promptpix_generations_total counter" in text
    assert "# TYPE promptpix_requests_total counter" in text
    assert "# TYPE promptpix_stage_duration_ms histogram" in text
    after = metrics(live)

    def grew(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("promptpix_generations_total", generator="local", outcome="success") == 1
    for cache in ("MISS", "HIT", "TRANSFORM"):
        assert grew("promptpix_requests_total", route="/i", status="200", cache=cache) == 1, cache
    assert grew("promptpix_requests_total", route="/i", status="400", cache="") == 1
    for stage, runs in (("generate", 1), ("transform", 2), ("request", 3)):
        assert grew("promptpix_stage_duration_ms_count", stage=stage) == runs, stage
        count = after[("promptpix_stage_duration_ms_count", frozenset({("stage", stage)}))]
        inf = ("promptpix_stage_duration_ms_bucket", frozenset({("stage", stage), ("le", "+Inf")}))
        assert after[inf] == count
