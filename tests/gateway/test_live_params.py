"""SPEC §1 parameters over real HTTP: every bad value is a 400 naming it; keys are canonical."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import LIVE_MAX_DIMENSION
from tests.live_support import assert_error, generations, raw_get, size_of
from tests.services import Gateway


def fresh(words: str = "a red fox") -> str:
    """A prompt no other test asks for, so its first request is a miss."""
    return f"{words} {uuid.uuid4().hex[:12]}"


BAD_VALUES = [
    ("ar", "0:1"),
    ("ar", "1:0"),
    ("ar", "65:1"),
    ("ar", "1:65"),
    ("ar", "16x9"),
    ("ar", "16:9:1"),
    ("ar", "-1:2"),
    ("ar", "1.5:1"),
    ("ar", ""),
    ("style", "watercolour"),
    ("style", "ICON"),
    ("neg", "n" * 1001),
    ("seed", "-1"),
    ("seed", "2147483648"),
    ("seed", "1.5"),
    ("seed", "abc"),
    ("seed", "99999999999999999999999"),
    ("enhance", "2"),
    ("enhance", "true"),
    ("enhance", ""),
    ("model", "dall-e"),
    ("model", ""),
    ("w", "0"),
    ("w", "-5"),
    ("w", str(LIVE_MAX_DIMENSION + 1)),
    ("w", "12.5"),
    ("w", "1e3"),
    ("w", "99999999999999999999999999999"),
    ("w", ""),
    ("h", "0"),
    ("h", str(LIVE_MAX_DIMENSION + 1)),
    ("h", "tall"),
    ("dpr", "0"),
    ("dpr", "0.5"),
    ("dpr", "4.01"),
    ("dpr", "5"),
    ("dpr", "nan"),
    ("dpr", "inf"),
    ("dpr", "1e0"),
    ("fit", "crop"),
    ("fit", "Cover"),
    ("fit", ""),
    ("anchor", "middle"),
    ("anchor", "1.5,0.5"),
    ("anchor", "0.5"),
    ("anchor", "0.5,0.5,0.5"),
    ("anchor", "-0.1,0.5"),
    ("anchor", ""),
    ("fmt", "gif"),
    ("fmt", "WEBP"),
    ("fmt", "tiff"),
    ("fmt", ""),
    ("q", "0"),
    ("q", "101"),
    ("q", "high"),
    ("bg", "fff"),
    ("bg", "red"),
    ("bg", "#ffffff"),
    ("bg", "gggggg"),
    ("bg", "ffffff00"),
    ("rmbg", "2"),
    ("rmbg", "yes"),
    ("blur", "-1"),
    ("blur", "100.5"),
    ("blur", "101"),
    ("blur", "soft"),
]


@pytest.mark.parametrize(("param", "value"), BAD_VALUES)
def test_bad_value_is_400_naming_the_parameter(live: httpx.Client, param: str, value: str) -> None:
    r = live.get("/i/demo", params={"prompt": "a red fox", param: value})
    error = assert_error(r, 400, "invalid_parameter", param)
    assert param in error["message"]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_bad_value_answers_the_same_to_head(live: httpx.Client, method: str) -> None:
    r = live.request(method, "/i/demo", params={"prompt": "x", "w": "0"})
    assert r.status_code == 400
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"].startswith("application/json")
    if method == "HEAD":
        assert r.content == b""
        assert int(r.headers["content-length"]) > 0


@pytest.mark.parametrize("name", ["width", "format", "W", "prompt2", "utm_source", "_", "sig2"])
def test_unknown_parameter(live: httpx.Client, name: str) -> None:
    r = live.get("/i/demo", params={"prompt": "a red fox", name: "1"})
    assert_error(r, 400, "unknown_parameter", name)


def test_unknown_parameter_with_unicode_name(live: httpx.Client) -> None:
    r = live.get("/i/demo?prompt=x&" + quote("größe") + "=1")
    assert_error(r, 400, "unknown_parameter", "größe")


def test_repeated_parameter_is_400(live: httpx.Client) -> None:
    assert_error(live.get("/i/demo?prompt=x&w=10&w=20"), 400, "invalid_parameter", "w")
    assert_error(live.get("/i/demo?prompt=x&prompt=y"), 400, "invalid_parameter", "prompt")


def test_undecodable_value_names_its_parameter(live: httpx.Client) -> None:
    assert_error(live.get("/i/demo?prompt=%ff%fe"), 400, "invalid_parameter", "prompt")
    assert_error(live.get("/i/demo?prompt=x&neg=%c3%28"), 400, "invalid_parameter", "neg")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"prompt=caf\xc3\xa9&w=8", 200),  # UTF-8 sent unescaped
        (b"prompt=\xff&w=8", 400),  # not UTF-8: the HTTP server itself refuses it
        (b"prompt=a%&w=8", 200),  # a lone '%' is a literal percent sign
        (b"prompt=%zz&w=8", 200),
        (b"prompt=x&w=8;h=9", 400),
        (b"prompt=x&&&w=8&", 200),
        (b"&=&prompt=x", 400),
    ],
)
def test_raw_query_bytes(live_gateway: Gateway, raw: bytes, status: int) -> None:
    got, headers, body = raw_get(live_gateway.url, b"/i/demo?" + raw)
    assert got == status, body[:300]
    if status != 200 and body:
        assert headers["cache-control"] == "no-store"
        assert json.loads(body)["error"]["code"] in ("invalid_parameter", "unknown_parameter")
    elif status == 200:
        assert headers["content-type"] == "image/webp"


@pytest.mark.parametrize("query", ["", "w=100", "prompt=", "prompt=%20%20", "prompt=+%0A+"])
def test_prompt_is_required_and_not_blank(live: httpx.Client, query: str) -> None:
    assert_error(live.get("/i/demo?" + query), 400, "invalid_parameter", "prompt")


def test_prompt_too_long(live: httpx.Client) -> None:
    r = live.get("/i/demo", params={"prompt": "a" * 10_001})
    error = assert_error(r, 400, "prompt_too_long", "prompt")
    assert "10000" in error["message"] or "10,000" in error["message"]
    # Counted in characters (not bytes), after trimming.
    assert_error(live.get("/i/demo", params={"prompt": "é" * 10_001}), 400, "prompt_too_long")
    trimmed = " " * 50 + "b" * 10_000 + " " * 50
    r = live.head("/i/demo", params={"prompt": trimmed, "w": "16", "fmt": "jpeg"})
    assert r.status_code == 200, r.text


def test_long_prompt_in_another_script(live: httpx.Client) -> None:
    # 6,000 characters, 54 KB once percent-encoded: compacted before generation, then served.
    r = live.get("/i/demo", params={"prompt": "赤い狐 " * 1500, "w": "16"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp"


def test_longest_neg_is_accepted(live: httpx.Client) -> None:
    r = live.head("/i/demo", params={"prompt": fresh(), "neg": "n" * 1000, "w": "16"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("ar", "1:1"),
        ("ar", "64:1"),
        ("ar", "1:64"),
        ("ar", "21:9"),
        ("ar", "7:3"),
        ("style", "spot_illustration"),
        ("style", "minimalist_vector_art"),
        ("style", "symbolic_representation"),
        ("style", "photorealistic"),
        ("style", "icon"),
        ("style", "logo"),
        ("neg", "blurry, text"),
        ("seed", "0"),
        ("seed", "2147483647"),
        ("enhance", "0"),
        ("enhance", "1"),
        ("model", "local"),
        ("w", "1"),
        ("w", str(LIVE_MAX_DIMENSION)),
        ("h", "1"),
        ("dpr", "1"),
        ("dpr", "2.5"),
        ("dpr", "4"),
        ("fit", "contain"),
        ("fit", "inside"),
        ("fit", "fill"),
        ("anchor", "center"),
        ("anchor", "top"),
        ("anchor", "bottom"),
        ("anchor", "left"),
        ("anchor", "right"),
        ("anchor", "attention"),
        ("anchor", "entropy"),
        ("anchor", "0,1"),
        ("anchor", "0.25,0.75"),
        ("fmt", "png"),
        ("fmt", "jpeg"),
        ("fmt", "avif"),
        ("fmt", "auto"),
        ("q", "1"),
        ("q", "100"),
        ("bg", "FF8800"),
        ("bg", "transparent"),
        ("rmbg", "0"),
        ("rmbg", "1"),
        ("blur", "0"),
        ("blur", "0.5"),
        ("blur", "100"),
        ("sig", "anything-on-a-public-project"),
    ],
)
def test_good_value_is_served(live: httpx.Client, param: str, value: str) -> None:
    query = {"prompt": "every parameter", "w": "24", param: value}
    r = live.get("/i/demo", params=query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/")
    assert len(r.content) == int(r.headers["content-length"]) > 0


def test_unknown_project_is_404(live: httpx.Client) -> None:
    assert_error(live.get("/i/nope", params={"prompt": "x"}), 404, "unknown_project")
    assert_error(live.get("/i/demo/extra", params={"prompt": "x"}), 404)
    assert_error(live.get("/i/", params={"prompt": "x"}), 404)
    # The project is checked before the parameters.
    assert_error(live.get("/i/nope", params={"bogus": "1"}), 404, "unknown_project")


def test_unknown_route_is_404_json(live: httpx.Client) -> None:
    assert_error(live.get("/nothing/here"), 404)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(live: httpx.Client, method: str) -> None:
    r = live.request(method, "/i/demo", params={"prompt": "x"}, content=b"{}")
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"] and "HEAD" in r.headers["allow"]


def test_options_is_a_cors_preflight(live: httpx.Client) -> None:
    r = live.options("/i/demo?prompt=x")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "GET" in r.headers["access-control-allow-methods"]


# --- key invariance ---------------------------------------------------------------------


def _same(live: httpx.Client, *queries: str) -> httpx.Response:
    answers = [live.get("/i/demo?" + q) for q in queries]
    first = answers[0]
    assert first.status_code == 200, first.text
    for q, r in zip(queries, answers, strict=True):
        assert r.status_code == 200, (q, r.text)
        assert r.headers["etag"] == first.headers["etag"], q
        assert r.headers["x-image-id"] == first.headers["x-image-id"], q
        assert r.content == first.content, q
    return first


def test_order_does_not_change_the_key(live: httpx.Client) -> None:
    p = quote(fresh(), safe="")
    _same(live, f"w=80&prompt={p}", f"prompt={p}&w=80", f"w=80&prompt={p}&dpr=1")


def test_plus_and_percent_20_are_the_same_space(live: httpx.Client) -> None:
    words = fresh("a small red fox").split()
    plus, pct = "+".join(words), "%20".join(words)
    _same(live, f"prompt={plus}&w=64", f"prompt={pct}&w=64", f"w=64&prompt={pct}")


def test_whitespace_and_normalisation_do_not_change_the_key(live: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    # NFC and NFD spellings of "é", runs of spaces, leading and trailing blanks.
    nfc = quote(f"caf\u00e9 {tag}")
    nfd = quote(f"  cafe\u0301   {tag} ")
    _same(live, f"prompt={nfc}&w=40", f"prompt={nfd}&w=40")


def test_spelled_out_defaults_do_not_change_the_key(live: httpx.Client) -> None:
    p = quote(fresh(), safe="")
    _same(
        live,
        f"prompt={p}&w=120",
        f"prompt={p}&w=120&dpr=1",
        f"prompt={p}&w=120&dpr=1.0&fit=cover&seed=0&anchor=focal&fmt=webp&q=80&rmbg=0"
        "&blur=0&enhance=0&ar=1:1&neg=&style=",
        f"fit=cover&w=0120&seed=00&prompt={p}",
    )


def test_jpg_is_jpeg_and_png_ignores_quality(live: httpx.Client) -> None:
    p = quote(fresh(), safe="")
    _same(
        live,
        f"prompt={p}&w=50&fmt=jpeg",
        f"prompt={p}&w=50&fmt=jpg",
        f"prompt={p}&w=50&fmt=jpeg&q=80",
    )
    _same(live, f"prompt={p}&w=50&fmt=png", f"prompt={p}&w=50&fmt=png&q=10")


def test_ratio_of_w_and_h_is_the_default_ar(live: httpx.Client) -> None:
    p = quote(fresh(), safe="")
    _same(
        live,
        f"prompt={p}&w=320&h=180",
        f"prompt={p}&w=320&h=180&ar=16:9",
        f"prompt={p}&w=320&h=180&ar=32:18",
    )


def test_what_defines_the_image_changes_the_key(live: httpx.Client) -> None:
    p = fresh()
    base = {"prompt": p, "w": "64"}
    first = live.get("/i/demo", params=base)
    assert first.status_code == 200
    for change in ({"seed": "1"}, {"style": "icon"}, {"neg": "dogs"}, {"prompt": p + "!"}):
        r = live.get("/i/demo", params={**base, **change})
        assert r.status_code == 200
        assert r.headers["x-image-id"] != first.headers["x-image-id"], change
        assert r.headers["etag"] != first.headers["etag"], change
    for change in ({"w": "65"}, {"fmt": "png"}, {"blur": "1"}, {"anchor": "top"}, {"q": "50"}):
        r = live.get("/i/demo", params={**base, **change})
        assert r.status_code == 200
        assert r.headers["x-image-id"] == first.headers["x-image-id"], change
        assert r.headers["etag"] != first.headers["etag"], change


def test_seed_gives_another_image(live: httpx.Client) -> None:
    p = fresh()
    a = live.get("/i/demo", params={"prompt": p, "w": "64", "fmt": "png"})
    b = live.get("/i/demo", params={"prompt": p, "w": "64", "fmt": "png", "seed": "7"})
    assert a.content != b.content


def test_custom_ratios_share_one_original_and_one_generation(live: httpx.Client) -> None:
    p = fresh("a tall lighthouse")
    before = generations(live)
    answers = [
        live.get("/i/demo", params={"prompt": p, **extra})
        for extra in ({"ar": "2:7"}, {"ar": "9:16"}, {"w": "300", "h": "1000"}, {"ar": "1:3"})
    ]
    assert all(r.status_code == 200 for r in answers)
    assert len({r.headers["x-image-id"] for r in answers}) == 1
    assert len({r.headers["etag"] for r in answers}) == len(answers)
    assert [r.headers["x-cache-status"] for r in answers] == ["MISS", *["TRANSFORM"] * 3]
    assert generations(live) - before == 1
    assert size_of(answers[0].content) == (384, 1344)  # 2:7 cut from the 768x1344 original
    assert size_of(answers[1].content) == (768, 1344)
    assert size_of(answers[2].content) == (300, 1000)


def test_a_ratio_far_from_9_16_uses_another_original(live: httpx.Client) -> None:
    p = fresh()
    wide = live.get("/i/demo", params={"prompt": p, "ar": "21:9", "w": "32"})
    square = live.get("/i/demo", params={"prompt": p, "ar": "1:1", "w": "32"})
    near_square = live.get("/i/demo", params={"prompt": p, "ar": "11:10", "w": "32"})
    assert wide.headers["x-image-id"] != square.headers["x-image-id"]
    assert near_square.headers["x-image-id"] == square.headers["x-image-id"]


def test_unicode_prompt(live: httpx.Client) -> None:
    r = live.get("/i/demo", params={"prompt": fresh("赤い狐と 🦊 & <b>ünïcödé</b>"), "w": "64"})
    assert r.status_code == 200, r.text
    assert size_of(r.content) == (64, 64)
