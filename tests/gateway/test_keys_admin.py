"""API keys and the admin API over real HTTP (SPEC §2): who may call what (401 and 403),
keys and signing secrets shown once, revocation within seconds, every bad input a clear
4xx JSON error, `style_version`, the usage answer, and the `promptpix projects|keys` CLI
against a data directory with no gateway running, honoured by a gateway started after.
No answer of any of these gateways may be a server error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_support import assert_error, checked_client, eventually, start_gateway
from tests.services import Gateway

pytestmark = pytest.mark.timeout(60)

ADMIN = "keys-admin-token-0123456789abcdef"
PROMPTPIX = Path(sys.executable).parent / "promptpix"
MIB = 1 << 20

# Every credential this module was shown: none may ever be written to a gateway's log.
ISSUED: list[str] = [ADMIN]


def remember(value: str) -> str:
    ISSUED.append(value)
    return value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def full_log(gateway: Gateway) -> str:
    """The gateway's whole log (not only its tail)."""
    return (gateway.root / f"gateway-{gateway.port}.log").read_text(errors="replace")


def new_slug(what: str = "p") -> str:
    return f"{what}-{uuid.uuid4().hex[:10]}"


# --- the gateway with an admin token ---------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(tmp_path_factory.mktemp("keys-admin"), PROMPTPIX_ADMIN_TOKEN=ADMIN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with checked_client(gateway.url) as http:
        yield http


def admin(client: httpx.Client, method: str, path: str, body: Any = None) -> httpx.Response:
    return client.request(method, path, json=body, headers=bearer(ADMIN))


def create_project(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    slug = fields.pop("slug", None) or new_slug()
    made = admin(client, "POST", "/v1/projects", {"slug": slug, **fields})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    if body.get("signing_secret"):
        remember(body["signing_secret"])
    return body


def create_key(client: httpx.Client, slug: str, *scopes: str, name: str = "") -> dict[str, Any]:
    made = admin(client, "POST", f"/v1/projects/{slug}/keys", {"name": name, "scopes": scopes})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    assert body["key"].startswith("ppk_") and body["scopes"] == list(scopes)
    remember(body["key"])
    return body


@dataclass(frozen=True)
class Two:
    """Two projects, and keys of each with the scopes their names say."""

    alpha: str
    beta: str
    alpha_generate: str
    alpha_read: str
    beta_read: str


@pytest.fixture(scope="module")
def two(client: httpx.Client) -> Two:
    alpha = create_project(client)["slug"]
    beta = create_project(client)["slug"]
    return Two(
        alpha,
        beta,
        create_key(client, alpha, "generate")["key"],
        create_key(client, alpha, "read")["key"],
        create_key(client, beta, "read")["key"],
    )


def make_url(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.post("/v1/urls", json={"prompt": "keys", "w": 64}, headers=headers)


# --- who may call what -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer ppk_0123456789abcdef_not-a-key"},
        {"X-API-Key": "ppk_0123456789abcdef_not-a-key"},
        {"X-API-Key": "something else"},
    ],
    ids=["none", "empty", "basic", "unknown-bearer", "unknown-x-api-key", "junk"],
)
def test_a_missing_or_unknown_key_is_401_unauthorized(
    client: httpx.Client, two: Two, headers: dict[str, str]
) -> None:
    answer = make_url(client, headers)
    assert_error(answer, 401, "unauthorized")
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_key_with_a_wrong_secret_part_is_unknown(client: httpx.Client, two: Two) -> None:
    key_id = two.alpha_generate.rsplit("_", 1)[0]
    for forged in (key_id + "_" + "A" * 43, two.alpha_generate[:-1], two.alpha_generate + "x"):
        answer = make_url(client, bearer(forged))
        assert_error(answer, 401, "unauthorized")
        assert answer.headers["www-authenticate"].startswith("Bearer")


