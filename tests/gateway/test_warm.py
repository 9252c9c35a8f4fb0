"""Page warming over real HTTP (SPEC §2 `POST /v1/warm`, `GET /v1/warm/{id}`): a page's
`/i/` URLs of the key's project (src, srcset, `<picture><source>`, CSS `url()`) made ahead,
one generation per original; other hosts and projects ignored; the job's status; and the
extractor on its own, where a regex over the page would go wrong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from promptpix.gateway.pages import css_urls, image_urls, srcset_urls
from tests import live_support as live
from tests.live_support import (
    assert_error,
    bearer,
    eventually,
    generations,
)
from tests.services import Gateway

pytestmark = pytest.mark.timeout(120)

ADMIN = "warm-admin-token-0123456789abcdef"
PUBLIC = "https://img.example.test"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("warm")
    with live.api_gateway(root, ADMIN, PROMPTPIX_PUBLIC_URL=PUBLIC) as server:
        yield server


def new_project(
    base: str, scopes: tuple[str, ...] = ("generate", "read"), **fields: Any
) -> tuple[str, str]:
    return live.new_project(base, ADMIN, scopes, **fields)


def api(gateway: Gateway, key: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers=bearer(key), timeout=60)


def url(slug: str, prompt: str, **extra: str) -> str:
    query = "&".join(f"{k}={quote(v)}" for k, v in {"prompt": prompt, **extra}.items())
    return f"/i/{slug}?{query}"


def page(base: str, slug: str, other: str, tag: str) -> tuple[str, list[str]]:
    """A page naming five originals of `slug` (one in three widths, one relative and one
    absolute on each of the gateway's hosts) and three URLs that are not ours; and the
    prompts of the five."""
    prompts = [f"{tag} {name}" for name in ("hero", "card", "picture", "inline", "block")]
    hero, card, pic, inline, block = prompts
    widths = ", ".join(f"{base}{url(slug, hero, w=str(w))} {w}w" for w in (320, 640, 960))
    html = f"""<!doctype html><html><head><title>t</title>
<style>
  .block {{ background-image: url("{url(slug, block, w="200")}"); }}
  /* url({url(slug, "commented css")}) */
</style></head><body>
<!-- <img src="{url(slug, "commented out")}"> -->
<img src="{base}{url(slug, hero, w="320")}" srcset="{widths}" alt="">
<img src="{PUBLIC}{url(slug, card, w="400")}">
<picture><source srcset="{url(slug, pic, w="500", fmt="avif")} 1x" type="image/avif">
  <img src="https://elsewhere.example/i/{slug}?prompt=foreign"></picture>
<div style="background:url('{url(slug, inline, w="100")}')">x</div>
<img src="{url(other, "another project")}">
<a href="{url(slug, "a link, not an image")}">l</a>
<script>var s = '<img src="{url(slug, "in a script")}">';</script>
</body></html>"""
    return html, prompts


def finished(client: httpx.Client, status_url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        answer = client.get(status_url)
        assert answer.status_code == 200, answer.text
        seen.update(answer.json())
        return bool(seen["status"] == "completed")

    eventually(done, within=60)
    return seen


def test_a_page_makes_one_generation_per_original_and_a_second_warm_skips_them(
    gateway: Gateway,
) -> None:
    slug, key = new_project(gateway.url)
    other, _ = new_project(gateway.url)
    html, prompts = page(gateway.url, slug, other, uuid.uuid4().hex[:8])
    before = generations(gateway.url)
    with api(gateway, key) as client:
        started = client.post("/v1/warm", json={"html": html})
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["total"] == 7  # 3 widths of the hero, card, picture, inline, block
        assert body["status_url"] == f"{PUBLIC}/v1/warm/{body['id']}"
        state = finished(client, f"/v1/warm/{body['id']}")
        assert generations(gateway.url) - before == len(prompts)
        assert (state["total"], state["done"], state["failed"], state["skipped"]) == (7, 7, 0, 0)
        assert state["ignored"] == 2  # another host, another project
        outcomes = {item["url"]: item["outcome"] for item in state["items"]}
        assert sorted(outcomes.values()).count("generated") == 7
        assert outcomes[f"https://elsewhere.example/i/{slug}?prompt=foreign"] == "ignored"
        assert outcomes[url(other, "another project")] == "ignored"
        assert not any("commented" in u or "script" in u or "link" in u for u in outcomes)
        # The widths are stored: the page's own URLs are hits now.
        hero = client.get(url(slug, prompts[0], w="640"))
        assert hero.status_code == 200
        assert hero.headers["x-cache-status"] == "HIT"

        again = client.post("/v1/warm", json={"html": html})
        assert again.status_code == 202, again.text
        second = finished(client, again.json()["status_url"].removeprefix(PUBLIC))
        assert (second["done"], second["failed"], second["skipped"]) == (0, 0, 7)
        assert {i["outcome"] for i in second["items"] if i["outcome"] != "ignored"} == {"stored"}
        assert generations(gateway.url) - before == len(prompts)


def test_a_list_of_urls_with_a_bad_one_fails_only_it(gateway: Gateway) -> None:
    slug, key = new_project(gateway.url)
    tag = uuid.uuid4().hex[:8]
    good = f"{gateway.url}{url(slug, tag + ' list')}"
    bad = url(slug, tag, w="-5")
    with api(gateway, key) as client:
        started = client.post("/v1/warm", json={"urls": [good, bad, "/static/x.png"]})
        assert started.status_code == 202, started.text
        state = finished(client, f"/v1/warm/{started.json()['id']}")
    assert (state["total"], state["done"], state["failed"], state["ignored"]) == (2, 1, 1, 1)
    failed = next(i for i in state["items"] if i["outcome"] == "failed")
    assert failed["url"] == bad and failed["error"]["param"] == "w"


def test_a_warm_keeps_to_the_projects_rate_limit(gateway: Gateway) -> None:
    slug, key = new_project(gateway.url, rate_limit={"misses_per_minute": 2})
    tag = uuid.uuid4().hex[:8]
    before = generations(gateway.url)
    with api(gateway, key) as client:
        started = client.post(
            "/v1/warm", json={"urls": [url(slug, f"{tag} {n}") for n in range(5)]}
        )
        assert started.status_code == 202, started.text
        state = finished(client, f"/v1/warm/{started.json()['id']}")
    assert (state["total"], state["done"], state["failed"]) == (5, 2, 3)
    assert generations(gateway.url) - before == 2
    codes = [i["error"]["code"] for i in state["items"] if i["outcome"] == "failed"]
    assert codes == ["rate_limited"] * 3


def test_bad_bodies_keys_and_ids(gateway: Gateway) -> None:
    slug, key = new_project(gateway.url)
    _, other_key = new_project(gateway.url)
    _, assets_only = new_project(gateway.url, ("assets",))
    with api(gateway, key) as client:
        assert_error(client.post("/v1/warm", json={}), 400, param="html")
        assert_error(client.post("/v1/warm", json={"html": "", "urls": []}), 400)
        assert_error(client.post("/v1/warm", json={"urls": "x"}), 400, param="urls")
        assert_error(client.post("/v1/warm", json={"page": "x"}), 400, "unknown_field")
        assert_error(client.post("/v1/warm", json={"urls": ["/i/x"] * 1001}), 400, param="urls")
        assert_error(client.post("/v1/warm", content=b"{nope"), 400)
        assert_error(client.post("/v1/warm", json={"html": "a" * 2_000_001}), 413)
        assert_error(client.get("/v1/warm/warm_0123456789abcdef0123"), 404)
        assert_error(client.get("/v1/warm/nonsense"), 404)
        started = client.post("/v1/warm", json={"urls": [url(slug, "k")]})
        assert started.status_code == 202
        job = f"/v1/warm/{started.json()['id']}"
        finished(client, job)
    assert_error(httpx.post(gateway.url + "/v1/warm", json={"urls": []}), 401)
    assert_error(httpx.get(gateway.url + job), 401)
    with api(gateway, other_key) as client:
        assert_error(client.get(job), 404)
    with api(gateway, assets_only) as client:
        assert_error(client.get(job), 403)
        assert_error(client.post("/v1/warm", json={"urls": []}), 403)


def test_an_empty_page_is_completed_at_once(gateway: Gateway) -> None:
    _, key = new_project(gateway.url)
    with api(gateway, key) as client:
        started = client.post("/v1/warm", json={"html": "<p>no images</p>"})
        assert started.status_code == 202
        assert started.json()["total"] == 0
        state = client.get(f"/v1/warm/{started.json()['id']}").json()
    assert state["status"] == "completed" and state["items"] == []


def test_a_job_on_postgresql_is_read_by_another_replica(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("warm-replicas")
    shared = {"PROMPTPIX_ADMIN_TOKEN": ADMIN, "PROMPTPIX_SEMANTIC": "off"}
    with live.replicas(root, "warm", s3=False, **shared) as (one, two, _):
        slug, key = new_project(one.url)
        eventually(
            lambda: (
                httpx.get(
                    f"{two.url}/v1/warm/warm_0123456789abcdef0123", headers=bearer(key)
                ).status_code
                == 404
            )
        )
        urls = [url(slug, f"replica {n}") for n in range(3)]
        with api(one, key) as a, api(two, key) as b:
            job = a.post("/v1/warm", json={"urls": urls})
            assert job.status_code == 202, job.text
            state = finished(b, f"/v1/warm/{job.json()['id']}")
        assert (state["total"], state["done"], state["failed"]) == (3, 3, 0)
        assert [i["url"] for i in state["items"]] == urls


# --- the extractor ---------------------------------------------------------------------


def test_extractor_finds_what_a_browser_loads_and_nothing_else() -> None:
    html = """<html><head><style>
      a { background: URL( "/i/p?prompt=css%20a" ) }
      /* b { background: url(/i/p?prompt=css-comment) } */
      c { background: url(/i/p?prompt=css+bare) }
    </style>
    <script>document.write('<img src="/i/p?prompt=script">')</script></head><body>
    <!-- <img src="/i/p?prompt=comment"> -->
    <textarea><img src="/i/p?prompt=textarea"></textarea>
    <img data-src="/i/p?prompt=data-attribute" src="/i/p?prompt=a&amp;w=10">
    <img srcset="/i/p?prompt=x,y&w=100 100w, /i/p?prompt=z 2x,/i/p?prompt=q">
    <picture><source srcset='/i/p?prompt=s1 1x'><img src=/i/p?prompt=a&amp;w=10></picture>
    <div style="background-image:url('/i/p?prompt=inline')"></div>
    </body></html>"""
    assert image_urls(html) == [
        "/i/p?prompt=css%20a",
        "/i/p?prompt=css+bare",
        "/i/p?prompt=a&w=10",  # the entity decoded, and only once
        "/i/p?prompt=x,y&w=100",
        "/i/p?prompt=z",
        "/i/p?prompt=q",
        "/i/p?prompt=s1",
        "/i/p?prompt=inline",
    ]


def test_srcset_and_css_edge_cases() -> None:
    assert srcset_urls("a.png, b.png 2x,c.png,, d.png (x, y) 3x, e.png") == [
        "a.png",
        "b.png",
        "c.png",
        "d.png",
        "e.png",
    ]
    assert srcset_urls("  ") == []
    assert css_urls("x{background:url(a.png), url( 'b c.png' )}/* url(c) */") == [
        "a.png",
        "b c.png",
    ]
