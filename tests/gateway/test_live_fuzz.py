"""Random query strings thrown at the live server: never a 5xx, never a hang."""

from __future__ import annotations

from urllib.parse import quote, unquote_plus

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LIVE_MAX_DIMENSION
from tests.live_support import magic

KNOWN = [
    "prompt", "ar", "style", "neg", "seed", "enhance", "model",
    "w", "h", "dpr", "fit", "anchor", "fmt", "q", "bg", "rmbg", "blur", "sig",
]  # fmt: skip

# Values near the rules: valid ones, edges just past them, and junk.
NEAR_VALID = st.sampled_from(
    [
        "0", "1", "2", "-1", "1.5", "4", "4.0001", "64", "65", "100", "101", "4096",
        str(LIVE_MAX_DIMENSION), str(LIVE_MAX_DIMENSION + 1), "2147483647", "2147483648",
        "9" * 40, "1e9", "NaN", "inf", "0x10", " 1", "1 ", "",
        "1:1", "16:9", "2:7", "64:1", "0:0", "1:", ":1", "3:2:1",
        "cover", "contain", "inside", "fill", "focal", "attention", "entropy", "top",
        "0.5,0.5", "1,1", "1.1,0", "webp", "avif", "jpeg", "jpg", "png", "auto", "gif",
        "ffffff", "FF0000", "transparent", "fff", "icon", "logo", "local", "nope",
    ]
)  # fmt: skip
SMALL_INT = st.integers(min_value=-10, max_value=5000).map(str)
HUGE = st.integers(min_value=-(10**60), max_value=10**60).map(str)
FLOATS = st.floats(allow_nan=True, allow_infinity=True).map(repr)
TEXT = st.text(max_size=40)
VALUE = st.one_of(NEAR_VALID, NEAR_VALID, NEAR_VALID, SMALL_INT, HUGE, FLOATS, TEXT)
NAME = st.one_of(st.sampled_from(KNOWN), st.sampled_from(KNOWN), st.text(max_size=12))
RAW_ESCAPE = st.sampled_from(
    ["%", "%2", "%zz", "%00", "%ff", "%c3%28", "%e2%82", "+", "&", "=", ";"]
)
PROMPTS = st.one_of(
    st.sampled_from(["a red fox", "fuzz", "日本の狐", "<b>&amp;</b>"]),  # few originals
    st.text(min_size=1, max_size=30),
)


# Valid values for each parameter (sizes kept small so the transforms stay quick).
VALID: dict[str, st.SearchStrategy[str]] = {
    "ar": st.tuples(st.integers(1, 64), st.integers(1, 64)).map(lambda r: f"{r[0]}:{r[1]}"),
    "style": st.sampled_from(["", "icon", "logo", "photorealistic", "spot_illustration"]),
    "neg": st.text(max_size=20),
    "seed": st.integers(0, 3).map(str),
    "enhance": st.sampled_from(["0", "1"]),
    "model": st.just("local"),
    "w": st.integers(1, 400).map(str),
    "h": st.integers(1, 400).map(str),
    "dpr": st.sampled_from(["1", "1.5", "2", "1.337"]),
    "fit": st.sampled_from(["cover", "contain", "inside", "fill"]),
    "anchor": st.one_of(
        st.sampled_from(["focal", "center", "top", "bottom", "left", "right", "attention"]),
        st.tuples(st.integers(0, 100), st.integers(0, 100)).map(
            lambda p: f"{p[0] / 100:g},{p[1] / 100:g}"
        ),
    ),
    "fmt": st.sampled_from(["webp", "jpeg", "jpg", "png", "avif", "auto"]),
    "q": st.integers(1, 100).map(str),
    "bg": st.one_of(st.just("transparent"), st.from_regex(r"[0-9a-fA-F]{6}", fullmatch=True)),
    "rmbg": st.sampled_from(["0", "1"]),
    "blur": st.sampled_from(["0", "0.3", "2", "12.5"]),
}


@st.composite
def mostly_valid(draw: st.DrawFn) -> str:
    """A valid query of random parameters, sometimes with one value replaced by junk."""
    names = draw(st.lists(st.sampled_from(sorted(VALID)), max_size=7, unique=True))
    fields = {"prompt": draw(PROMPTS)}
    fields.update({name: draw(VALID[name]) for name in names})
    if names and draw(st.integers(0, 3)) == 0:
        fields[draw(st.sampled_from(names))] = draw(VALUE)
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in fields.items())


def encode(text: str) -> str:
    return quote(text, safe="")


@st.composite
def queries(draw: st.DrawFn) -> str:
    fields: list[str] = []
    if draw(st.integers(0, 4)):
        fields.append("prompt=" + encode(draw(PROMPTS)))
    for _ in range(draw(st.integers(0, 5))):
        name, value = draw(NAME), draw(VALUE)
        fields.append(f"{encode(name)}={encode(value)}")
    for _ in range(draw(st.integers(0, 1))):
        at = draw(st.integers(0, len(fields)))
        fields.insert(at, draw(RAW_ESCAPE) + draw(st.sampled_from(["", "x", "w=1"])))
    if draw(st.booleans()):
        fields = draw(st.permutations(fields))
    return "&".join(fields)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    query=st.one_of(queries(), mostly_valid()),
    method=st.sampled_from(["GET", "GET", "HEAD"]),
    accept=st.sampled_from(
        ["", "image/avif,image/webp,*/*", "image/webp", "*/*", "text/html", "image/png;q=0.5"]
    ),
)
def test_random_queries_never_fail_the_server(
    live: httpx.Client, query: str, method: str, accept: str
) -> None:
    r = live.request(method, "/i/demo?" + query, headers={"accept": accept}, timeout=30)
    assert r.status_code < 500, (query, r.status_code, r.text[:300])
    if r.status_code == 200:
        assert r.headers["cache-control"].startswith("public")
        assert r.headers["etag"].startswith('"')
        if method == "GET":
            assert len(r.content) == int(r.headers["content-length"])
            assert magic(r.content) in ("webp", "avif", "jpeg", "png")
        return
    assert r.headers["cache-control"] == "no-store", query
    if method == "HEAD":
        assert r.content == b""
        return
    error = r.json()["error"]
    assert isinstance(error["code"], str) and error["code"], query
    assert isinstance(error["message"], str), query
    if r.status_code == 400:
        assert error["code"] in ("invalid_parameter", "unknown_parameter", "prompt_too_long")
        # A parameter named in the answer is one the query has (or the missing prompt).
        names = {unquote_plus(f.partition("=")[0], errors="replace") for f in query.split("&")}
        assert error.get("param") in (None, "prompt", *names), (query, error)
