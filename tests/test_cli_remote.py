"""The remote commands (`promptpix generate`, `batch`, `warm`, `mcp`) run as processes against a
real gateway: exit codes, JSON lines in input order, one-line errors, each original generated
once, and progress that stays plain text when stderr is not a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests import live_support as live
from tests.live_support import api_gateway, generations, magic, size_of
from tests.services import Gateway, free_port

pytestmark = pytest.mark.timeout(120)

ADMIN = "cli-remote-admin-token-0123456789"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with api_gateway(tmp_path_factory.mktemp("cli-remote"), ADMIN) as server:
        yield server


@pytest.fixture(scope="module")
def project(gateway: Gateway) -> tuple[str, str]:
    return live.new_project(gateway.url, ADMIN)


def environment(url: str, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTPIX_")}
    env["PROMPTPIX_URL"] = url
    if key is not None:
        env["PROMPTPIX_API_KEY"] = key
    return env


def promptpix(
    gateway: Gateway | str, key: str | None, *args: str, cwd: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it (against a gateway, or a URL): a process, stderr a pipe."""
    url = gateway if isinstance(gateway, str) else gateway.url
    return subprocess.run(
        [sys.executable, "-m", "promptpix.gateway.cli", *args],
        env=environment(url, key),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("promptpix: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def plain(stderr: str) -> None:
    """Progress fit for a log: no carriage return, no escape code."""
    assert "\r" not in stderr and "\x1b" not in stderr, repr(stderr)


def live_url(slug: str, prompt: str, **extra: str) -> str:
    query = "&".join(f"{k}={quote(v)}" for k, v in {"prompt": prompt, **extra}.items())
    return f"/i/{slug}?{query}"


# --- batch ------------------------------------------------------------------------------


def test_batch_of_good_lines_exits_0_with_one_completed_generation_per_line_in_order(
    gateway: Gateway, project: tuple[str, str], tmp_path: Path
) -> None:
    _, key = project
    tag = uuid.uuid4().hex[:8]
    ratios = ["1:1", "16:9", "3:4", "9:16", "4:3", "2:3"]
    bodies = [{"prompt": f"{tag} item {i}", "aspect_ratio": ar} for i, ar in enumerate(ratios)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bodies))
    before = generations(gateway.url)
    done = promptpix(gateway, key, "batch", "in.jsonl", "--concurrency", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json_lines(done.stdout)
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5, 6]
    for body, result in zip(bodies, results, strict=True):
        assert result["status"] == 200, result
        generation = result["generation"]
        assert generation["status"] == "completed"
        assert generation["prompt"]["given"] == body["prompt"]
        assert generation["aspect_ratio"] == body["aspect_ratio"]
        assert generation["urls"]["live"].startswith(gateway.url)
    assert generations(gateway.url) - before == len(bodies)
    plain(done.stderr)
    assert done.stderr.splitlines()[0] == "batch: 0/6 lines, 0 done, 0 failed"
    assert done.stderr.splitlines()[-1].startswith("batch: 6/6 lines, 6 done, 0 failed, in ")


def test_batch_with_bad_lines_exits_1_and_still_makes_the_good_ones(
    gateway: Gateway, project: tuple[str, str], tmp_path: Path
) -> None:
    _, key = project
    tag = uuid.uuid4().hex[:8]
    text = "\n".join(
        [
            json.dumps({"prompt": f"{tag} good one"}),
            "{not json",
            "",  # blank: skipped, the numbering stays the file's
            json.dumps({"prompt": f"{tag} bad ratio", "aspect_ratio": "0:1"}),
            "[1, 2]",
            json.dumps({"prompt": f"{tag} good two", "seed": 7}),
        ]
    )
    output = tmp_path / "out.jsonl"
    done = promptpix(gateway, key, "batch", "-", "-o", str(output), stdin=text)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    results = {r["line"]: r for r in json_lines(output.read_text())}
    assert list(results) == [1, 2, 4, 5, 6]
    for good in (1, 6):
        assert results[good]["status"] == 200
        assert results[good]["generation"]["status"] == "completed"
    assert results[2]["status"] == 400
    assert results[2]["error"]["code"] == "invalid_json"
    assert results[5]["error"]["code"] == "invalid_json"
    assert results[4]["status"] == 400
    assert results[4]["error"]["param"] == "aspect_ratio"
    plain(done.stderr)
    assert "batch: 5/5 lines, 2 done, 3 failed, in " in done.stderr
    assert "promptpix: 3 of 5 lines failed (line 2, 4, 5)" in done.stderr


def test_batch_that_cannot_run_exits_2_with_one_line(
    gateway: Gateway, project: tuple[str, str], tmp_path: Path
) -> None:
    _, key = project
    missing = promptpix(gateway, key, "batch", "no-such.jsonl", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert "cannot read no-such.jsonl" in one_line(missing.stderr)

    (tmp_path / "in.jsonl").write_text(json.dumps({"prompt": "never sent"}) + "\n")
    refused = promptpix(gateway, "ppk_not_a_real_key", "batch", "in.jsonl", cwd=tmp_path)
    assert refused.returncode == 2
    line = one_line(refused.stderr)
    assert "401" in line and "PROMPTPIX_API_KEY" in line

    no_key = promptpix(gateway, None, "batch", "in.jsonl", cwd=tmp_path)
    assert no_key.returncode == 2
    assert "PROMPTPIX_API_KEY" in one_line(no_key.stderr)

    closed = promptpix(f"http://127.0.0.1:{free_port()}", key, "batch", "in.jsonl", cwd=tmp_path)
    assert closed.returncode == 2
    assert "cannot reach the gateway" in one_line(closed.stderr)


def test_progress_on_a_terminal_is_a_bar(
    gateway: Gateway, project: tuple[str, str], tmp_path: Path
) -> None:
    _, key = project
    tag = uuid.uuid4().hex[:8]
    lines = [json.dumps({"prompt": f"{tag} tty {i}"}) for i in range(3)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines))
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "promptpix.gateway.cli", "batch", "in.jsonl"],
        env={**environment(gateway.url, key), "TERM": "xterm"},
        stdout=subprocess.DEVNULL,
        stderr=follower,
        cwd=tmp_path,
    ) as proc:
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=60) == 0
    os.close(leader)
    text = seen.decode()
    assert "\r" in text  # a bar redrawn in place
    assert "3/3" in text and "3 done, 0 failed" in text


