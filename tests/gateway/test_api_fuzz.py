"""Fuzzing the JSON API from its own document: schemathesis reads `/openapi.json` from a
running gateway, makes requests for every operation (valid ones and edge cases of each
schema), and every answer must be a clear one: never a server error, always JSON or the
image or page the route serves. A project key with every scope is sent, so the calls get
past authentication and reach the handlers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.live_support import start_gateway
from tests.services import Gateway

pytestmark = pytest.mark.timeout(600)

ADMIN = "fuzz-admin-token-0123456789abcdef"
EXAMPLES = 25  # per operation: bounded, so the suite stays within its time


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_gateway(
        tmp_path_factory.mktemp("api-fuzz"),
        PROMPTPIX_ADMIN_TOKEN=ADMIN,
        PROMPTPIX_SEMANTIC="off",
        PROMPTPIX_MAX_UPLOAD_MB="1",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    slug = f"fuzz-{uuid.uuid4().hex[:8]}"
    made = httpx.post(f"{gateway.url}/v1/projects", json={"slug": slug}, headers=admin)
    assert made.status_code == 201, made.text
    issued = httpx.post(
        f"{gateway.url}/v1/projects/{slug}/keys",
        json={"name": "fuzz", "scopes": ["generate", "read", "assets"]},
        headers=admin,
    )
    assert issued.status_code == 201, issued.text
    return str(issued.json()["key"])


def test_no_operation_answers_a_server_error(gateway: Gateway, key: str) -> None:
    api = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")
    auth = {"Authorization": f"Bearer {key}"}
    checked = []
    answered: set[str] = set()  # the operations that answered a 2xx at least once
    for found in api.get_all_operations():
        operation = found.ok()
        name = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case: Any) -> None:
            response = case.call(headers=auth, timeout=60)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, (
                f"{where} -> {response.status_code}: {response.text[:500]}"
            )
            if response.status_code < 300:
                answered.add(f"{case.method.upper()} {case.path}")
            if response.status_code >= 400:
                kind = (response.headers.get("content-type") or [""])[0]
                assert kind.startswith("application/json"), (where, kind)
                assert "error" in response.json(), where

        call()
        checked.append(name)
    assert "POST /v1/generations" in checked and "POST /v1/assets" in checked
    assert len(checked) >= 25, checked
    # The fuzzing reached the handlers: many operations took some request and answered it.
    assert len(answered) >= 8, answered
