"""The JS/TS SDK (sdk/js): its URL vectors hold for the gateway's own URL writer, and its
`node --test` suite passes, including its tests against a real running gateway."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptpix.cache.control import Project
from promptpix.gateway import urls
from tests.live_support import start_gateway

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "sdk" / "js"
VECTORS = json.loads((ROOT / "tests" / "vectors" / "urls.json").read_text("utf-8"))
ADMIN = "js-sdk-admin-token-0123456789abcdef"


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: c["project"] + " " + c["url"][-24:])
def test_url_vectors_are_the_gateways_urls(case: dict[str, Any]) -> None:
    secrets = (case["secret"],) if "secret" in case else ()
    project = Project(slug=case["project"], signing=case.get("mode", "off"), secrets=secrets)
    assert urls.live_url(case["base"], project, case["params"]) == case["url"]
    assert urls.srcset(case["base"], project, case["params"], case["widths"]) == case["srcset"]


def test_node_suite_passes_against_a_running_gateway(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JS SDK's tests need Node 18+")
    gateway = start_gateway(tmp_path, PROMPTPIX_ADMIN_TOKEN=ADMIN, PROMPTPIX_SEMANTIC="off")
    try:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=gateway.url, headers=admin, timeout=30) as http:
            made = http.post("/v1/projects", json={"slug": "jssdk", "signing": "generation"})
            assert made.status_code == 201, made.text
            key = http.post(
                "/v1/projects/jssdk/keys", json={"name": "js", "scopes": ["generate", "read"]}
            )
            assert key.status_code == 201, key.text
        env = {
            **os.environ,
            "PROMPTPIX_TEST_URL": gateway.url,
            "PROMPTPIX_TEST_KEY": key.json()["key"],
            "PROMPTPIX_TEST_PROJECT": "jssdk",
            "PROMPTPIX_TEST_SECRET": made.json()["signing_secret"],
        }
        run = subprocess.run(
            [node, "--test"], cwd=SDK, env=env, capture_output=True, text=True, timeout=150
        )
    finally:
        gateway.stop()
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    counts = dict(re.findall(r"^# (pass|fail|skipped) (\d+)$", report, re.MULTILINE))
    assert counts == {"pass": counts["pass"], "fail": "0", "skipped": "0"}, report
    assert int(counts["pass"]) >= 30, report