# --- warm -------------------------------------------------------------------------------


def page(slug: str, other: str, prompts: list[str], extra: str = "") -> str:
    hero, card = prompts
    return f"""<!doctype html><html><body>
<img src="{live_url(slug, hero, w="320")}"
     srcset="{live_url(slug, hero, w="320")} 320w, {live_url(slug, hero, w="640")} 640w">
<div style="background-image: url('{live_url(slug, card, w="200")}')"></div>
<img src="https://elsewhere.example{live_url(slug, "foreign")}">
<img src="{live_url(other, "another project")}">
{extra}
</body></html>"""


def test_warm_a_page_generates_each_original_once(
    gateway: Gateway, project: tuple[str, str], tmp_path: Path
) -> None:
    slug, key = project
    other, _ = live.new_project(gateway.url, ADMIN)
    tag = uuid.uuid4().hex[:8]
    (tmp_path / "page.html").write_text(page(slug, other, [f"{tag} hero", f"{tag} card"]))
    before = generations(gateway.url)
    done = promptpix(gateway, key, "warm", "page.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    outcomes = [(r["outcome"], r["source"]) for r in json_lines(done.stdout)]
    assert sorted(o for o, _ in outcomes) == ["generated"] * 3 + ["ignored"] * 2
    assert {s for _, s in outcomes} == {"page.html"}
    assert generations(gateway.url) - before == 2  # two originals, the hero in two widths
    plain(done.stderr)
    assert "warm: 3/3 images, 3 done, 0 skipped, 0 failed, in " in done.stderr
    assert "warm: 3 images: 3 generated, 0 already stored, 0 failed; 2 ignored" in done.stderr

    # Again, with one of its URLs given on its own: all stored, nothing generated.
    again = promptpix(
        gateway, key, "warm", "page.html", live_url(slug, f"{tag} card", w="200"), cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert generations(gateway.url) - before == 2
    stored = [r for r in json_lines(again.stdout) if r["outcome"] == "stored"]
    assert len(stored) == 4
    assert "4 already stored" in again.stderr


def test_warm_exits_1_when_a_url_fails(gateway: Gateway, tmp_path: Path) -> None:
    slug, key = live.new_project(gateway.url, ADMIN, quota={"generations_per_month": 1})
    other, _ = live.new_project(gateway.url, ADMIN)
    tag = uuid.uuid4().hex[:8]
    bad = f'<img src="{live_url(slug, f"{tag} bad", w="99999")}">'
    (tmp_path / "page.html").write_text(page(slug, other, [f"{tag} a", f"{tag} b"], bad))
    before = generations(gateway.url)
    done = promptpix(gateway, key, "warm", str(tmp_path / "page.html"))
    assert done.returncode == 1, done.stderr
    results = json_lines(done.stdout)
    failed = [r for r in results if r["outcome"] == "failed"]
    codes = sorted(r["error"]["code"] for r in failed)
    assert "invalid_parameter" in codes and "quota_exceeded" in codes
    assert [r["error"]["param"] for r in failed if r["error"]["code"] == "invalid_parameter"] == [
        "w"
    ]
    assert generations(gateway.url) - before == 1  # the quota's one
    plain(done.stderr)
    assert f"{len(failed)} failed" in done.stderr.splitlines()[-1]


def test_warm_of_a_missing_page_exits_2(gateway: Gateway, project: tuple[str, str]) -> None:
    done = promptpix(gateway, project[1], "warm", "/no/such/page.html")
    assert done.returncode == 2
    assert "/no/such/page.html" in one_line(done.stderr)


# --- generate ---------------------------------------------------------------------------


def test_generate_writes_the_image_in_the_extension_s_format_and_prints_its_url(
    gateway: Gateway, project: tuple[str, str], tmp_path: Path
) -> None:
    _, key = project
    prompt = f"{uuid.uuid4().hex[:8]} a lighthouse"
    out = tmp_path / "x.png"
    done = promptpix(gateway, key, "generate", prompt, "--ar", "16:9", "-w", "300", "-o", str(out))
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith(f"{gateway.url}/i/") and "fmt=png" in url and "w=300" in url
    data = out.read_bytes()
    assert magic(data) == "png"
    width, height = size_of(data)
    assert width == 300 and 160 <= height <= 175  # 16:9 (the original's native size)
    assert httpx.get(url, timeout=30).content == data  # the printed URL is this image
    assert "generated by local" in done.stderr
    assert "placeholder" in done.stderr
    assert f"wrote {out} ({len(data)} bytes)" in done.stderr

    found = promptpix(gateway, key, "generate", prompt, "--ar", "16:9", "--json")
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert answer["status"] == "completed" and answer["cache"]["generated"] is False
    assert (width, height) == (
        300,
        round(300 * answer["image"]["height"] / answer["image"]["width"]),
    )


def test_generate_errors_are_one_line(gateway: Gateway, project: tuple[str, str]) -> None:
    bad = promptpix(gateway, project[1], "generate", "x", "--ar", "0:1")
    assert bad.returncode == 1
    assert "aspect_ratio" in one_line(bad.stderr)
    refused = promptpix(gateway, "ppk_not_a_real_key", "generate", "x")
    assert refused.returncode == 2
    assert "401" in one_line(refused.stderr)
    gif = promptpix(gateway, project[1], "generate", "x", "-o", "x.gif")
    assert gif.returncode == 2
    assert ".png" in one_line(gif.stderr)


def test_mcp_without_a_key_exits_2_naming_the_variable(gateway: Gateway) -> None:
    done = promptpix(gateway, None, "mcp")
    assert done.returncode == 2
    assert "PROMPTPIX_API_KEY" in one_line(done.stderr)
