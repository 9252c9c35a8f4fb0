"""Signed URLs, directly: the shared vectors (which every client reproduces), tampering,
re-encoding and rotation. The vectors' signatures were computed with openssl's HMAC from
canonical forms written out by hand from SPEC §3, not by this implementation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptpix.gateway.params import split_query
from promptpix.gateway.signing import canonical, sign, verify

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "signing.json").read_text("utf-8")
)


def split(url: str) -> tuple[str, dict[str, str]]:
    path, _, query = url.partition("?")
    return path, split_query(query)


def test_the_vectors_cover_what_they_must() -> None:
    urls = " ".join(v["url"] for v in VECTORS)
    assert {v["mode"] for v in VECTORS} == {"required", "generation"}
    for needed in ("+", "%20", "%2B", "%C3%A9", "%F0%9F", "%26", "%3D", "%2F", "%23", "%25"):
        assert needed in urls, needed
    assert any(
        v["canonical"] == w["canonical"] and v["url"] != w["url"] for v in VECTORS for w in VECTORS
    )
    assert any(not v["secret"].isascii() for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["url"][:60] for v in VECTORS])
def test_every_vector(vector: dict[str, Any]) -> None:
    path, params = split(vector["url"])
    assert canonical(path, params, vector["mode"]) == vector["canonical"]
    assert sign(vector["secret"], path, params, vector["mode"]) == vector["sig"]
    signed = {**params, "sig": vector["sig"]}
    assert verify([vector["secret"]], path, signed, vector["mode"])
    assert verify(["old", vector["secret"], "newer"], path, signed, vector["mode"])  # rotation
    assert not verify(["another"], path, signed, vector["mode"])


def test_tampering_truncation_and_another_path_fail() -> None:
    path, params = split("/i/acme?prompt=a+red+fox&w=800")
    sig = sign("k", path, params, "required")
    assert verify(["k"], path, {**params, "sig": sig}, "required")
    assert not verify(["k"], path, {**params, "w": "801", "sig": sig}, "required")
    assert not verify(["k"], path, {**params, "q": "1", "sig": sig}, "required")
    assert not verify(["k"], path, {**params, "sig": sig[:31]}, "required")
    assert not verify(["k"], path, {**params, "sig": sig + "A"}, "required")
    assert not verify(["k"], "/i/other", {**params, "sig": sig}, "required")
    assert not verify(["k"], path, params, "required")  # no sig at all
    assert not verify([], path, {**params, "sig": sig}, "required")


def test_generation_mode_signs_only_what_defines_the_original() -> None:
    path, params = split("/i/acme?prompt=a+red+fox&ar=16:9")
    sig = sign("k", path, params, "generation")
    for extra in ({"w": "320"}, {"w": "1600", "dpr": "2", "fmt": "avif"}, {"fit": "contain"}):
        assert verify(["k"], path, {**params, **extra, "sig": sig}, "generation")
    for changed in ({"prompt": "a blue fox"}, {"seed": "1"}, {"style": "icon"}, {"ar": "1:1"}):
        assert not verify(["k"], path, {**params, **changed, "sig": sig}, "generation")
