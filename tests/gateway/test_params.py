"""The pure parse, directly: query string in, frozen values and keys out (no server)."""

from __future__ import annotations

import pytest

from promptpix.cache.control import Project
from promptpix.gateway.errors import BadParameter, PromptTooLong, UnknownParameter
from promptpix.gateway.params import ParseRules, parse, parse_transform, split_query

DEMO = Project("demo")
RULES = ParseRules(generator_ids=frozenset({"local", "gemini"}), max_dimension=2000)


def key(query: str, project: Project = DEMO, accept: str = "") -> str:
    return parse(query, project, RULES, accept).variant_key


def test_order_spaces_and_spelled_out_defaults_are_one_key() -> None:
    same = [
        "prompt=a+red+fox&w=800",
        "w=800&prompt=a%20red%20fox",
        "prompt=a  red fox &w=800&dpr=1&fit=cover&anchor=focal&fmt=webp&q=80&seed=0",
        "prompt=a+red+fox&w=400&dpr=2",  # the same device pixels
    ]
    assert len({key(q) for q in same}) == 1
    assert key("prompt=a+red+fox&w=800&q=81") != key(same[0])


def test_the_original_is_keyed_on_the_native_ratio() -> None:
    a = parse("prompt=x&ar=2:7", DEMO, RULES)
    b = parse("prompt=x&ar=9:16", DEMO, RULES)
    c = parse("prompt=x&w=300&h=1000", DEMO, RULES)
    assert a.gen.key == b.gen.key == c.gen.key and a.gen.ratio == (9, 16)
    assert len({a.variant_key, b.variant_key, c.variant_key}) == 3
    assert a.transform.view == (2, 7) and c.transform.view == (3, 10)


def test_the_project_and_its_style_version_are_in_the_key() -> None:
    assert parse("prompt=x", DEMO, RULES).gen.key != parse("prompt=x", Project("b"), RULES).gen.key
    newer = Project("demo", style_version=2)
    assert parse("prompt=x", DEMO, RULES).gen.key != parse("prompt=x", newer, RULES).gen.key


def test_project_defaults_apply_and_are_the_same_as_spelled_out() -> None:
    styled = Project("demo", style="photorealistic", enhance=True)
    a = parse("prompt=x", styled, RULES)
    assert (a.gen.style, a.gen.enhance) == ("photorealistic", True)
    assert a.gen.key == parse("prompt=x&style=photorealistic&enhance=1", styled, RULES).gen.key


def test_format_quality_and_alpha_are_settled_in_the_parse() -> None:
    webp = parse("prompt=x", DEMO, RULES)
    assert (webp.transform.fmt, webp.transform.quality, webp.negotiated) == ("webp", 80, False)
    png = parse("prompt=x&fmt=png&q=10", DEMO, RULES)
    assert png.transform.quality is None  # lossless: q does not apply, nor key
    assert png.variant_key == key("prompt=x&fmt=png")
    assert parse("prompt=x&fmt=jpg", DEMO, RULES).transform.fmt == "jpeg"
    auto = parse("prompt=x&fmt=auto", DEMO, RULES, "image/avif,image/webp,*/*")
    assert (auto.transform.fmt, auto.transform.quality, auto.negotiated) == ("avif", 55, True)
    old = parse("prompt=x&fmt=auto", DEMO, RULES, "image/jpeg")
    assert old.transform.fmt == "jpeg" and not old.needs_alpha
    icon = parse("prompt=x&style=icon&fmt=auto", DEMO, RULES, "image/jpeg")
    assert icon.needs_alpha and icon.transform.fmt == "png" and icon.transform.rmbg


def test_a_plain_background_style_removes_it_where_the_format_has_alpha() -> None:
    assert parse("prompt=x&style=logo", DEMO, RULES).transform.rmbg
    assert not parse("prompt=x&style=logo&fmt=jpeg", DEMO, RULES).transform.rmbg
    assert not parse("prompt=x&style=photorealistic", DEMO, RULES).transform.rmbg
    assert key("prompt=x&style=logo") == key("prompt=x&style=logo&rmbg=1")


def test_dpr_clamps_to_the_maximum_keeping_the_ratio() -> None:
    t = parse("prompt=x&w=1500&h=500&dpr=2", DEMO, RULES).transform
    assert (t.width, t.height) == (2000, 667)


@pytest.mark.parametrize(
    ("query", "error", "param"),
    [
        ("w=10", BadParameter, "prompt"),
        ("prompt=%20", BadParameter, "prompt"),
        ("prompt=" + "a" * 10_001, PromptTooLong, "prompt"),
        ("prompt=x&w=0", BadParameter, "w"),
        ("prompt=x&w=2001", BadParameter, "w"),
        ("prompt=x&ar=65:1", BadParameter, "ar"),
        ("prompt=x&ar=16x9", BadParameter, "ar"),
        ("prompt=x&fit=crop", BadParameter, "fit"),
        ("prompt=x&anchor=1.5,0", BadParameter, "anchor"),
        ("prompt=x&fmt=gif", BadParameter, "fmt"),
        ("prompt=x&rmbg=1&fmt=jpeg", BadParameter, "rmbg"),
        ("prompt=x&bg=transparent&fmt=jpeg", BadParameter, "bg"),
        ("prompt=x&bg=red", BadParameter, "bg"),
        ("prompt=x&seed=-1", BadParameter, "seed"),
        ("prompt=x&model=dalle", BadParameter, "model"),
        ("prompt=x&style=baroque", BadParameter, "style"),
        ("prompt=x&enhance=yes", BadParameter, "enhance"),
        ("prompt=x&blur=101", BadParameter, "blur"),
        ("prompt=x&colour=red", UnknownParameter, "colour"),
        ("prompt=x&prompt=y", BadParameter, "prompt"),
        ("prompt=%ff", BadParameter, "prompt"),
    ],
)
def test_bad_input_names_the_parameter(query: str, error: type[Exception], param: str) -> None:
    with pytest.raises(error) as caught:
        parse(query, DEMO, RULES)
    assert getattr(caught.value, "param", None) == param


def test_split_query_decodes_plus_and_percent_alike() -> None:
    assert split_query(b"a=b+c&d=e%20f&empty=") == {"a": "b c", "d": "e f", "empty": ""}
    with pytest.raises(BadParameter):
        split_query("&".join(f"p{i}=1" for i in range(33)))


def test_parse_transform_reads_the_transform_as_parse_does() -> None:
    """An image that is not generated here (an asset) takes the same transform parameters,
    shown at the ratio it is given."""
    query = "w=300&h=200&dpr=2&fit=contain&anchor=0.2,0.8&fmt=auto&bg=transparent&blur=2"
    accept = "image/avif,image/webp"
    full = parse("prompt=x&" + query, DEMO, RULES, accept)
    alone = parse_transform(split_query(query), RULES, accept, view=(3, 2))
    assert alone.params == full.transform
    assert (alone.negotiated, alone.needs_alpha) == (full.negotiated, full.needs_alpha)
    assert parse_transform({}, RULES, view=(7, 5)).params.view == (7, 5)
    for name, value in (("prompt", "x"), ("ar", "1:1"), ("seed", "1"), ("model", "local")):
        with pytest.raises(BadParameter) as caught:
            parse_transform({name: value}, RULES, view=(1, 1))
        assert caught.value.param == name
    with pytest.raises(UnknownParameter):
        parse_transform({"colour": "red"}, RULES, view=(1, 1))
    with pytest.raises(BadParameter) as caught:
        parse_transform({"w": "0"}, RULES, view=(1, 1))
    assert caught.value.param == "w"
