"""Signed live URLs over real HTTP (SPEC §3): a `promptpix serve` process, projects that
sign in each mode made through the admin API, signatures from `POST /v1/urls` and
`promptpix sign`. Unsigned and wrong URLs are refused on misses and hits alike; a URL
re-encoded on its way still verifies; rotation and a signing rule changed while the
gateway runs take effect within seconds."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from promptpix.gateway.signing import sign
from tests.live_support import (
    WITHIN_S,
    assert_error,
    checked_client,
    eventually,
    generations,
    raw_get,
    start_gateway,
)
from tests.services import Gateway

pytestmark = pytest.mark.timeout(60)

ADMIN = "signed-urls-admin-token-0123456789"
PROMPTPIX = Path(sys.executable).parent / "promptpix"
# A sample line of /metrics; label values may hold braces (`route="/v1/projects/{slug}"`).


@dataclass(frozen=True)
class Signed:
    """A project that signs, with the secret it was created with and a `generate` key."""

    slug: str
    mode: str
    secret: str
    key: str

    @property
    def path(self) -> str:
        return f"/i/{self.slug}"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(tmp_path_factory.mktemp("signed-urls"), PROMPTPIX_ADMIN_TOKEN=ADMIN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    """Every answer of the gateway is checked: none may be a server error."""
    with checked_client(gateway.url) as http:
        yield http


def admin(client: httpx.Client, method: str, path: str, body: Any = None) -> httpx.Response:
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {ADMIN}"})


def make_project(client: httpx.Client, signing: str) -> tuple[str, str | None]:
    """A new project; its slug and the signing secret shown once."""
    slug = f"{signing[:3]}-{uuid.uuid4().hex[:10]}"
    made = admin(client, "POST", "/v1/projects", {"slug": slug, "signing": signing})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["signing"] == signing
    return slug, body["signing_secret"]


def make_key(client: httpx.Client, slug: str) -> str:
    made = admin(client, "POST", f"/v1/projects/{slug}/keys", {"scopes": ["generate"]})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def signed_project(client: httpx.Client, mode: str) -> Signed:
    slug, secret = make_project(client, mode)
    assert isinstance(secret, str) and len(secret) >= 32
    return Signed(slug, mode, secret, make_key(client, slug))


@pytest.fixture(scope="module")
def required(client: httpx.Client) -> Signed:
    return signed_project(client, "required")


@pytest.fixture(scope="module")
def generation(client: httpx.Client) -> Signed:
    return signed_project(client, "generation")


@pytest.fixture(params=["required", "generation"])
def project(request: pytest.FixtureRequest) -> Signed:
    signed: Signed = request.getfixturevalue(request.param)
    return signed


# --- helpers ----------------------------------------------------------------------------


def fresh(what: str) -> str:
    return f"{what} {uuid.uuid4().hex[:10]}"


def signed_url(client: httpx.Client, key: str, **fields: Any) -> str:
    """A live URL as `POST /v1/urls` signs it: its path and query."""
    answer = client.post("/v1/urls", json=fields, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    parts = urlsplit(answer.json()["url"])
    return f"{parts.path}?{parts.query}"


def params_of(url: str) -> list[tuple[str, str]]:
    """The decoded parameters of a URL, in order."""
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def with_params(url: str, pairs: list[tuple[str, str]]) -> str:
    """The URL's path with these parameters, each percent-encoded."""
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return f"{urlsplit(url).path}?{query}"


def changed(url: str, **values: str) -> str:
    """The URL with some parameters set (added when absent), the rest as they were."""
    pairs = [(k, values.pop(k, v)) for k, v in params_of(url)]
    return with_params(url, pairs + list(values.items()))


def without(url: str, *names: str) -> str:
    return with_params(url, [(k, v) for k, v in params_of(url) if k not in names])


def sig_of(url: str) -> str:
    return dict(params_of(url))["sig"]


def unsigned(url: str) -> str:
    return without(url, "sig")


def assert_required(response: httpx.Response) -> None:
    assert_error(response, 403, "signature_required", "sig")


def assert_invalid(response: httpx.Response) -> None:
    assert_error(response, 403, "signature_invalid", "sig")


def assert_head_refused(response: httpx.Response) -> None:
    """HEAD of a refused URL: the GET's status and headers, without a body."""
    assert response.status_code == 403
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == b""


