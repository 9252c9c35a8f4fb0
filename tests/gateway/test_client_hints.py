"""Client Hints (`ch=1`) over real HTTP: `Sec-CH-DPR` fills `dpr` and `Sec-CH-Width` fills
`w` when the URL does not give them; the answer says `Accept-CH` and varies on the hints it
used; without `ch=1` the hints change nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.live_support import assert_error, size_of, start_gateway
from tests.services import Gateway

pytestmark = pytest.mark.timeout(60)

URL = "/i/demo"
BASE = {"prompt": "client hints fox", "ar": "16:9", "fmt": "png"}
HINTS = {"Sec-CH-DPR": "2", "Sec-CH-Width": "800"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(tmp_path_factory.mktemp("hints"))
    try:
        yield server
    finally:
        server.stop()


def get(gateway: Gateway, params: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    answer = httpx.get(f"{gateway.url}{URL}", params=params, headers=headers, timeout=30)
    assert answer.status_code in (200, 304), answer.text
    return answer


def test_hints_fill_dpr_and_w_and_the_answer_varies_on_them(gateway: Gateway) -> None:
    answer = get(gateway, {**BASE, "ch": "1"}, HINTS)
    assert size_of(answer.content)[0] == 800  # 400 CSS pixels at DPR 2
    assert answer.headers["accept-ch"] == "Sec-CH-DPR, Sec-CH-Width"
    assert answer.headers["vary"] == "Sec-CH-DPR, Sec-CH-Width"
    # another device, the same URL: another image, not the one made for the first
    other = get(gateway, {**BASE, "ch": "1"}, {"Sec-CH-DPR": "1", "Sec-CH-Width": "300"})
    assert size_of(other.content)[0] == 300
    again = get(gateway, {**BASE, "ch": "1"}, HINTS)
    assert size_of(again.content)[0] == 800 and again.headers["x-cache-status"] == "HIT"
    revalidated = get(
        gateway, {**BASE, "ch": "1"}, {**HINTS, "If-None-Match": answer.headers["etag"]}
    )
    assert revalidated.status_code == 304
    assert revalidated.headers["vary"] == "Sec-CH-DPR, Sec-CH-Width"


def test_the_url_wins_over_the_hints(gateway: Gateway) -> None:
    answer = get(gateway, {**BASE, "ch": "1", "w": "300"}, HINTS)
    assert size_of(answer.content)[0] == 600  # the URL's w, the hint's DPR
    assert answer.headers["vary"] == "Sec-CH-DPR"
    both = get(gateway, {**BASE, "ch": "1", "w": "300", "dpr": "1"}, HINTS)
    assert size_of(both.content)[0] == 300
    assert "vary" not in both.headers and both.headers["accept-ch"]


def test_without_ch_the_hints_change_nothing(gateway: Gateway) -> None:
    plain = get(gateway, {**BASE, "w": "200"}, HINTS)
    assert size_of(plain.content)[0] == 200
    assert "accept-ch" not in plain.headers and "vary" not in plain.headers


def test_bad_hints_are_ignored_and_a_bad_ch_is_a_400(gateway: Gateway) -> None:
    odd = get(gateway, {**BASE, "ch": "1", "w": "120"}, {"Sec-CH-DPR": "many"})
    assert size_of(odd.content)[0] == 120 and "vary" not in odd.headers
    huge = get(gateway, {**BASE, "ch": "1", "w": "100"}, {"Sec-CH-DPR": "9"})
    assert size_of(huge.content)[0] == 400  # clamped to DPR 4
    assert_error(httpx.get(f"{gateway.url}{URL}", params={**BASE, "ch": "2"}), 400, param="ch")