def test_bearer_and_x_api_key_are_both_accepted(client: httpx.Client, two: Two) -> None:
    answers = [
        make_url(client, headers)
        for headers in (
            bearer(two.alpha_generate),
            {"Authorization": f"bearer {two.alpha_generate}"},
            {"X-API-Key": two.alpha_generate},
        )
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
    assert len({a.json()["url"] for a in answers}) == 1
    assert answers[0].json()["url"].endswith(f"/i/{two.alpha}?prompt=keys&w=64")


def test_a_key_of_another_project_is_403_forbidden(client: httpx.Client, two: Two) -> None:
    own = client.get(f"/v1/projects/{two.beta}/usage", headers=bearer(two.beta_read))
    assert own.status_code == 200, own.text
    other = client.get(f"/v1/projects/{two.alpha}/usage", headers=bearer(two.beta_read))
    assert_error(other, 403, "forbidden")
    assert "generations" not in other.text
    # Nor does any project's key reach the admin routes.
    for method, path in (
        ("GET", "/v1/projects"),
        ("GET", f"/v1/projects/{two.beta}"),
        ("GET", f"/v1/projects/{two.beta}/keys"),
        ("POST", f"/v1/projects/{two.beta}/keys"),
        ("POST", f"/v1/projects/{two.beta}/signing-secrets"),
    ):
        answer = client.request(method, path, headers=bearer(two.beta_read))
        assert_error(answer, 403, "forbidden")


def test_a_key_without_the_scope_is_403_forbidden(client: httpx.Client, two: Two) -> None:
    assert_error(make_url(client, bearer(two.alpha_read)), 403, "forbidden")
    usage = client.get(f"/v1/projects/{two.alpha}/usage", headers=bearer(two.alpha_generate))
    assert_error(usage, 403, "forbidden")
    assert make_url(client, bearer(two.alpha_generate)).status_code == 200
    read = client.get(f"/v1/projects/{two.alpha}/usage", headers=bearer(two.alpha_read))
    assert read.status_code == 200


def test_the_admin_routes_need_the_admin_token(client: httpx.Client, two: Two) -> None:
    for headers in ({}, bearer(ADMIN + "x"), bearer(ADMIN[:-1]), bearer("not the token")):
        answer = client.get("/v1/projects", headers=headers)
        assert_error(answer, 401, "unauthorized")
        assert answer.headers["www-authenticate"].startswith("Bearer")
    made = client.post("/v1/projects", json={"slug": new_slug()}, headers=bearer("nope" * 5))
    assert_error(made, 401, "unauthorized")
    # A project's key is known, and not enough: 403.
    assert_error(client.get("/v1/projects", headers=bearer(two.alpha_generate)), 403, "forbidden")
    assert admin(client, "GET", "/v1/projects").status_code == 200


def test_a_revoked_key_fails_within_5_s(client: httpx.Client, two: Two) -> None:
    made = create_key(client, two.alpha, "generate", name="short-lived")
    assert make_url(client, bearer(made["key"])).status_code == 200
    gone = admin(client, "DELETE", f"/v1/projects/{two.alpha}/keys/{made['id']}")
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"id": made["id"], "deleted": True}
    eventually(lambda: make_url(client, bearer(made["key"])).status_code == 401)
    assert_error(make_url(client, {"X-API-Key": made["key"]}), 401, "unauthorized")
    listed = admin(client, "GET", f"/v1/projects/{two.alpha}/keys").json()["keys"]
    (revoked,) = [k for k in listed if k["id"] == made["id"]]
    assert isinstance(revoked["revoked_at"], int) and revoked["revoked_at"] > 0
    again = admin(client, "DELETE", f"/v1/projects/{two.alpha}/keys/{made['id']}")
    assert_error(again, 404)
    assert make_url(client, bearer(two.alpha_generate)).status_code == 200  # others still work


def test_keys_and_signing_secrets_are_shown_once(client: httpx.Client) -> None:
    project = create_project(client, signing="required", name="shown once")
    slug, secret = project["slug"], project["signing_secret"]
    assert isinstance(secret, str) and len(secret) >= 32
    key = create_key(client, slug, "generate", "read", name="once")
    rotated = admin(client, "POST", f"/v1/projects/{slug}/signing-secrets")
    assert rotated.status_code == 201, rotated.text
    second = remember(rotated.json()["signing_secret"])
    hidden = [secret, second, key["key"], key["key"].rsplit("_", 1)[1]]

    bodies = [
        admin(client, "GET", "/v1/projects"),
        admin(client, "GET", f"/v1/projects/{slug}"),
        admin(client, "GET", f"/v1/projects/{slug}/keys"),
        admin(client, "GET", f"/v1/projects/{slug}/signing-secrets"),
        admin(client, "GET", f"/v1/projects/{slug}/usage"),
        admin(client, "PATCH", f"/v1/projects/{slug}", {"name": "still shown once"}),
        admin(client, "PATCH", f"/v1/projects/{slug}", {"signing": "generation"}),
        client.get(f"/v1/projects/{slug}/usage", headers=bearer(key["key"])),
    ]
    for answer in bodies:
        assert answer.status_code == 200, answer.text
        for text in hidden:
            assert text not in answer.text, (answer.request.url, text)
    assert bodies[6].json()["signing_secret"] is None  # already signing: nothing new to show
    (listed,) = bodies[2].json()["keys"]
    assert listed == {
        "id": key["id"],
        "name": "once",
        "scopes": ["generate", "read"],
        "created_at": key["created_at"],
        "revoked_at": None,
    }
    assert slug in {p["slug"] for p in bodies[0].json()["projects"]}
    assert len(bodies[3].json()["signing_secrets"]) == 2


