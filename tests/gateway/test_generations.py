"""The JSON API's generations over real HTTP (SPEC §2 "Images", "Assets and references",
"Flows"): one key space with live URLs, `?wait=false`, the history and its cursor, batches,
references sent to Gemini as input image parts, flows with `@last` and `@first`.

The gateway's chain is `gemini,local`, with `gemini` pointed at a local server that speaks
its API (google-genai's own client talks to it); a second gateway's chain has only the
OpenAI-compatible generator, which takes no reference images."""

from __future__ import annotations

import base64
import concurrent.futures
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import live_support as live
from tests.generator_fakes import FakeServer, gemini_ok, openai_ok, png
from tests.live_support import assert_error, bearer, eventually, size_of
from tests.services import Gateway

pytestmark = pytest.mark.timeout(120)

ADMIN = "generations-admin-token-0123456789"
GENERATE = "gemini-2.5-flash-image:generateContent"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer(gemini_ok) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(fake: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with live.api_gateway(
        tmp_path_factory.mktemp("generations"),
        ADMIN,
        GEMINI_API_KEY="test-key",
        PROMPTPIX_GEMINI_BASE_URL=fake.url,
        PROMPTPIX_GENERATORS="gemini,local",
        PROMPTPIX_GEMINI_RPM="0",
        PROMPTPIX_GEMINI_RETRIES="0",
    ) as server:
        yield server


def new_project(base: str, **fields: Any) -> tuple[str, str]:
    """A project and a key of it with every scope: (slug, key)."""
    return live.new_project(base, ADMIN, **fields)


@pytest.fixture(scope="module")
def project(gateway: Gateway) -> tuple[str, str]:
    return new_project(gateway.url)


def api(gateway: Gateway, key: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers=bearer(key), timeout=60)


def generate(client: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/generations", json=body)
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    assert out["status"] == "completed"
    return out


def upload(client: httpx.Client, data: bytes, alias: str) -> dict[str, Any]:
    answer = client.post(
        "/v1/assets", params={"alias": alias}, content=data, headers={"content-type": "image/png"}
    )
    assert answer.status_code == 201, answer.text
    out: dict[str, Any] = answer.json()
    return out


def gemini_calls(fake: FakeServer) -> list[dict[str, Any]]:
    with fake.lock:
        return [c.json() for c in fake.calls if GENERATE in c.path]


def inline_parts(call: dict[str, Any]) -> list[bytes]:
    return [  # google-genai sends URL-safe base64, unpadded
        base64.urlsafe_b64decode(p["inlineData"]["data"] + "==")
        for c in call["contents"]
        for p in c["parts"]
        if "inlineData" in p
    ]


# --- one generation, one key space ----------------------------------------------------------


def test_a_generation_and_its_live_url_are_one_original(
    gateway: Gateway, fake: FakeServer, project: tuple[str, str]
) -> None:
    slug, key = project
    before = len(gemini_calls(fake))
    with api(gateway, key) as client:
        out = generate(
            client, prompt="a lighthouse at dusk", aspect_ratio="2:7", metadata={"page": "home"}
        )
        assert out["generator"] == "gemini" and out["generators_attempted"] == ["gemini"]
        assert out["fallback_used"] is False and out["cache"]["generated"] is True
        assert out["aspect_ratio"] == "2:7" and out["native_ratio"] == "9:16"
        assert out["prompt"] == {"given": "a lighthouse at dusk", "sent": "a lighthouse at dusk"}
        assert 0 <= out["focal_point"]["x"] <= 1 and out["timings_ms"]["generate"] > 0
        w, h = out["image"]["width"], out["image"]["height"]
        assert abs(w / h - 2 / 7) < 0.02
        for preset, size in {"thumb": (256, 256), "card": (640, 400)}.items():
            got = client.get(out["urls"][preset])
            assert got.status_code == 200 and size_of(got.content) == size
        live = client.get(out["urls"]["live"])
        assert live.headers["x-image-id"] == out["original_key"]
        assert live.headers["x-cache-status"] in ("HIT", "TRANSFORM")
        assert len(live.content) == out["image"]["bytes"]
        # the same parameters written as a live URL by hand: the same original, not generated
        by_hand = client.get(f"/i/{slug}", params={"prompt": "a lighthouse at dusk", "ar": "1:3"})
        assert by_hand.headers["x-image-id"] == out["original_key"]
        again = generate(client, prompt="a lighthouse at dusk", aspect_ratio="2:7")
        assert again["cache"]["stored"] is True and again["cache"]["generated"] is False
        assert again["id"] != out["id"] and again["original_key"] == out["original_key"]
        usage = client.get(f"/v1/projects/{slug}/usage").json()
    assert len(gemini_calls(fake)) == before + 1  # one paid generation for all of it
    assert usage["generations"] == 1


def test_presets_of_a_default_ratio_crop_the_same_original(
    gateway: Gateway, fake: FakeServer, project: tuple[str, str]
) -> None:
    _, key = project
    before = len(gemini_calls(fake))
    with api(gateway, key) as client:
        out = generate(client, prompt="a lone pine on a ridge")  # no aspect_ratio: 1:1
        for name, size in {"thumb": (256, 256), "card": (640, 400), "og": (1200, 630)}.items():
            got = client.get(out["urls"][name])
            assert got.status_code == 200 and size_of(got.content) == size
            assert got.headers["x-image-id"] == out["original_key"], name
    assert len(gemini_calls(fake)) == before + 1


def test_a_signing_project_gets_signed_urls(gateway: Gateway) -> None:
    _, key = new_project(gateway.url, signing="required")
    with api(gateway, key) as client:
        out = generate(client, prompt="a signed fox", aspect_ratio="16:9")
        for name in ("original", "live", "thumb", "card", "og", "hero"):
            assert "sig=" in out["urls"][name], name
        assert client.get(out["urls"]["thumb"]).status_code == 200
        unsigned = out["urls"]["thumb"].split("&sig=")[0]
        assert_error(client.get(unsigned), 403, "signature_required")
        for candidate in out["urls"]["srcset"].split(", "):
            assert client.get(candidate.rsplit(" ", 1)[0]).status_code == 200


def test_wait_false_answers_202_then_the_status_url(
    gateway: Gateway, project: tuple[str, str]
) -> None:
    _, key = project
    with api(gateway, key) as client:
        queued = client.post(
            "/v1/generations", params={"wait": "false"}, json={"prompt": "a slow owl"}
        )
        assert queued.status_code == 202, queued.text
        body = queued.json()
        assert body["status"] in ("queued", "running")
        assert queued.headers["location"] == body["status_url"]
        for _ in range(200):
            state = client.get(body["status_url"]).json()
            if state["status"] == "completed":
                break
            assert state["status"] in ("queued", "running")
            threading.Event().wait(0.05)
        assert state["status"] == "completed" and state["image"]["bytes"] > 0
        failed = client.post(
            "/v1/generations", params={"wait": "false"}, json={"prompt": "forbidden thing"}
        )
        url = failed.json()["status_url"]
        for _ in range(200):
            state = client.get(url).json()
            if state["status"] == "failed":
                break
            threading.Event().wait(0.05)
        assert state["status"] == "failed" and state["error"]["code"] == "content_refused"


def test_bad_bodies_are_clear_4xx(gateway: Gateway, project: tuple[str, str]) -> None:
    _, key = project
    with api(gateway, key) as client:
        assert_error(client.post("/v1/generations", json={}), 400)
        assert_error(client.post("/v1/generations", json={"prompt": "x", "zz": 1}), 400)
        bad_ratio = client.post("/v1/generations", json={"prompt": "x", "aspect_ratio": "0:1"})
        assert_error(bad_ratio, 400, param="aspect_ratio")
        assert "aspect_ratio" in bad_ratio.json()["error"]["message"]
        big = {"prompt": "x", "metadata": {f"k{i}": "v" * 100 for i in range(50)}}
        assert_error(client.post("/v1/generations", json=big), 400, param="metadata")
        assert_error(client.post("/v1/generations?wait=maybe", json={"prompt": "x"}), 400)
        assert_error(client.get("/v1/generations/gen_nope"), 404, "unknown_generation")
        assert_error(client.post("/v1/generations", json={"prompt": "x", "flow_id": "f"}), 404)
    no_key = httpx.post(f"{gateway.url}/v1/generations", json={"prompt": "x"})
    assert_error(no_key, 401, "unauthorized")


# --- the history -----------------------------------------------------------------------------


def test_history_filters_and_a_stable_cursor_under_concurrent_inserts(gateway: Gateway) -> None:
    _, key = new_project(gateway.url)
    with api(gateway, key) as client:
        for i in range(7):
            generate(client, prompt=f"history item {i}", metadata={"n": str(i), "set": "a"})
        generate(client, prompt="history other", metadata={"set": "b"}, model="local")

        first = client.get("/v1/generations", params={"limit": 3}).json()
        assert [i["prompt"]["given"] for i in first["items"]] == [
            "history other",
            "history item 6",
            "history item 5",
        ]
        seen = [i["id"] for i in first["items"]]
        cursor = first["next_cursor"]

        def insert(n: int) -> None:
            with api(gateway, key) as other:
                generate(other, prompt=f"inserted while paging {n}")

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            inserting = [pool.submit(insert, n) for n in range(6)]
            while cursor:
                page = client.get("/v1/generations", params={"limit": 3, "cursor": cursor})
                assert page.status_code == 200, page.text
                seen += [i["id"] for i in page.json()["items"]]
                cursor = page.json()["next_cursor"]
            for f in inserting:
                f.result()
        assert len(seen) == len(set(seen)) == 8  # every record before paging, once

        only_b = client.get("/v1/generations", params={"metadata.set": "b"}).json()["items"]
        assert [i["prompt"]["given"] for i in only_b] == ["history other"]
        both = client.get("/v1/generations", params={"metadata.set": "a", "metadata.n": "3"})
        assert [i["prompt"]["given"] for i in both.json()["items"]] == ["history item 3"]
        by_gen = client.get("/v1/generations", params={"generator": "local"}).json()["items"]
        assert [i["prompt"]["given"] for i in by_gen] == ["history other"]
        newest = first["items"][0]["created_at"]
        since = client.get("/v1/generations", params={"since": newest, "limit": 100}).json()
        assert "history other" in [i["prompt"]["given"] for i in since["items"]]
        assert all(i["created_at"] >= newest for i in since["items"])
        until = client.get("/v1/generations", params={"until": newest, "limit": 100}).json()
        assert "history other" not in [i["prompt"]["given"] for i in until["items"]]
        assert_error(client.get("/v1/generations", params={"cursor": "nonsense"}), 400)
        assert_error(client.get("/v1/generations", params={"limit": 101}), 400, param="limit")
        assert_error(client.get("/v1/generations", params={"colour": "red"}), 400)


def test_another_projects_generation_is_not_visible(
    gateway: Gateway, project: tuple[str, str]
) -> None:
    _, key = project
    _, other_key = new_project(gateway.url)
    with api(gateway, key) as client:
        mine = generate(client, prompt="a private owl")
    with api(gateway, other_key) as other:
        assert_error(other.get(f"/v1/generations/{mine['id']}"), 404, "unknown_generation")
        assert mine["id"] not in [i["id"] for i in other.get("/v1/generations").json()["items"]]


# --- batch ---------------------------------------------------------------------------------


def test_a_batch_answers_each_item_on_its_own(gateway: Gateway, project: tuple[str, str]) -> None:
    _, key = project
    items: list[dict[str, Any]] = [{"prompt": f"batch cat {i}"} for i in range(5)]
    items += [
        {"prompt": ""},
        {"prompt": "x", "aspect_ratio": "99:1"},
        {"prompt": "forbidden batch item"},
        {"prompt": "x", "unknown": True},
        {"prompt": "x", "references": ["@nope"]},
    ]
    with api(gateway, key) as client:
        answer = client.post("/v1/generations/batch", json={"items": items})
        assert answer.status_code == 200, answer.text
        got = answer.json()["items"]
        assert [g["status"] for g in got] == [200] * 5 + [400, 400, 422, 400, 404]
        assert all(g["generation"]["image"]["bytes"] > 0 for g in got[:5])
        assert got[7]["error"]["code"] == "content_refused"
        assert got[9]["error"]["code"] == "unknown_asset"
        too_many = client.post("/v1/generations/batch", json={"items": [{"prompt": "x"}] * 17})
        assert_error(too_many, 400)
        assert_error(client.post("/v1/generations/batch", json={"items": []}), 400)


# --- references ------------------------------------------------------------------------------


def test_an_alias_in_a_prompt_reaches_gemini_as_an_input_image(
    gateway: Gateway, fake: FakeServer
) -> None:
    slug, key = new_project(gateway.url)
    logo = png(40, 30, (10, 200, 30))
    with api(gateway, key) as client:
        asset = upload(client, logo, "logo")
        before = len(gemini_calls(fake))
        out = generate(client, prompt="a mug printed with @logo", aspect_ratio="1:1")
        call = gemini_calls(fake)[before]
        assert inline_parts(call) == [logo]
        assert out["references"] == [asset["id"]] and out["aliases"] == ["logo"]
        # the live URL names the alias: the same original
        live = client.get(f"/i/{slug}", params={"prompt": "a mug printed with @logo"})
        assert live.headers["x-image-id"] == out["original_key"]
        # moving the alias makes a new image and keeps the old one
        upload(client, png(40, 30, (200, 10, 30)), "logo")
        threading.Event().wait(1.2)  # an alias is looked up at most once a second
        moved = generate(client, prompt="a mug printed with @logo", aspect_ratio="1:1")
        assert moved["original_key"] != out["original_key"]
        assert moved["cache"]["generated"] is True
        assert inline_parts(gemini_calls(fake)[-1]) != [logo]
        same_url = client.get(out["urls"]["live"])  # the URL names the alias, which moved
        assert same_url.headers["x-image-id"] == moved["original_key"]
        by_alias = client.get("/v1/generations", params={"alias": "logo"}).json()["items"]
        assert {i["id"] for i in by_alias} == {out["id"], moved["id"]}
        assert_error(
            client.post("/v1/generations", json={"prompt": "with @missing"}), 404, "unknown_asset"
        )
        assert_error(
            client.get(f"/i/{slug}", params={"prompt": "with @missing"}), 404, "unknown_asset"
        )
        four = [upload(client, png(8 + i, 8, (i * 40, 0, 0)), f"r{i}")["id"] for i in range(4)]
        too_many = client.post("/v1/generations", json={"prompt": "x", "references": four[:4]})
        assert_error(too_many, 400)
        by_id = generate(client, prompt="from ids", references=four[:2])
        assert by_id["references"] == four[:2] and "/a/" in by_id["urls"]["live"]
        assert client.get(by_id["urls"]["thumb"]).status_code == 200


def test_an_email_address_is_not_a_reference(gateway: Gateway, project: tuple[str, str]) -> None:
    _, key = project
    with api(gateway, key) as client:
        out = generate(client, prompt="a sign saying write to hello@example.com")
        assert out["references"] == []


def test_references_need_a_generator_that_takes_images(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with (
        FakeServer(openai_ok) as openai,
        live.api_gateway(
            tmp_path_factory.mktemp("no-references"),
            ADMIN,
            OPENAI_API_KEY="test-key",
            PROMPTPIX_OPENAI_BASE_URL=openai.url,
            PROMPTPIX_GENERATORS="openai",
        ) as gateway,
    ):
        slug, key = new_project(gateway.url)
        with api(gateway, key) as client:
            upload(client, png(20, 20), "logo")
            refused = client.post("/v1/generations", json={"prompt": "a cup with @logo"})
            assert_error(refused, 422, "references_unsupported")
            on_url = client.get(f"/i/{slug}", params={"prompt": "a cup with @logo"})
            assert_error(on_url, 422, "references_unsupported")
            assert generate(client, prompt="a plain cup")["generator"] == "openai"
        assert openai.count() == 1  # the refused requests called nothing


# --- flows -------------------------------------------------------------------------------


def test_a_flow_runs_its_steps_with_last_and_first(gateway: Gateway, fake: FakeServer) -> None:
    _, key = new_project(gateway.url)
    steps = [
        {"prompt": "a knight, character sheet", "aspect_ratio": "1:1"},
        {"prompt": "@last riding a horse", "aspect_ratio": "16:9"},
        {"prompt": "@first and @last at a feast", "aspect_ratio": "16:9"},
    ]
    with api(gateway, key) as client:
        made = client.post("/v1/flows", json={"name": "knight", "steps": steps})
        assert made.status_code == 201, made.text
        flow = made.json()
        assert flow["error"] is None and len(flow["steps"]) == 3
        one, two, three = (s["generation"] for s in flow["steps"])
        assert one["references"] == [] and flow["steps"][0]["parent_id"] is None
        assert two["references"] == [one["original_key"]]
        assert three["references"] == [one["original_key"], two["original_key"]]
        assert flow["steps"][1]["parent_id"] == one["id"]
        assert flow["steps"][2]["parent_id"] == two["id"]
        calls = gemini_calls(fake)[-3:]
        stored_one = client.get(one["urls"]["original"]).content
        assert len(inline_parts(calls[1])) == 1 and len(inline_parts(calls[2])) == 2
        assert size_of(inline_parts(calls[1])[0]) == size_of(stored_one)
        # a generation with flow_id appends a step
        four = generate(client, prompt="@last, the morning after", flow_id=flow["id"])
        assert four["parent_id"] == three["id"] and four["references"] == [three["original_key"]]
        listed = client.get(f"/v1/flows/{flow['id']}").json()
        assert [s["generation"]["id"] for s in listed["steps"]] == [
            one["id"],
            two["id"],
            three["id"],
            four["id"],
        ]
        assert [s["step"] for s in listed["steps"]] == [1, 2, 3, 4]
        history = client.get("/v1/generations", params={"flow_id": flow["id"]}).json()["items"]
        assert [i["id"] for i in history] == [four["id"], three["id"], two["id"], one["id"]]
        empty = client.post("/v1/flows", json={"name": "empty"}).json()
        assert_error(
            client.post("/v1/generations", json={"prompt": "@last", "flow_id": empty["id"]}), 400
        )
        assert_error(client.get("/v1/flows/flow_nope"), 404, "unknown_flow")
        stopped = client.post(
            "/v1/flows", json={"steps": [{"prompt": "forbidden start"}, {"prompt": "@last"}]}
        ).json()
        assert stopped["steps"] == [] and stopped["error"]["status"] == 422


# --- production: two replicas on PostgreSQL and S3 (SeaweedFS) ---------------------------


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateway processes on one PostgreSQL database and one S3 bucket."""
    root = tmp_path_factory.mktemp("generations-replicas")
    with live.replicas(
        root, "generations", PROMPTPIX_ADMIN_TOKEN=ADMIN, PROMPTPIX_SEMANTIC="off"
    ) as (one, two, _):
        yield one, two


def test_replicas_share_the_history_and_flows(replicas: tuple[Gateway, Gateway]) -> None:
    one, two = replicas
    _, key = new_project(one.url)
    eventually(lambda: httpx.get(f"{two.url}/v1/generations", headers=bearer(key)).is_success)
    with api(one, key) as a, api(two, key) as b:
        flow = a.post("/v1/flows", json={"name": "across"}).json()
        first = generate(a, prompt="a robot, character sheet", flow_id=flow["id"])
        # the next step on the other replica: @last is read from the shared store
        second = generate(b, prompt="@last on the moon", flow_id=flow["id"])
        assert second["references"] == [first["original_key"]]
        assert second["parent_id"] == first["id"]
        steps = a.get(f"/v1/flows/{flow['id']}").json()["steps"]
        assert [s["generation"]["id"] for s in steps] == [first["id"], second["id"]]
        queued = a.post("/v1/generations", params={"wait": "false"}, json={"prompt": "a comet"})
        status_url = queued.json()["status_url"].replace(one.url, two.url)
        eventually(lambda: b.get(status_url).json()["status"] == "completed", within=30)
        history = b.get("/v1/generations").json()["items"]
        assert [i["prompt"]["given"] for i in history] == [
            "a comet",
            "@last on the moon",
            "a robot, character sheet",
        ]
        by_key = a.get(second["urls"]["thumb"])  # by the original's key, read from S3
        assert by_key.status_code == 200 and by_key.headers["x-generator"] == "local"
        assert by_key.headers["x-image-id"] == second["original_key"]


def test_a_page_on_another_origin_may_call_the_api(gateway: Gateway) -> None:
    preflight = {
        "Origin": "https://shop.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for path in ("/v1/generations", "/v1/generations/batch", "/api/v2/generate"):
        answer = httpx.options(f"{gateway.url}{path}", headers=preflight)
        assert answer.status_code == 204, (path, answer.text)
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
    history = httpx.options(f"{gateway.url}/v1/generations/gen_0123456789abcdef0123")
    assert history.status_code == 204 and "GET" in history.headers["access-control-allow-methods"]