def cli(gateway: Gateway, *args: str) -> dict[str, Any]:
    """`promptpix ARGS` with the gateway's settings (its store and database), JSON out."""
    done = subprocess.run(
        [str(PROMPTPIX), *args],
        env={**os.environ, **gateway.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


# --- refusals ---------------------------------------------------------------------------


def test_unsigned_is_403_signature_required_and_not_cached(
    client: httpx.Client, project: Signed
) -> None:
    before = generations(client)
    answer = client.get(project.path, params={"prompt": fresh("unsigned"), "w": "64"})
    assert_required(answer)
    assert answer.headers["cache-control"] == "no-store"
    assert "etag" not in answer.headers and "x-image-id" not in answer.headers
    assert_head_refused(client.head(project.path, params={"prompt": "unsigned head"}))
    assert generations(client) == before


def test_tampered_truncated_and_cross_project_signatures_are_invalid(
    client: httpx.Client, required: Signed, generation: Signed
) -> None:
    for project, other in ((required, generation), (generation, required)):
        url = signed_url(client, project.key, prompt=fresh("tamper"), w=64)
        sig = sig_of(url)
        assert client.get(url).status_code == 200
        assert_invalid(client.get(changed(url, prompt=fresh("tamper"))))  # another value
        assert_invalid(client.get(changed(url, sig=sig[:-1])))  # truncated
        assert_invalid(client.get(changed(url, sig=sig[:16])))
        assert_invalid(client.get(changed(url, sig="")))
        flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
        assert_invalid(client.get(changed(url, sig=flipped)))
        assert_invalid(client.get(changed(url, sig=sig + "x")))
        # The same parameters signed for the other project (by its own API and secret), on
        # this project's path; and this project's signature on the other's path.
        theirs = signed_url(client, other.key, url=f"{other.path}?{urlsplit(unsigned(url)).query}")
        assert client.get(theirs).status_code == 200
        assert_invalid(client.get(changed(url, sig=sig_of(theirs))))
        assert_invalid(client.get(changed(theirs, sig=sig)))
        # A signature made with the other project's secret over this very URL.
        forged = sign(other.secret, project.path, dict(params_of(unsigned(url))), "required")
        assert_invalid(client.get(changed(url, sig=forged)))
        assert_invalid(
            client.get(
                changed(
                    url,
                    sig=sign(other.secret, project.path, dict(params_of(url)), "generation"),
                )
            )
        )


def test_a_reencoded_url_still_verifies(client: httpx.Client, project: Signed) -> None:
    prompt = f"a quiet harbour at dawn, café {uuid.uuid4().hex[:8]}"
    url = signed_url(client, project.key, prompt=prompt, w=80, fmt="png")
    assert "%20" in url and "+" not in url
    base = str(client.base_url)
    status, headers, _ = raw_get(base, url.encode())
    assert status == 200, headers
    etag = headers["etag"]
    sig = sig_of(url)
    words = quote(prompt, safe="").replace("%20", "+")
    for target in (
        f"{project.path}?prompt={words}&w=80&fmt=png&sig={sig}",  # spaces as +
        f"{project.path}?sig={sig}&fmt=png&w=80&prompt={quote(prompt, safe='')}",  # reordered
        f"{project.path}?w=80&prompt={words.lower()}&sig={sig}&fmt=png",  # hex in lower case
        f"{project.path}?fmt=%70ng&w=%380&prompt={words}&sig={sig}",  # needless escapes
    ):
        status, headers, _ = raw_get(base, target.encode())
        assert status == 200, (target, headers)
        assert headers["etag"] == etag
    # A plus written as `%2B` is a plus, not a space: another prompt, refused.
    plus = f"{project.path}?prompt={words.replace('+', '%2B')}&w=80&fmt=png&sig={sig}"
    status, _, body = raw_get(base, plus.encode())
    assert status == 403 and json.loads(body)["error"]["code"] == "signature_invalid", body


# --- what each mode signs ----------------------------------------------------------------


def test_generation_mode_signs_only_what_defines_the_original(
    client: httpx.Client, generation: Signed
) -> None:
    url = signed_url(client, generation.key, prompt=fresh("one signature"), w=64)
    first = client.get(url)
    assert first.status_code == 200
    image_id = first.headers["x-image-id"]
    for variant in (
        changed(url, w="96"),
        changed(url, w="40", dpr="2"),
        changed(url, fmt="png"),
        changed(url, fmt="jpeg", q="70", fit="contain", bg="ff0000"),
        without(url, "w"),
    ):
        answer = client.get(variant)
        assert answer.status_code == 200, (variant, answer.text)
        assert answer.headers["x-image-id"] == image_id
    assert client.get(changed(url, fmt="png")).headers["content-type"] == "image/png"
    before = generations(client)
    for forged in (
        changed(url, prompt=fresh("another prompt")),
        changed(url, seed="7"),
        changed(url, seed="0", style="icon"),
        changed(url, ar="16:9"),
        changed(url, neg="text"),
        changed(url, enhance="1"),
    ):
        assert_invalid(client.get(forged))
    assert generations(client) == before  # nothing new was made


def test_generation_mode_unsigned_w_and_h_do_not_choose_a_new_original(
    client: httpx.Client, generation: Signed
) -> None:
    # Unsigned, w x h would set the ratio (SPEC §1), so a page could make a signed URL
    # generate one new original per ratio; under `generation` signing they only crop.
    url = signed_url(client, generation.key, prompt=fresh("box"), w=64)
    image_id = client.get(url).headers["x-image-id"]
    before = generations(client)
    for w, h in (("300", "1000"), ("1600", "900"), ("90", "40")):
        answer = client.get(changed(url, w=w, h=h))
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-image-id"] == image_id
        assert answer.headers["x-cache-status"] != "MISS"
    assert generations(client) == before

    # Signing tools write the ratio w x h picks out, so it is signed.
    pinned = signed_url(client, generation.key, prompt=fresh("box"), w=300, h=1000)
    assert dict(params_of(pinned))["ar"] == "9:16"
    answer = client.get(pinned)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == "MISS"
    assert generations(client) == before + 1
    assert_invalid(client.get(changed(pinned, ar="2:3")))


def test_required_mode_signs_every_parameter(client: httpx.Client, required: Signed) -> None:
    url = signed_url(client, required.key, prompt=fresh("every parameter"), w=64, fmt="webp")
    assert client.get(url).status_code == 200
    for forged in (
        changed(url, w="65"),
        changed(url, dpr="2"),
        changed(url, fmt="png"),
        changed(url, seed="1"),
        without(url, "w"),
        without(url, "fmt"),
    ):
        assert_invalid(client.get(forged))


def test_hits_are_checked_too(client: httpx.Client, project: Signed) -> None:
    url = signed_url(client, project.key, prompt=fresh("hit"), w=72)
    assert client.get(url).headers["x-cache-status"] == "MISS"
    hit = client.get(url)
    assert hit.status_code == 200 and hit.headers["x-cache-status"] == "HIT"
    assert_required(client.get(unsigned(url)))
    assert_head_refused(client.head(unsigned(url)))
    sig = sig_of(url)
    assert_invalid(client.get(changed(url, sig=sig[:-1] + ("A" if sig[-1] != "A" else "B"))))
    assert_invalid(
        client.get(changed(url, sig=sign("another secret", project.path, {}, "required")))
    )
    if project.mode == "generation":  # another width of the stored image: a transform
        assert_required(client.get(unsigned(changed(url, w="73"))))
    assert client.get(url).headers["x-cache-status"] == "HIT"  # and the signed one still is


# --- changes while running ----------------------------------------------------------------


def test_rotation_old_and_new_verify_until_the_old_is_deleted(client: httpx.Client) -> None:
    rotated = signed_project(client, "required")
    listed = admin(client, "GET", f"/v1/projects/{rotated.slug}/signing-secrets")
    assert listed.status_code == 200, listed.text
    (old,) = listed.json()["signing_secrets"]
    assert rotated.secret not in listed.text
    fields = {"prompt": fresh("rotation"), "w": 64}
    old_url = signed_url(client, rotated.key, **fields)
    assert client.get(old_url).status_code == 200

    made = admin(client, "POST", f"/v1/projects/{rotated.slug}/signing-secrets")
    assert made.status_code == 201, made.text
    new_id, new_secret = made.json()["id"], made.json()["signing_secret"]
    assert new_id != old["id"] and new_secret != rotated.secret

    # The API signs with the newest secret once the gateway has seen it.
    new_url = old_url

    def signs_anew() -> bool:
        nonlocal new_url
        new_url = signed_url(client, rotated.key, **fields)
        return new_url != old_url

    eventually(signs_anew)
    params = dict(params_of(unsigned(new_url)))
    assert sig_of(new_url) == sign(new_secret, rotated.path, params, "required")
    assert sig_of(old_url) == sign(rotated.secret, rotated.path, params, "required")
    assert client.get(new_url).status_code == 200
    assert client.get(old_url).status_code == 200  # both verify, side by side
    other = changed(old_url, w="65")
    assert_invalid(client.get(other))
    other = changed(
        other, sig=sign(rotated.secret, rotated.path, dict(params_of(other)), "required")
    )
    assert client.get(other).status_code == 200  # the old secret signs new URLs too, for now

    gone = admin(client, "DELETE", f"/v1/projects/{rotated.slug}/signing-secrets/{old['id']}")
    assert gone.status_code == 200, gone.text
    eventually(lambda: client.get(old_url).status_code == 403)
    assert_invalid(client.get(old_url))
    assert_invalid(client.get(other))
    assert client.get(new_url).status_code == 200
    left = admin(client, "GET", f"/v1/projects/{rotated.slug}/signing-secrets").json()
    assert [each["id"] for each in left["signing_secrets"]] == [new_id]
    # The last secret of a project that signs cannot go: it would verify nothing.
    last = admin(client, "DELETE", f"/v1/projects/{rotated.slug}/signing-secrets/{new_id}")
    assert_error(last, 409)
    assert client.get(new_url).status_code == 200


def test_signing_turned_on_while_running(client: httpx.Client) -> None:
    slug, secret = make_project(client, "off")
    assert secret is None
    key = make_key(client, slug)
    url = f"/i/{slug}?prompt={quote(fresh('turned on'))}&w=64"
    assert client.get(url).status_code == 200
    assert signed_url(client, key, url=url) == url  # nothing to sign yet

    patched = admin(client, "PATCH", f"/v1/projects/{slug}", {"signing": "required"})
    assert patched.status_code == 200, patched.text
    secret = patched.json()["signing_secret"]
    assert isinstance(secret, str) and secret
    took = eventually(lambda: client.get(url).status_code == 403)
    assert took <= WITHIN_S
    assert_required(client.get(url))
    assert_required(client.get(url))  # and stays so

    # The API signs the same URL once the gateway has seen the change; it loads the stored
    # image again.
    eventually(lambda: "sig" in dict(params_of(signed_url(client, key, url=url))))
    signed = signed_url(client, key, url=url)
    assert sig_of(signed) == sign(secret, f"/i/{slug}", dict(params_of(url)), "required")
    again = client.get(signed)
    assert again.status_code == 200 and again.headers["x-cache-status"] == "HIT"


# --- signed URLs without the secret ------------------------------------------------------


def test_v1_urls_answers_signed_urls_that_load_and_generates_nothing(
    client: httpx.Client, project: Signed
) -> None:
    prompt = fresh("srcset")
    before = generations(client)
    answer = client.post(
        "/v1/urls",
        json={"prompt": prompt, "w": 120, "ar": "4:3", "alt": "a test"},
        headers={"X-API-Key": project.key},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert generations(client) == before  # signing URLs generates nothing

    url = body["url"]
    assert url.startswith(f"{str(client.base_url).rstrip('/')}{project.path}?")
    candidates = [item.rsplit(" ", 1) for item in body["srcset"].split(", ")]
    assert [w for _, w in candidates] == ["120w", "180w", "240w"]
    tag = body["html"]
    assert tag.startswith("<img ") and f'src="{html.escape(url)}"' in tag
    assert f'srcset="{html.escape(body["srcset"])}"' in tag
    assert 'alt="a test"' in tag and 'width="120" height="90"' in tag
    assert (body["width"], body["height"]) == (120, 90)

    ids = set()
    for each in [url, *(u for u, _ in candidates)]:
        assert "sig=" in each
        params = dict(params_of(each))
        assert params["sig"] == sign(project.secret, project.path, params, project.mode)  # type: ignore[arg-type]
        loaded = client.get(each)
        assert loaded.status_code == 200, (each, loaded.text)
        assert loaded.headers["content-type"] == "image/webp"
        ids.add(loaded.headers["x-image-id"])
        assert_required(client.get(unsigned(each)))
    assert len(ids) == 1  # one original serves the whole srcset
    assert generations(client) == before + 1


def test_promptpix_sign_prints_a_url_the_gateway_serves(
    gateway: Gateway, client: httpx.Client, project: Signed
) -> None:
    target = f"{project.path}?prompt={quote(fresh('cli signed'))}&w=90"
    assert_required(client.get(target))
    printed = cli(gateway, "sign", gateway.url + target)
    assert printed["mode"] == project.mode
    url = printed["url"]
    assert url.startswith(gateway.url + project.path + "?")
    params = dict(params_of(url))
    assert params["sig"] == sign(project.secret, project.path, params, project.mode)  # type: ignore[arg-type]
    answer = client.get(url)
    assert answer.status_code == 200, answer.text
    # A path alone is signed the same way.
    assert cli(gateway, "sign", target)["url"] == url.removeprefix(gateway.url)
    assert client.get(cli(gateway, "sign", target)["url"]).status_code == 200