# --- bad input ----------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes | Any, int, str | None, str | None]] = [
    ("malformed", b'{"slug": "x",', 400, "invalid_body", None),
    ("not-json", b"slug=x", 400, "invalid_body", None),
    ("array", [], 400, "invalid_body", None),
    ("null", None, 400, "invalid_body", None),
    ("unknown-field", {"slug": "ok-1", "colour": "red"}, 400, "unknown_field", "colour"),
    (
        "nested-unknown",
        {"slug": "ok-1", "quota": {"per_day": 3}},
        400,
        "unknown_field",
        "quota.per_day",
    ),
    ("missing-slug", {"name": "x"}, 400, "invalid_body", "slug"),
    ("slug-case", {"slug": "Bad_Slug"}, 400, "invalid_body", "slug"),
    ("slug-dash", {"slug": "-x"}, 400, "invalid_body", "slug"),
    ("slug-64", {"slug": "a" * 64}, 400, "invalid_body", "slug"),
    ("slug-100", {"slug": "b" * 100}, 400, "invalid_body", "slug"),
    ("slug-empty", {"slug": ""}, 400, "invalid_body", "slug"),
    ("slug-type", {"slug": 7}, 400, "invalid_body", "slug"),
    ("name-type", {"slug": "ok-1", "name": ["x"]}, 400, "invalid_body", "name"),
    ("name-long", {"slug": "ok-1", "name": "n" * 201}, 400, "invalid_body", "name"),
    ("signing", {"slug": "ok-1", "signing": "maybe"}, 400, "invalid_body", "signing"),
    ("enhance-type", {"slug": "ok-1", "enhance": "yes"}, 400, "invalid_body", "enhance"),
    (
        "quota-type",
        {"slug": "ok-1", "quota": {"generations_per_month": "ten"}},
        400,
        "invalid_body",
        "quota.generations_per_month",
    ),
    ("quota-bare", {"slug": "ok-1", "quota": 10}, 400, "invalid_body", "quota"),
    (
        "quota-negative",
        {"slug": "ok-1", "quota": {"generations_per_month": -1}},
        400,
        "invalid_body",
        "quota.generations_per_month",
    ),
    (
        "budget-type",
        {"slug": "ok-1", "budget": {"usd_per_month": "x"}},
        400,
        "invalid_body",
        "budget.usd_per_month",
    ),
    ("generators-type", {"slug": "ok-1", "generators": "local"}, 400, None, "generators"),
    ("generators-unknown", {"slug": "ok-1", "generators": ["dalle"]}, 400, None, "generators"),
    (
        "generators-twice",
        {"slug": "ok-1", "generators": ["local", "local"]},
        400,
        None,
        "generators",
    ),
    ("style-unknown", {"slug": "ok-1", "style": "baroque"}, 400, None, "style"),
    ("on-failure", {"slug": "ok-1", "on_failure": "retry"}, 400, "invalid_body", "on_failure"),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_a_bad_project_body_is_a_clear_400(
    client: httpx.Client, body: bytes | Any, status: int, code: str | None, param: str | None
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**bearer(ADMIN), "Content-Type": "application/json"}
    answer = client.post("/v1/projects", content=content, headers=headers)
    error = assert_error(answer, status, code, param)
    if code == "unknown_field":
        assert error["param"].split(".")[-1] in error["message"]
    assert admin(client, "GET", "/v1/projects/ok-1").status_code == 404  # nothing was made


