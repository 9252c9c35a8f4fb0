"""`POST /api/v2/generate` and `GET /api/v2/health`: the Image Builder v2 API as its users'
clients call it (the seed document's curl bodies and Python client), over HTTP against
`promptpix serve`: the answer's fields, its URLs' images, the crops and background removal,
the failure envelope, the keys, and the semantic fallbacks."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.test_fallbacks import outage
from tests.generator_fakes import Answer, Call, FakeServer, gemini_ok, google_error
from tests.live_support import image, magic, start_gateway
from tests.services import Gateway

pytestmark = pytest.mark.timeout(120)

ROUTE = "/api/v2/generate"
ADMIN = "v2-tests-admin-token-0123456789"
NATIVE_SIZES = {  # the local generator draws at the native sizes
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}

# Every `-d '...'` body of the seed document, as its curl examples send them.
SEED_BODIES = {
    "hero": """{
    "prompt": "Abstract tech background with flowing blue gradients and geometric shapes, professional corporate style",
    "aspect_ratio": "16:9",
    "archetype": "photorealistic"
  }""",  # noqa: E501
    "i1_i2": """{
    "prompt": "Professional business person in modern office, natural lighting, centered composition with space on sides for cropping",
    "aspect_ratio": "2:3",
    "options": {
      "crop_anchor": "center"
    }
  }""",  # noqa: E501
    "i3_i4": """{
    "prompt": "Tall vertical abstract pattern, centered design element, geometric shapes flowing vertically",
    "aspect_ratio": "9:16",
    "options": {
      "crop_anchor": "center"
    }
  }""",  # noqa: E501
    "v1": """{
    "prompt": "Modern data visualization concept, abstract chart elements, professional business style",
    "aspect_ratio": "5:4"
  }""",  # noqa: E501
    "example_1": """{
    "prompt": "A modern tech startup logo with blue gradient"
  }""",
    "example_2": """{
    "prompt": "Minimalist icon of a rocket ship",
    "aspect_ratio": "1:1",
    "archetype": "minimalist_vector_art",
    "options": {
      "remove_background": true
    }
  }""",
    "example_3": """{
    "prompt": "Beautiful mountain landscape at sunset, cinematic panoramic view",
    "aspect_ratio": "21:9"
  }""",
    "example_4": """{
    "prompt": "Professional team collaboration in modern office, vertical composition",
    "aspect_ratio": "2:3",
    "negative_prompt": "blurry, low quality, cropped faces"
  }""",
    "example_5": """{
    "prompt": "Corporate office interior with modern design",
    "aspect_ratio": "16:9",
    "metadata": {
      "presentation_id": "pres_123",
      "slide_id": "slide_001",
      "layout": "H1-structured",
      "slide_type": "title_slide"
    }
  }""",
    # "Enabling Cache Hits": its body with a prompt in place of "...".
    "semantic_metadata": """{
  "prompt": "Innovation in a technology startup, title slide background",
  "metadata": {
    "topics": ["technology", "innovation", "startup"],
    "visual_style": "professional",
    "slide_type": "title_slide",
    "domain": "technology"
  }
}""",
}
SUCCESS_METADATA = {
    "model",
    "platform",
    "generator",
    "generator_used",
    "fallback_used",
    "generators_attempted",
    "source_aspect_ratio",
    "target_aspect_ratio",
    "cropped",
    "background_removed",
    "generation_time_ms",
    "prompt",
    "archetype",
    "file_sizes",
}


# --- helpers ------------------------------------------------------------------------------


def post(
    gateway: Gateway, body: Any, headers: dict[str, str] | None = None, raw: bool = False
) -> httpx.Response:
    """A request as the seed's curl examples make it (`-H Content-Type: application/json`)."""
    content = body if raw else json.dumps(body)
    answer = httpx.post(
        gateway.url + ROUTE,
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=90,
    )
    assert answer.status_code != 500, answer.text
    return answer


def created_at(text: str) -> datetime:
    """The Image Builder's `created_at`: ISO 8601 without a zone."""
    at = datetime.fromisoformat(text)
    assert at.tzinfo is None, text
    return at


