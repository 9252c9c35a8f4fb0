"""`POST /v1/prompts/validate`: the length, validity and the optimizer's action on a prompt,
by the live path's own rules, without generating; through real HTTP against `promptpix serve`
(offline, and with an LLM speaking Ollama's API on a local port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptpix.generators.prompts import COMPACT_ABOVE, MAX_PROMPT_CHARS, compact
from tests.generators.test_prompts import LONG, SHORT_ANSWER, FakeLLMServer
from tests.live_support import assert_error, checked_client, metrics, start_gateway
from tests.services import Gateway

ADMIN = "prompt-validation-admin-token-0123456789"
ROUTE = "/v1/prompts/validate"
SLUG = "prompts"


def sentences(length: int) -> str:
    """`length` characters of sentences, each said twice (compaction drops the repeats)."""
    text = " ".join(
        f"A harbour at dawn, boat number {i} painted red. A harbour at dawn, boat number {i} "
        "painted red."
        for i in range(length // 50)
    )
    return text[:length].rstrip() + "." * (length - len(text[:length].rstrip()))


def start(root: Path, **env: str) -> tuple[Gateway, httpx.Client, dict[str, str]]:
    settings = {"PROMPTPIX_ADMIN_TOKEN": ADMIN, "PROMPTPIX_SEMANTIC": "off", **env}
    server = start_gateway(root, 1, "granian", **settings)
    client = checked_client(server.url)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    made = client.post("/v1/projects", json={"slug": SLUG}, headers=admin)
    assert made.status_code == 201, made.text
    keys = {}
    for scope in ("generate", "read"):
        key = client.post(f"/v1/projects/{SLUG}/keys", json={"scopes": [scope]}, headers=admin)
        assert key.status_code == 201, key.text
        keys[scope] = key.json()["key"]
    return server, client, keys


@pytest.fixture(scope="module")
def offline(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, httpx.Client, dict[str, str]]]:
    server, client, keys = start(tmp_path_factory.mktemp("validate"))
    yield server, client, keys
    client.close()
    server.stop()


@pytest.fixture(scope="module")
def client(offline: tuple[Gateway, httpx.Client, dict[str, str]]) -> httpx.Client:
    return offline[1]


@pytest.fixture(scope="module")
def key(offline: tuple[Gateway, httpx.Client, dict[str, str]]) -> str:
    return offline[2]["generate"]


def validate(client: httpx.Client, key: str, prompt: Any) -> dict[str, Any]:
    answer = client.post(ROUTE, json={"prompt": prompt}, headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    assert body["max_length"] == MAX_PROMPT_CHARS and body["compact_above"] == COMPACT_ABOVE
    return body


def all_generations(client: httpx.Client) -> float:
    """Every generation the gateway attempted, whatever its outcome."""
    return sum(
        value
        for (name, _), value in metrics(client).items()
        if name == "promptpix_generations_total"
    )


def test_a_short_prompt_is_sent_as_it_is(client: httpx.Client, key: str) -> None:
    body = validate(client, key, "a red fox in the snow")
    assert body["length"] == 21 and body["valid"] is True
    assert body["action"] == "none" and body["compacted"] is None and body["reason"] is None


def test_a_long_prompt_is_compacted_with_the_text_that_would_be_sent(
    client: httpx.Client, key: str
) -> None:
    prompt = sentences(3_500)
    assert len(prompt) == 3_500
    body = validate(client, key, prompt)
    assert body["length"] == 3_500 and body["valid"] is True and body["action"] == "compact"
    assert body["compacted"] == compact(prompt)  # the generation path's own compaction
    assert 0 < len(body["compacted"]) <= COMPACT_ABOVE
    assert body["compacted"].count("boat number 3 painted") == 1  # the repeat dropped
    assert body["optimizer"] == "deterministic"  # no LLM configured


def test_a_prompt_over_the_limit_is_rejected(client: httpx.Client, key: str) -> None:
    body = validate(client, key, sentences(12_000))
    assert body["length"] == 12_000 and body["valid"] is False
    assert body["action"] == "reject" and body["reason"] == "prompt_too_long"
    assert body["compacted"] is None


@pytest.mark.parametrize("prompt", ["", "   ", " \n\t \u3000 ", "\x00\x01"])
def test_an_empty_prompt_is_rejected(client: httpx.Client, key: str, prompt: str) -> None:
    body = validate(client, key, prompt)
    assert body == {**body, "length": 0, "valid": False, "action": "reject"}
    assert body["reason"] == "prompt_required" and body["compacted"] is None


@pytest.mark.parametrize(
    ("length", "action"),
    [(COMPACT_ABOVE, "none"), (COMPACT_ABOVE + 1, "compact"), (MAX_PROMPT_CHARS, "compact")],
)
def test_the_boundaries_are_the_live_urls(
    client: httpx.Client, key: str, length: int, action: str
) -> None:
    body = validate(client, key, "x" * length)
    assert body["length"] == length and body["valid"] is True and body["action"] == action
    too_long = validate(client, key, "x" * (MAX_PROMPT_CHARS + 1))
    assert too_long["action"] == "reject"
    # The live URL refuses what is rejected here, before generating anything.
    refused = client.get(f"/i/{SLUG}", params={"prompt": "x" * (MAX_PROMPT_CHARS + 1)})
    assert_error(refused, 400, "prompt_too_long", "prompt")


def test_the_prompt_is_normalised_as_the_live_url_does(client: httpx.Client, key: str) -> None:
    # Control characters are spaces, runs of space are one, the ends are trimmed.
    body = validate(client, key, "  a   red\x00fox \n\n in\tsnow  ")
    assert body["length"] == len("a red fox in snow")
    padded = validate(client, key, "  " + "y " * (COMPACT_ABOVE // 2) + "   ")
    assert padded["length"] == COMPACT_ABOVE - 1 and padded["action"] == "none"


def test_it_needs_a_key_with_the_generate_scope(
    offline: tuple[Gateway, httpx.Client, dict[str, str]],
) -> None:
    _, client, keys = offline
    body = {"prompt": "a fox"}
    assert_error(client.post(ROUTE, json=body), 401, "unauthorized")
    assert_error(client.post(ROUTE, json=body, headers={"X-API-Key": "ppk_nosuch"}), 401)
    read_only = {"Authorization": f"Bearer {keys['read']}"}
    assert_error(client.post(ROUTE, json=body, headers=read_only), 403, "forbidden")
    ok = client.post(ROUTE, json=body, headers={"Authorization": f"Bearer {keys['generate']}"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({}, "invalid_body", "prompt"),
        ({"prompt": 5}, "invalid_body", "prompt"),
        ({"prompt": None}, "invalid_body", "prompt"),
        ({"prompt": "a fox", "style": "icon"}, "unknown_field", "style"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(
    client: httpx.Client, key: str, body: dict[str, Any], code: str, param: str
) -> None:
    answer = client.post(ROUTE, json=body, headers={"X-API-Key": key})
    assert_error(answer, 400, code, param)


def test_nothing_is_generated(client: httpx.Client, key: str) -> None:
    before = all_generations(client)
    for prompt in ("a fox", sentences(3_500), sentences(12_000), "", "   "):
        validate(client, key, prompt)
    assert all_generations(client) == before == 0
    # The count is real: a live image of the project is one generation.
    image = client.get(f"/i/{SLUG}", params={"prompt": "a fox", "w": "32"})
    assert image.status_code == 200
    assert all_generations(client) == 1


def test_the_document_lists_the_route(client: httpx.Client) -> None:
    op = client.get("/openapi.json").json()["paths"][ROUTE]["post"]
    assert "generate" in op["description"] and op["security"]
    assert set(op["responses"]) >= {"200", "400", "401", "403"}


# --- with an LLM configured ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer("ollama").start()
    yield server
    server.stop()


def test_with_an_llm_its_compaction_is_the_answer(
    tmp_path_factory: pytest.TempPathFactory, ollama: FakeLLMServer
) -> None:
    server, client, keys = start(
        tmp_path_factory.mktemp("validate-llm"),
        PROMPTPIX_OLLAMA_URL=ollama.url,
        PROMPTPIX_OLLAMA_MODEL="test-model",
    )
    try:
        short = validate(client, keys["generate"], "a lighthouse")
        assert short["action"] == "none" and ollama.requests == []  # nothing to compact
        body = validate(client, keys["generate"], LONG)
        assert body["action"] == "compact" and body["compacted"] == SHORT_ANSWER
        assert body["optimizer"] == "ollama:test-model"
        path, _, sent = ollama.requests[-1]
        assert path == "/api/generate" and sent["prompt"] == LONG
        assert all_generations(client) == 0
    finally:
        client.close()
        server.stop()