def test_a_bad_patch_or_key_body_is_a_clear_400(client: httpx.Client, two: Two) -> None:
    path = f"/v1/projects/{two.beta}"
    assert_error(admin(client, "PATCH", path, {"colour": 1}), 400, "unknown_field", "colour")
    assert_error(admin(client, "PATCH", path, {"slug": "renamed"}), 400, "unknown_field", "slug")
    assert_error(admin(client, "PATCH", path, {"signing": True}), 400, "invalid_body", "signing")
    assert_error(admin(client, "PATCH", path, {"style": "baroque"}), 400, None, "style")
    garbage = client.patch(path, content=b"{{", headers=bearer(ADMIN))
    assert_error(garbage, 400, "invalid_body")
    keys = f"{path}/keys"
    assert_error(admin(client, "POST", keys, {"scopes": ["admin"]}), 400, "invalid_body", "scopes")
    assert_error(admin(client, "POST", keys, {"scopes": "read"}), 400, "invalid_body", "scopes")
    assert_error(admin(client, "POST", keys, {"name": "x", "ttl": 3}), 400, "unknown_field", "ttl")
    unchanged = admin(client, "GET", path).json()
    assert unchanged["slug"] == two.beta and unchanged["signing"] == "off"
    assert unchanged["style"] == "" and unchanged["style_version"] == 1