def succeeded(answer: httpx.Response) -> dict[str, Any]:
    """A 200 in the Image Builder's success shape, every documented field present."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert body["success"] is True and body["error"] is None
    assert isinstance(body["image_id"], str) and body["image_id"]
    assert set(body["urls"]) == {"original", "cropped", "transparent"}
    assert body["urls"]["original"].startswith("http://127.0.0.1:")
    assert "base64_data" in body
    meta = body["metadata"]
    assert set(meta) >= SUCCESS_METADATA, sorted(SUCCESS_METADATA - set(meta))
    assert set(meta["file_sizes"]) == {"original", "cropped", "transparent"}
    assert meta["generator_used"] == meta["generator"]
    assert isinstance(meta["generation_time_ms"], int) and meta["generation_time_ms"] >= 0
    created_at(body["created_at"])
    return body


def failed(answer: httpx.Response, status: int) -> dict[str, Any]:
    """A failure in the Image Builder's error shape (never promptpix's own error object)."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    assert set(body) == {"success", "image_id", "urls", "metadata", "error", "created_at"}, body
    assert body["success"] is False and body["image_id"] is None and body["urls"] is None
    assert isinstance(body["error"], str) and body["error"]
    meta = body["metadata"]
    assert isinstance(meta["generators_attempted"], list)
    assert isinstance(meta["cache_fallback_attempted"], bool)
    created_at(body["created_at"])
    return body


