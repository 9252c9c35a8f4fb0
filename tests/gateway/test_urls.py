"""Live URLs as the gateway writes them: order, signing per mode, srcset, <img>."""

from __future__ import annotations

from urllib.parse import urlsplit

from promptpix.cache.control import Project
from promptpix.gateway.params import split_query
from promptpix.gateway.signing import verify
from promptpix.gateway.urls import img_tag, live_url, srcset, widths

OPEN = Project("demo")
REQUIRED = Project("acme", signing="required", secrets=("old", "newest"))
GENERATION = Project("acme", signing="generation", secrets=("newest",))
FIELDS = {"w": "400", "prompt": "a red fox", "ar": "16:9", "fmt": "webp"}


def parts(url: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(url)
    return split.path, split_query(split.query)


def test_an_open_project_gets_an_unsigned_url_in_a_fixed_order() -> None:
    url = live_url("https://img.example.com/", OPEN, FIELDS)
    assert url == "https://img.example.com/i/demo?prompt=a%20red%20fox&ar=16:9&w=400&fmt=webp"


def test_a_signing_project_signs_with_its_newest_secret() -> None:
    path, params = parts(live_url("http://x", REQUIRED, FIELDS))
    assert verify(["newest"], path, params, "required")
    assert not verify(["old"], path, params, "required")


def test_srcset_candidates_verify_in_each_mode() -> None:
    for project in (REQUIRED, GENERATION):
        candidates = srcset("http://x", project, FIELDS, widths(FIELDS, 4096))
        urls = [c.rsplit(" ", 1)[0] for c in candidates.split(", ")]
        assert [c.rsplit(" ", 1)[1] for c in candidates.split(", ")] == ["400w", "600w", "800w"]
        for url in urls:
            path, params = parts(url)
            assert verify(project.secrets, path, params, project.signing), url
    # generation mode: one signature for every width
    gen = srcset("http://x", GENERATION, FIELDS, [400, 800])
    assert len({parts(c.rsplit(" ", 1)[0])[1]["sig"] for c in gen.split(", ")}) == 1


def test_widths_are_capped_and_a_ladder_without_w() -> None:
    assert widths({"w": "3000"}, 4096) == [3000, 4096]
    assert widths({}, 1000) == [320, 640, 960, 1000]
    assert widths({"w": "10"}, 4096, [300, 100, 300]) == [100, 300]


def test_img_tag_escapes() -> None:
    tag = img_tag('/i/x?p="a"&b', "s 1w", alt="<fox>", sizes="100vw", width=4, height=3)
    assert 'src="/i/x?p=&quot;a&quot;&amp;b"' in tag and 'alt="&lt;fox&gt;"' in tag
    assert 'width="4" height="3"' in tag