def test_a_body_over_1_mib_is_413(client: httpx.Client, two: Two) -> None:
    big = b'{"slug": "big-1", "name": "' + b"x" * MIB + b'"}'
    headers = {**bearer(ADMIN), "Content-Type": "application/json"}
    assert_error(client.post("/v1/projects", content=big, headers=headers), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it is read
        yield b'{"slug": "big-2", "name": "'
        for _ in range(64):
            yield b"y" * 32768
        yield b'"}'

    assert_error(client.post("/v1/projects", content=chunks(), headers=headers), 413)
    assert_error(client.patch(f"/v1/projects/{two.beta}", content=big, headers=headers), 413)
    urls = client.post(
        "/v1/urls",
        content=big,
        headers={"X-API-Key": two.alpha_generate, "Content-Type": "application/json"},
    )
    assert_error(urls, 413)
    # Just under the limit is read, and refused for what it says.
    near = b'{"slug": "big-3", "name": "' + b"x" * (MIB - 100) + b'"}'
    assert_error(client.post("/v1/projects", content=near, headers=headers), 400, None, "name")


def test_a_body_that_is_not_json_is_415(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/projects",
        content=b'{"slug": "plain-text"}',
        headers={**bearer(ADMIN), "Content-Type": "text/plain"},
    )
    assert_error(answer, 415)
    assert admin(client, "GET", "/v1/projects/plain-text").status_code == 404
    form = {**bearer(ADMIN), "Content-Type": "application/x-www-form-urlencoded"}
    assert_error(client.post("/v1/projects", content=b"slug=a-form", headers=form), 415)
    assert admin(client, "GET", "/v1/projects/a-form").status_code == 404


def test_json_sent_as_curl_sends_it_is_read(client: httpx.Client) -> None:
    # `curl -d '{...}'` labels its body application/x-www-form-urlencoded.
    slug = new_slug("curl")
    answer = client.post(
        "/v1/projects",
        content=b'{"slug": "%s", "name": "curl"}' % slug.encode(),
        headers={**bearer(ADMIN), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 201, answer.text
    assert admin(client, "GET", f"/v1/projects/{slug}").json()["name"] == "curl"


def test_an_existing_slug_is_409(client: httpx.Client) -> None:
    slug = create_project(client, name="first")["slug"]
    again = admin(client, "POST", "/v1/projects", {"slug": slug, "name": "second"})
    assert_error(again, 409, "project_exists")
    assert admin(client, "GET", f"/v1/projects/{slug}").json()["name"] == "first"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/projects/{slug}", None),
        ("PATCH", "/v1/projects/{slug}", {"name": "x"}),
        ("GET", "/v1/projects/{slug}/usage", None),
        ("GET", "/v1/projects/{slug}/keys", None),
        ("POST", "/v1/projects/{slug}/keys", {"scopes": ["read"]}),
        ("DELETE", "/v1/projects/{slug}/keys/0123456789abcdef", None),
        ("GET", "/v1/projects/{slug}/signing-secrets", None),
        ("POST", "/v1/projects/{slug}/signing-secrets", None),
        ("DELETE", "/v1/projects/{slug}/signing-secrets/0123456789abcdef", None),
    ],
)
def test_an_unknown_project_is_404(client: httpx.Client, method: str, path: str, body: Any) -> None:
    slug = new_slug("missing")
    error = assert_error(admin(client, method, path.format(slug=slug), body), 404)
    assert error["code"] == "unknown_project"  # as /i/ answers it
    assert slug in error["message"]
    assert admin(client, "GET", f"/v1/projects/{slug}").status_code == 404  # still not there


def test_unknown_ids_in_a_known_project_are_404(client: httpx.Client, two: Two) -> None:
    for path in ("keys/0123456789abcdef", "signing-secrets/0123456789abcdef"):
        assert_error(admin(client, "DELETE", f"/v1/projects/{two.beta}/{path}"), 404)


def test_a_style_change_raises_style_version_and_changes_the_key(client: httpx.Client) -> None:
    slug = create_project(client)["slug"]
    live = f"/i/{slug}?prompt=a+lighthouse+{uuid.uuid4().hex[:8]}&w=64"
    first = client.get(live)
    assert first.status_code == 200 and first.headers["x-cache-status"] == "MISS"
    before = first.headers["x-image-id"]

    renamed = admin(client, "PATCH", f"/v1/projects/{slug}", {"name": "renamed"})
    assert renamed.json()["style_version"] == 1  # the name is not part of any key
    styled = admin(client, "PATCH", f"/v1/projects/{slug}", {"style": "photorealistic"})
    assert styled.status_code == 200, styled.text
    assert styled.json()["style"] == "photorealistic" and styled.json()["style_version"] == 2
    assert admin(client, "GET", f"/v1/projects/{slug}").json()["style_version"] == 2

    eventually(lambda: client.get(live).headers["x-image-id"] != before)
    after = client.get(live)
    assert after.headers["x-cache-status"] == "HIT"
    restyled = after.headers["x-image-id"]

    prompted = admin(client, "PATCH", f"/v1/projects/{slug}", {"system_prompt": "in winter"})
    assert prompted.json()["style_version"] == 3
    eventually(lambda: client.get(live).headers["x-image-id"] not in (before, restyled))


def test_usage_has_the_shape_spec_2_gives(client: httpx.Client) -> None:
    slug = create_project(
        client, quota={"generations_per_month": 5}, budget={"usd_per_month": 2.5}
    )["slug"]
    read = create_key(client, slug, "read")["key"]
    empty = admin(client, "GET", f"/v1/projects/{slug}/usage").json()
    assert empty == {
        "period": time.strftime("%Y-%m", time.gmtime()),
        "generations": 0,
        "quota": 5,
        "estimated_usd": 0.0,
        "budget": 2.5,
        "by_generator": {},
    }
    live = f"/i/{slug}?prompt=usage+{uuid.uuid4().hex[:8]}&w=64"
    assert client.get(live).headers["x-cache-status"] == "MISS"
    assert client.get(live).headers["x-cache-status"] == "HIT"  # a hit costs nothing
    assert client.get(live + "&fmt=png").headers["x-cache-status"] == "TRANSFORM"  # nor this
    used = admin(client, "GET", f"/v1/projects/{slug}/usage").json()
    assert used == {
        **empty,
        "generations": 1,
        "by_generator": {"local": {"generations": 1, "estimated_usd": 0.0}},
    }
    by_key = client.get(f"/v1/projects/{slug}/usage", headers={"X-API-Key": read})
    assert by_key.status_code == 200 and by_key.json() == used


# --- the CLI, with no gateway running; then a gateway over the same data --------------------


@dataclass
class Offline:
    """A data directory managed by the CLI alone, and what the CLI answered."""

    root: Path
    env: dict[str, str]
    answers: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PROMPTPIX), *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def json(self, name: str, *args: str) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stderr)
        self.answers[name] = json.loads(done.stdout)
        return self.answers[name]


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Offline:
    """The CLI's work, done before any gateway runs over this data directory: a signing
    project, an open one, keys of each, one of them revoked."""
    root = tmp_path_factory.mktemp("keys-cli")
    env = {
        **os.environ,
        **{name: "" for name in os.environ if name.startswith("PROMPTPIX_")},
        "PROMPTPIX_STORE": f"file://{root / 'data'}",
        "PROMPTPIX_DATABASE_URL": "",
        "PROMPTPIX_GENERATORS": "local",
    }
    cli = Offline(root, env)
    made = cli.json("create", "projects", "create", "shop", "--signing", "required", "--quota", "3")
    remember(made["signing_secret"])
    cli.json("create-open", "projects", "create", "open", "--name", "Open")
    cli.json("list", "projects", "list")
    cli.json("update", "projects", "update", "shop", "--style", "icon", "--name", "Shop")
    cli.json("show", "projects", "show", "shop")
    remember(cli.json("generate", "keys", "create", "shop", "--scopes", "generate")["key"])
    remember(cli.json("read", "keys", "create", "shop", "--scopes", "read")["key"])
    remember(cli.json("open-key", "keys", "create", "open", "--name", "all")["key"])
    doomed = cli.json("doomed", "keys", "create", "shop", "--name", "doomed")
    remember(doomed["key"])
    cli.json("revoke", "keys", "revoke", "shop", doomed["id"])
    cli.json("keys", "keys", "list", "shop")
    cli.failures["exists"] = cli.run("projects", "create", "shop")
    cli.failures["unknown"] = cli.run("projects", "show", "nowhere")
    cli.failures["bad-slug"] = cli.run("projects", "create", "Bad_Slug")
    cli.failures["revoke-again"] = cli.run("keys", "revoke", "shop", doomed["id"])
    return cli


