"""`GET /openapi.json`: a valid OpenAPI 3.1 document of every JSON route the gateway serves,
made from the routes' own declarations."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.live_support import start_gateway
from tests.services import Gateway

ADMIN = "openapi-tests-admin-token-0123456789"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(tmp_path_factory.mktemp("openapi"), PROMPTPIX_ADMIN_TOKEN=ADMIN)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def doc(gateway: Gateway) -> dict[str, Any]:
    answer = httpx.get(gateway.url + "/openapi.json", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    return body


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # the OpenAPI 3.1 meta-schema, and every $ref resolves


def test_it_lists_the_control_plane_with_its_models_and_auth(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    for path, method in (
        ("/v1/projects", "post"),
        ("/v1/projects/{slug}", "patch"),
        ("/v1/projects/{slug}/keys/{id}", "delete"),
        ("/v1/projects/{slug}/signing-secrets", "post"),
        ("/v1/projects/{slug}/usage", "get"),
        ("/v1/urls", "post"),
        ("/openapi.json", "get"),
    ):
        assert method in paths.get(path, {}), (path, method, sorted(paths))
    made = paths["/v1/projects"]["post"]
    body = made["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = doc["components"]["schemas"]
    project = schemas[body.rsplit("/", 1)[1]]
    assert "slug" in project["required"] and "signing" in project["properties"]
    assert set(made["responses"]) >= {"201", "400", "401", "403", "409"}
    urls = paths["/v1/urls"]["post"]
    assert urls["security"] and "generate" in urls["description"]
    assert "security" not in paths["/openapi.json"]["get"]


def test_every_documented_route_is_served(gateway: Gateway, doc: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    for path, operations in doc["paths"].items():
        concrete = re.sub(r"\{[a-z_]+\}", "nosuch", path)
        for method in operations:
            answer = httpx.request(
                method.upper(), gateway.url + concrete, json={}, headers=auth, timeout=30
            )
            assert answer.status_code != 405, (method, path)
            if answer.status_code == 404:  # the project, not the route, is unknown
                assert not answer.json()["error"]["message"].startswith("no route"), path


def test_the_gateways_package_version_is_the_documents(doc: dict[str, Any]) -> None:
    from importlib.metadata import version

    assert doc["info"]["version"] == version("promptpix")