def fetch(url: str) -> bytes:
    answer = httpx.get(url, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    return answer.content


def ratio_of(data: bytes) -> tuple[int, int]:
    img = image(data)
    return img.width, img.height


def alpha_min(data: bytes) -> int:
    img = image(data)
    if img.bands < 4:
        return 255
    return int(img[3].min())


def admin(gateway: Gateway, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        gateway.url + path,
        json=body,
        headers={"authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )


def new_project(gateway: Gateway, slug: str, **fields: Any) -> str:
    """The project, and a key of it with every scope."""
    made = admin(gateway, "POST", "/v1/projects", {"slug": slug, **fields})
    assert made.status_code == 201, made.text
    key = admin(gateway, "POST", f"/v1/projects/{slug}/keys", {"name": "v2"})
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


# --- the embedded demo project, the offline generator ------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(tmp_path_factory.mktemp("v2"))
    yield server
    server.stop()


@pytest.mark.parametrize("name", sorted(SEED_BODIES))
def test_every_body_of_the_seed_document_answers_its_image(gateway: Gateway, name: str) -> None:
    sent = json.loads(SEED_BODIES[name])
    body = succeeded(post(gateway, SEED_BODIES[name], raw=True))
    meta, urls = body["metadata"], body["urls"]
    asked = sent.get("aspect_ratio", "16:9")
    archetype = sent.get("archetype", "spot_illustration")
    assert meta["target_aspect_ratio"] == asked and meta["source_aspect_ratio"] == asked
    assert meta["cropped"] is False and urls["cropped"] is None  # every one is native
    assert meta["archetype"] == archetype and meta["prompt"] == sent["prompt"]
    assert meta["generator"] == "local" and meta["model"] == "local-placeholder-1"
    assert meta["platform"] == "promptpix-local"
    assert meta["generators_attempted"] == ["local"] and meta["fallback_used"] is False
    assert meta["source"] == "generated" and meta["cache_hit"] is False
    assert meta["store_in_cloud"] is True
    assert body["base64_data"] is None
    original = fetch(urls["original"])
    assert magic(original) == "png" and len(original) == meta["file_sizes"]["original"]
    assert ratio_of(original) == NATIVE_SIZES[asked]
    removed = archetype == "minimalist_vector_art"  # example 2 asks for it; it is automatic too
    assert meta["background_removed"] is removed
    assert (urls["transparent"] is not None) is removed
    assert (meta["file_sizes"]["transparent"] is not None) is removed
    if "metadata" in sent:
        assert meta["custom_metadata"] == sent["metadata"]  # arrays echoed as given
    else:
        assert "custom_metadata" not in meta


def test_the_seed_documents_python_client_works_as_written(gateway: Gateway) -> None:
    async def generate_hero_image(prompt: str, layout: str = "H1-structured") -> Any:
        layout_ratios = {"H1-structured": "16:9", "I1-image-left": "2:3"}
        aspect_ratio = layout_ratios.get(layout, "16:9")
        async with httpx.AsyncClient(timeout=120.0) as client:
            response = await client.post(
                gateway.url + ROUTE,
                json={
                    "prompt": prompt,
                    "aspect_ratio": aspect_ratio,
                    "metadata": {"layout": layout},
                },
            )
            return response.json()

    result = asyncio.run(
        generate_hero_image("Abstract tech background with blue gradients", "I1-image-left")
    )
    assert result["metadata"]["generator"] == "local"
    data = fetch(result["urls"]["original"])
    assert ratio_of(data) == NATIVE_SIZES["2:3"]
    assert result["metadata"]["custom_metadata"] == {"layout": "I1-image-left"}


def test_the_auto_archetypes_remove_the_background_and_a_given_value_wins(
    gateway: Gateway,
) -> None:
    icon = succeeded(post(gateway, {"prompt": "a paper plane", "archetype": "icon"}))
    assert icon["metadata"]["background_removed"] is True
    assert icon["metadata"]["target_aspect_ratio"] == "16:9"  # the default ratio
    transparent = fetch(icon["urls"]["transparent"])
    assert alpha_min(transparent) == 0  # the background is see-through
    assert alpha_min(fetch(icon["urls"]["original"])) == 255  # the original is opaque
    assert len(transparent) == icon["metadata"]["file_sizes"]["transparent"]

    kept = succeeded(
        post(
            gateway,
            {
                "prompt": "a paper plane",
                "archetype": "icon",
                "options": {"remove_background": False},
            },
        )
    )
    assert kept["metadata"]["background_removed"] is False
    assert kept["urls"]["transparent"] is None
    assert kept["metadata"]["file_sizes"]["transparent"] is None
    assert kept["urls"]["original"] == icon["urls"]["original"]  # one original, one key space

    plain = succeeded(post(gateway, {"prompt": "a paper plane", "archetype": "photorealistic"}))
    assert plain["urls"]["transparent"] is None
    asked = succeeded(
        post(
            gateway,
            {
                "prompt": "a paper plane",
                "archetype": "photorealistic",
                "options": {"remove_background": True},
            },
        )
    )
    assert asked["metadata"]["background_removed"] is True
    assert image(fetch(asked["urls"]["transparent"])).bands == 4


@pytest.mark.parametrize(
    ("ratio", "native"), [("2:7", "9:16"), ("11:18", "9:16"), ("1:3", "9:16"), ("9:7", "5:4")]
)
def test_a_custom_ratio_is_cropped_from_the_nearest_native(
    gateway: Gateway, ratio: str, native: str
) -> None:
    body = succeeded(post(gateway, {"prompt": "a tall lighthouse", "aspect_ratio": ratio}))
    meta = body["metadata"]
    assert meta["cropped"] is True
    assert meta["source_aspect_ratio"] == native and meta["target_aspect_ratio"] == ratio
    cropped = fetch(body["urls"]["cropped"])
    width, height = ratio_of(cropped)
    rw, rh = (int(x) for x in ratio.split(":"))
    assert abs(width / height - rw / rh) < 1 / height + 1 / width  # to the pixel
    assert height == NATIVE_SIZES[native][1] or width == NATIVE_SIZES[native][0]
    assert len(cropped) == meta["file_sizes"]["cropped"]
    assert ratio_of(fetch(body["urls"]["original"])) == NATIVE_SIZES[native]


def test_the_crop_anchor_places_the_crop(gateway: Gateway) -> None:
    def crop(anchor: str) -> dict[str, Any]:
        return succeeded(
            post(
                gateway,
                {
                    "prompt": "a row of coloured beach huts",
                    "aspect_ratio": "2:7",
                    "options": {"crop_anchor": anchor},
                },
            )
        )

    left, right, smart = crop("left"), crop("right"), crop("smart")
    assert left["urls"]["original"] == right["urls"]["original"]  # one shared original
    assert fetch(left["urls"]["cropped"]) != fetch(right["urls"]["cropped"])
    assert ratio_of(fetch(smart["urls"]["cropped"])) == ratio_of(fetch(left["urls"]["cropped"]))
    assert (
        "anchor=left" in left["urls"]["cropped"] and "anchor=attention" in smart["urls"]["cropped"]
    )
    default = succeeded(
        post(gateway, {"prompt": "a row of coloured beach huts", "aspect_ratio": "2:7"})
    )
    assert "anchor=center" in default["urls"]["cropped"]  # the Image Builder's default
    bad = failed(post(gateway, {"prompt": "x", "options": {"crop_anchor": "middle"}}), 400)
    assert "crop_anchor" in bad["error"]


def test_return_base64_holds_the_bytes_each_url_answers(gateway: Gateway) -> None:
    body = succeeded(
        post(
            gateway,
            {
                "prompt": "a kite over the dunes",
                "aspect_ratio": "11:18",
                "options": {"remove_background": True, "return_base64": True},
            },
        )
    )
    encoded, urls, sizes = body["base64_data"], body["urls"], body["metadata"]["file_sizes"]
    assert set(encoded) == {"original", "cropped", "transparent"}
    for name in ("original", "cropped", "transparent"):
        data = base64.b64decode(encoded[name])
        assert data == fetch(urls[name]), name
        assert len(data) == sizes[name]
    assert alpha_min(base64.b64decode(encoded["transparent"])) == 0
    width, height = ratio_of(base64.b64decode(encoded["transparent"]))
    assert abs(width / height - 11 / 18) < 0.002  # the transparent one is at the asked ratio

    native = succeeded(
        post(gateway, {"prompt": "a kite over the dunes", "options": {"return_base64": True}})
    )
    assert native["base64_data"]["cropped"] is None
    assert native["base64_data"]["transparent"] is None
    assert base64.b64decode(native["base64_data"]["original"]) == fetch(native["urls"]["original"])


def test_the_same_request_again_is_served_from_the_cache(gateway: Gateway) -> None:
    request = {"prompt": "a greenhouse in winter", "aspect_ratio": "1:3"}
    first = succeeded(post(gateway, request))
    again = succeeded(post(gateway, request))
    assert first["metadata"]["source"] == "generated" and first["metadata"]["cache_hit"] is False
    assert again["metadata"]["source"] == "cache" and again["metadata"]["cache_hit"] is True
    assert again["metadata"]["cache_fallback"] is False
    assert again["urls"] == first["urls"]
    assert again["metadata"]["file_sizes"] == first["metadata"]["file_sizes"]
    assert again["image_id"] != first["image_id"]  # each request is its own record


def test_fields_it_does_not_know_are_ignored_and_store_in_cloud_is_echoed(
    gateway: Gateway,
) -> None:
    body = succeeded(
        post(
            gateway,
            {
                "prompt": "a lantern",
                "slide": 3,
                "options": {"store_in_cloud": False, "quality": "high"},
            },
        )
    )
    assert body["metadata"]["store_in_cloud"] is False
    assert fetch(body["urls"]["original"])  # stored all the same


@pytest.mark.parametrize(
    "ratio", ["16/9", "wide", "16:", ":9", "0:1", "16:9:1", "1.5:1", "-1:2", "ratio 16:9"]
)
def test_an_invalid_aspect_ratio_is_a_400_in_the_seeds_error_shape(
    gateway: Gateway, ratio: str
) -> None:
    body = failed(post(gateway, {"prompt": "a boat", "aspect_ratio": ratio}), 400)
    assert body["error"] == "Invalid aspect ratio format. Use format like '16:9' or '1:1'"
    assert body["metadata"]["generators_attempted"] == []
    assert body["metadata"]["cache_fallback_attempted"] is False
    assert body["metadata"]["error_code"] == "invalid_parameter"


def test_a_ratio_is_taken_in_lowest_terms(gateway: Gateway) -> None:
    body = succeeded(post(gateway, {"prompt": "a boat", "aspect_ratio": "1920:1080"}))
    assert body["metadata"]["source_aspect_ratio"] == "16:9"
    assert body["metadata"]["target_aspect_ratio"] == "1920:1080"
    assert body["metadata"]["cropped"] is False
    far = failed(post(gateway, {"prompt": "a boat", "aspect_ratio": "65:1"}), 400)
    assert "aspect" in far["error"].lower()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not valid JSON"),
        ("", "prompt"),
        ("[]", "object"),
        ('{"aspect_ratio": "16:9"}', "prompt"),
        ('{"prompt": 42}', "prompt"),
        ('{"prompt": "   "}', "prompt"),
        ('{"prompt": "x", "options": {"remove_background": "yes"}}', "remove_background"),
        ('{"prompt": "x", "options": ["center"]}', "options"),
        ('{"prompt": "x", "metadata": "layout"}', "metadata"),
        ('{"prompt": "x", "archetype": "watercolour"}', "archetype"),
        ('{"prompt": "x", "negative_prompt": "' + "n" * 1500 + '"}', "negative_prompt"),
        ('{"prompt": "x", "metadata": {"bad key!": 1}}', "metadata"),
    ],
)
def test_a_bad_body_is_a_400_in_the_seeds_error_shape(
    gateway: Gateway, content: str, says: str
) -> None:
    body = failed(post(gateway, content, raw=True), 400)
    assert says in body["error"], body["error"]


def test_the_health_route_answers_the_seeds_shape(gateway: Gateway) -> None:
    answer = httpx.get(gateway.url + "/api/v2/health", timeout=30)
    assert answer.status_code == 200
    body = answer.json()
    assert {"status", "version", "services", "generator", "timestamp"} <= set(body)
    assert body["status"] == "healthy" and body["version"] == "2.2.0"
    assert body["services"] == {
        "vertex_ai": True,
        "supabase": True,
        "image_service": True,
        "semantic_cache": True,
    }
    assert body["generator"] == {
        "primary": "local",
        "fallbacks": [],
        "cache_fallback_threshold": 0.7,
    }
    created_at(body["timestamp"])


def openapi(gateway: Gateway) -> dict[str, Any]:
    answer = httpx.get(gateway.url + "/openapi.json", timeout=30)
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def schema(doc: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    ref = content["application/json"]["schema"]["$ref"]
    found: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def test_the_openapi_document_describes_both_routes(gateway: Gateway) -> None:
    doc = openapi(gateway)
    generate = doc["paths"]["/api/v2/generate"]["post"]
    answer = schema(doc, generate["responses"]["200"]["content"])
    assert set(answer["required"]) == {
        "success",
        "image_id",
        "urls",
        "metadata",
        "error",
        "created_at",
    }
    assert "base64_data" in answer["properties"]
    health = doc["paths"]["/api/v2/health"]["get"]
    assert {"status", "services", "generator"} <= set(
        schema(doc, health["responses"]["200"]["content"])["required"]
    )


def test_the_openapi_document_describes_the_generate_body(gateway: Gateway) -> None:
    doc = openapi(gateway)
    generate = doc["paths"]["/api/v2/generate"]["post"]
    request = schema(doc, generate["requestBody"]["content"])
    assert request["required"] == ["prompt"]
    assert {"aspect_ratio", "archetype", "negative_prompt", "options", "metadata"} <= set(
        request["properties"]
    )


# --- a signing project behind Gemini (its wire stand-in), failures as errors ---------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with FakeServer(gemini_ok) as server:
        yield server


def gemini_env(fake: FakeServer, **more: str) -> dict[str, str]:
    return {
        "GEMINI_API_KEY": "test-key",
        "PROMPTPIX_GEMINI_BASE_URL": fake.url,
        "PROMPTPIX_GEMINI_RPM": "0",
        "PROMPTPIX_GEMINI_RETRIES": "1",
        "PROMPTPIX_GEMINI_BACKOFF_S": "0.05",
        "PROMPTPIX_GEMINI_TIMEOUT_S": "10",
        "PROMPTPIX_GEMINI_BREAKER_FAILURES": "1000",
        "PROMPTPIX_PROMPT_LLM": "off",
        "PROMPTPIX_VISION": "off",
        "PROMPTPIX_ADMIN_TOKEN": ADMIN,
        **more,
    }


@pytest.fixture(scope="module")
def deck(fake: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("v2-deck"),
        **gemini_env(
            fake,
            PROMPTPIX_GENERATORS="gemini,local",
            PROMPTPIX_SEMANTIC="off",
            PROMPTPIX_V2_PROJECT="deck",
        ),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keys(deck: Gateway) -> dict[str, str]:
    return {
        "deck": new_project(deck, "deck", signing="required", on_failure="error"),
        "other": new_project(deck, "other"),
    }


def test_a_signing_v2_project_needs_one_of_its_own_keys(
    deck: Gateway, keys: dict[str, str]
) -> None:
    request = {"prompt": "a harbour at night", "aspect_ratio": "4:3"}
    missing = post(deck, request)
    body = failed(missing, 401)
    assert body["metadata"]["error_code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    failed(post(deck, request, {"authorization": "Bearer ppk_nosuchkey"}), 401)
    other = failed(post(deck, request, {"authorization": f"Bearer {keys['other']}"}), 403)
    assert other["metadata"]["error_code"] == "forbidden"

    made = succeeded(post(deck, request, {"authorization": f"Bearer {keys['deck']}"}))
    meta = made["metadata"]
    assert meta["generator"] == "gemini" and meta["platform"] == "google-gemini-api"
    assert meta["model"] == "gemini-2.5-flash-image"
    assert meta["generators_attempted"] == ["gemini"] and meta["fallback_used"] is False
    assert "sig=" in made["urls"]["original"]  # the project signs: so do its URLs
    assert image(fetch(made["urls"]["original"])).width > 0
    unsigned = made["urls"]["original"].split("&sig=")[0]
    assert httpx.get(unsigned, timeout=30).status_code == 403

    again = succeeded(post(deck, request, {"x-api-key": keys["deck"]}))
    assert again["metadata"]["source"] == "cache"


def test_a_failed_generation_answers_the_seeds_error_shape(
    deck: Gateway, keys: dict[str, str]
) -> None:
    auth = {"authorization": f"Bearer {keys['deck']}"}
    down = post(deck, {"prompt": "an outage at the lighthouse"}, auth)
    body = failed(down, 503)
    assert body["metadata"]["generators_attempted"] == ["gemini"]  # no stand-in: on_failure error
    assert body["metadata"]["cache_fallback_attempted"] is False  # the semantic tier is off
    assert body["metadata"]["error_code"] == "generators_failed"
    assert body["error"].startswith("All generators failed. Last error: gemini")
    assert int(down.headers["retry-after"]) > 0

    refused = failed(post(deck, {"prompt": "something forbidden"}, auth), 422)
    assert refused["metadata"]["generators_attempted"] == ["gemini"]
    assert refused["metadata"]["error_code"] == "content_refused"


def test_a_provider_rate_limit_is_said_in_the_words_clients_retry_on(
    deck: Gateway, fake: FakeServer, keys: dict[str, str]
) -> None:
    def limited(call: Call) -> Answer:
        return Answer(429, google_error(429, "RESOURCE_EXHAUSTED"))

    fake.respond = limited
    try:
        body = failed(post(deck, {"prompt": "a busy quay"}, {"x-api-key": keys["deck"]}), 503)
    finally:
        fake.respond = gemini_ok
    assert "Rate limit" in body["error"]  # the seed's retry loop looks for these words


def test_the_health_route_reports_the_v2_projects_chain(
    deck: Gateway, keys: dict[str, str]
) -> None:
    body = httpx.get(deck.url + "/api/v2/health", timeout=30).json()
    assert body["status"] == "healthy"
    assert body["services"]["semantic_cache"] is False  # off by setting: degrades nothing
    # `on_failure: error`: the offline stand-in never answers behind Gemini.
    assert body["generator"] == {
        "primary": "gemini",
        "fallbacks": [],
        "cache_fallback_threshold": None,
    }


def test_a_rate_limited_project_answers_429_with_retry_after(tmp_path: Path) -> None:
    server = start_gateway(tmp_path, PROMPTPIX_V2_PROJECT="metered", PROMPTPIX_ADMIN_TOKEN=ADMIN)
    try:
        made = admin(
            server,
            "POST",
            "/v1/projects",
            {"slug": "metered", "rate_limit": {"misses_per_minute": 1}},
        )
        assert made.status_code == 201, made.text
        succeeded(post(server, {"prompt": "a first new image"}))
        limited = post(server, {"prompt": "a second new image"})
        body = failed(limited, 429)
        assert body["metadata"]["error_code"] == "rate_limited"
        assert body["error"].startswith("Rate limit exceeded")
        assert int(limited.headers["retry-after"]) > 0
        again = succeeded(post(server, {"prompt": "a first new image"}))  # hits are free
        assert again["metadata"]["source"] == "cache"
    finally:
        server.stop()


def test_an_unknown_v2_project_is_a_404_in_the_seeds_shape(tmp_path: Path) -> None:
    server = start_gateway(tmp_path, PROMPTPIX_V2_PROJECT="nosuch")
    try:
        body = failed(post(server, {"prompt": "a kettle"}), 404)
        assert body["metadata"]["error_code"] == "unknown_project"
    finally:
        server.stop()


# --- the semantic tier: a similar image after failures, and reuse before generating ----------

FOX = "a red fox in the snow"
FOX_PARAPHRASE = "a red fox standing in snow"
UNRELATED = "a spreadsheet of quarterly tax figures"


def embedded(root: Path, count: int, timeout: float = 30) -> None:
    """Wait until `count` stored prompts are in the semantic sidecar (embedded after the
    answer is sent)."""
    path = root / "data" / "semantic" / "prompts.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_bytes().splitlines()) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} did not get {count} entries")


def test_a_similar_stored_image_answers_when_every_generator_fails(
    fake: FakeServer, tmp_path: Path
) -> None:
    env = gemini_env(fake, PROMPTPIX_GENERATORS="gemini")
    server = start_gateway(tmp_path, **env)
    try:
        fox = succeeded(post(server, {"prompt": FOX, "aspect_ratio": "1:1"}))
        fox_png = fetch(fox["urls"]["original"])
        embedded(tmp_path, 1)
        with outage(fake):
            answer = post(
                server,
                {
                    "prompt": FOX_PARAPHRASE,
                    "aspect_ratio": "10:11",  # cropped from 1:1, where the fox is
                    "options": {"remove_background": True, "return_base64": True},
                },
            )
            body = succeeded(answer)
            assert answer.headers["x-cache-status"] == "SIMILAR"
            meta = body["metadata"]
            assert meta["source"] == "semantic_cache_fallback"
            assert meta["cache_hit"] is True and meta["cache_fallback"] is True
            assert 0.7 <= meta["similarity"] <= 1.0
            assert meta["generators_attempted"] == ["gemini"] and meta["fallback_used"] is True
            assert meta["generator"] == "gemini"  # who made the similar image
            for name in ("original", "cropped", "transparent"):
                data = base64.b64decode(body["base64_data"][name])
                assert data == fetch(body["urls"][name]), name  # the URL answers it too
            assert fetch(body["urls"]["original"]) == fox_png

            nothing = failed(post(server, {"prompt": UNRELATED, "aspect_ratio": "1:1"}), 503)
            assert nothing["metadata"]["cache_fallback_attempted"] is True
            assert nothing["metadata"]["generators_attempted"] == ["gemini"]
    finally:
        server.stop()

    reusing = start_gateway(tmp_path, **env, PROMPTPIX_SEMANTIC_REUSE="1")
    try:
        calls = fake.count(":generateContent")
        body = succeeded(post(reusing, {"prompt": FOX_PARAPHRASE, "aspect_ratio": "1:1"}))
        meta = body["metadata"]
        assert meta["source"] == "semantic_cache" and meta["cache_hit"] is True
        assert meta["cache_fallback"] is False and meta["similarity"] >= 0.85
        assert meta["generators_attempted"] == [] and meta["fallback_used"] is False
        assert fake.count(":generateContent") == calls  # nothing was generated
        assert fetch(body["urls"]["original"]) == fox_png
    finally:
        reusing.stop()


def test_the_stand_in_answers_for_failed_generators_as_a_placeholder(
    fake: FakeServer, tmp_path: Path
) -> None:
    server = start_gateway(
        tmp_path, **gemini_env(fake, PROMPTPIX_GENERATORS="gemini,local", PROMPTPIX_SEMANTIC="off")
    )
    try:
        with outage(fake):
            answer = post(server, {"prompt": "a tram in the rain", "aspect_ratio": "2:7"})
            body = succeeded(answer)
            assert answer.headers["x-cache-status"] == "PLACEHOLDER"
            meta = body["metadata"]
            assert meta["source"] == "placeholder" and meta["cache_hit"] is False
            assert meta["generator"] == "local" and meta["fallback_used"] is True
            assert meta["generators_attempted"] == ["gemini", "local"]
            cropped = fetch(body["urls"]["cropped"])
            assert len(cropped) == meta["file_sizes"]["cropped"]
        real = succeeded(post(server, {"prompt": "a tram in the rain", "aspect_ratio": "2:7"}))
        assert real["metadata"]["source"] == "generated"  # the same request, now really made
        assert real["metadata"]["generator"] == "gemini"
        assert real["urls"] == body["urls"]
    finally:
        server.stop()


# --- configuration ------------------------------------------------------------------------------


def test_a_bad_v2_project_stops_serve_naming_the_variable(tmp_path: Path) -> None:
    command = "import sys; from promptpix.gateway.cli import main; sys.exit(main())"
    run = subprocess.run(
        [sys.executable, "-c", command, "serve", "--port", "0"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PROMPTPIX_V2_PROJECT": "Not A Slug"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("promptpix: PROMPTPIX_V2_PROJECT: "), lines
    assert "Not A Slug" not in lines[0]