@pytest.fixture(scope="module")
def after(offline: Offline) -> Iterator[Gateway]:
    """A gateway started over the CLI's data directory, with no admin token."""
    server = start_gateway(offline.root)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def after_client(after: Gateway) -> Iterator[httpx.Client]:
    with checked_client(after.url) as http:
        yield http


def test_the_cli_manages_projects_and_keys_with_no_gateway(offline: Offline) -> None:
    a = offline.answers
    assert not list(offline.root.glob("gateway-*.log"))  # no gateway ran over it meanwhile
    assert a["create"]["slug"] == "shop" and a["create"]["signing"] == "required"
    assert a["create"]["quota"] == {"generations_per_month": 3}
    assert a["create-open"]["signing_secret"] is None and a["create-open"]["name"] == "Open"
    assert sorted(p["slug"] for p in a["list"]["projects"]) == ["open", "shop"]
    assert a["update"]["style"] == "icon" and a["update"]["name"] == "Shop"
    assert a["update"]["style_version"] == 2
    shown = a["show"]
    assert shown["project"]["style_version"] == 2 and shown["project"]["quota"] == {
        "generations_per_month": 3
    }
    assert shown["usage"]["generations"] == 0 and shown["usage"]["quota"] == 3
    assert a["generate"]["scopes"] == ["generate"] and a["read"]["scopes"] == ["read"]
    assert a["open-key"]["scopes"] == ["generate", "read", "assets"]
    assert a["revoke"] == {"id": a["doomed"]["id"], "revoked": True}
    listed = {k["id"]: k for k in a["keys"]["keys"]}
    assert set(listed) == {a["generate"]["id"], a["read"]["id"], a["doomed"]["id"]}
    assert listed[a["doomed"]["id"]]["revoked_at"] is not None
    assert listed[a["generate"]["id"]]["revoked_at"] is None
    # Shown once: never again, in any answer.
    later = json.dumps([a["list"], a["update"], a["show"], a["keys"]])
    for name in ("generate", "read", "doomed"):
        assert a[name]["key"] not in later
    assert a["create"]["signing_secret"] not in later
    for name, code in (("exists", 1), ("unknown", 1), ("bad-slug", 2), ("revoke-again", 1)):
        failed = offline.failures[name]
        assert failed.returncode == code, (name, failed.stderr)
        assert failed.stdout == "" and failed.stderr.startswith("promptpix: "), name
    assert "exists" in offline.failures["exists"].stderr
    assert "nowhere" in offline.failures["unknown"].stderr


def test_a_key_made_by_the_cli_works_on_a_gateway_started_after(
    after_client: httpx.Client, offline: Offline
) -> None:
    a = offline.answers
    made = after_client.post(
        "/v1/urls", json={"prompt": "made offline", "w": 64}, headers=bearer(a["generate"]["key"])
    )
    assert made.status_code == 200, made.text
    url = made.json()["url"]
    assert "/i/shop?" in url and "sig=" in url
    assert after_client.get(url).status_code == 200
    assert_error(after_client.get(url.split("&sig=")[0]), 403, "signature_required")
    usage = after_client.get("/v1/projects/shop/usage", headers={"X-API-Key": a["read"]["key"]})
    assert usage.status_code == 200 and usage.json()["generations"] == 1
    assert_error(after_client.get("/v1/projects/open/usage", headers=bearer(a["read"]["key"])), 403)
    revoked = after_client.post(
        "/v1/urls", json={"prompt": "x"}, headers=bearer(a["doomed"]["key"])
    )
    assert_error(revoked, 401, "unauthorized")
    opened = after_client.post(
        "/v1/urls", json={"prompt": "x"}, headers=bearer(a["open-key"]["key"])
    )
    assert opened.status_code == 200 and "sig=" not in opened.json()["url"]


def test_a_key_revoked_by_the_cli_fails_on_a_running_gateway_within_5_s(
    after_client: httpx.Client, offline: Offline
) -> None:
    made = offline.json("late", "keys", "create", "open", "--scopes", "generate")
    key = remember(made["key"])
    urls = {"prompt": "late", "w": 64}
    eventually(
        lambda: after_client.post("/v1/urls", json=urls, headers=bearer(key)).status_code == 200
    )
    offline.json("late-revoke", "keys", "revoke", "open", made["id"])
    eventually(
        lambda: after_client.post("/v1/urls", json=urls, headers=bearer(key)).status_code == 401
    )


ADMIN_ROUTES = [
    ("GET", "/v1/projects", None),
    ("POST", "/v1/projects", {"slug": "made-over-http"}),
    ("GET", "/v1/projects/shop", None),
    ("PATCH", "/v1/projects/shop", {"signing": "off"}),
    ("GET", "/v1/projects/shop/keys", None),
    ("POST", "/v1/projects/shop/keys", {"scopes": ["generate"]}),
    ("DELETE", "/v1/projects/shop/keys/0123456789abcdef", None),
    ("GET", "/v1/projects/shop/signing-secrets", None),
    ("POST", "/v1/projects/shop/signing-secrets", None),
    ("DELETE", "/v1/projects/shop/signing-secrets/0123456789abcdef", None),
]


def test_admin_routes_answer_403_without_an_admin_token(
    after_client: httpx.Client, offline: Offline
) -> None:
    a = offline.answers
    for headers in ({}, bearer(ADMIN), bearer(a["generate"]["key"]), {"X-API-Key": "x" * 20}):
        for method, path, body in ADMIN_ROUTES:
            answer = after_client.request(method, path, json=body, headers=headers)
            error = assert_error(answer, 403, "forbidden")
            assert "PROMPTPIX_ADMIN_TOKEN" in error["message"], error
    # Nothing changed: the CLI still reads what it wrote, and the project still signs.
    assert offline.json("recheck", "projects", "show", "shop")["project"]["signing"] == "required"
    assert [p["slug"] for p in offline.json("relist", "projects", "list")["projects"]] == sorted(
        ["open", "shop"]
    )
    # The usage route also takes a `read` key, admin token or not.
    usage = after_client.get("/v1/projects/shop/usage", headers=bearer(a["read"]["key"]))
    assert usage.status_code == 200
    assert_error(after_client.get("/v1/projects/shop/usage"), 401, "unauthorized")


# --- the logs ------------------------------------------------------------------------------


def test_credentials_never_reach_the_log(
    gateway: Gateway, client: httpx.Client, after: Gateway, after_client: httpx.Client, two: Two
) -> None:
    # Every path a credential travels, good and bad, before the logs are read.
    key = create_key(client, two.alpha, "generate", name="logged?")
    assert make_url(client, bearer(key["key"])).status_code == 200
    admin(client, "DELETE", f"/v1/projects/{two.alpha}/keys/{key['id']}")
    eventually(lambda: make_url(client, bearer(key["key"])).status_code == 401)
    client.post("/v1/urls", content=b"{", headers=bearer(two.alpha_generate))
    client.post("/v1/urls", json={"prompt": "x", "w": 0}, headers=bearer(two.alpha_generate))
    client.get("/v1/projects", headers=bearer(ADMIN + "-wrong"))
    after_client.get("/v1/projects", headers=bearer(ADMIN))
    assert len(ISSUED) > 10
    for server in (gateway, after):
        log = full_log(server)
        assert "Started worker" in log or "Listening" in log  # the log is where we look
        for secret in ISSUED:
            assert secret not in log, "a credential was written to the log"
        assert not re.search(r"ppk_[0-9a-f]{16}_\S{20,}", log), "something key-like is logged"
