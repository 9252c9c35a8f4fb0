"""Configuration: a value of any `PROMPTPIX_*` variable the gateway cannot use stops it
before it listens, in one line that names the variable (never its value), exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptpix.gateway.config import Config, ConfigError


def test_defaults_are_the_embedded_ones() -> None:
    config = Config.from_env({})
    assert config == Config()
    assert config.server.port == 8080 and config.server.host == "127.0.0.1"
    assert config.generators.generators == ("local",)
    assert config.demo_enabled


@pytest.mark.parametrize(
    "store",
    [
        "file:///var/lib/promptpix",
        "./promptpix-data",
        "s3://promptpix/images",
        "s3://promptpix",
        "s3://my.bucket-01/a/b",
    ],
)
def test_store_urls_the_gateway_can_open(store: str) -> None:
    assert Config.from_env({"PROMPTPIX_STORE": store}).cache.store == store


@pytest.mark.parametrize(
    ("store", "says"),
    [
        ("ftp://host/dir", "unsupported store URL"),
        ("s3://", "needs a bucket"),
        ("s3:///images", "needs a bucket"),
        ("s3://pp/images", "not a valid bucket name"),  # S3 wants 3 characters at least
        ("s3://Promptpix/images", "not a valid bucket name"),
        ("s3://under_score", "not a valid bucket name"),
        ("s3://a..b", "not a valid bucket name"),
        ("s3://-promptpix", "not a valid bucket name"),
        ("s3://10.0.0.1/images", "not a valid bucket name"),
        ("s3://" + "b" * 64, "not a valid bucket name"),
    ],
)
def test_store_urls_refused_at_start(store: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        Config.from_env({"PROMPTPIX_STORE": store})
    assert str(caught.value).startswith("PROMPTPIX_STORE: ")


def test_database_url_must_be_postgresql() -> None:
    dsn = "postgresql://promptpix:secret@db:5432/promptpix"
    assert Config.from_env({"PROMPTPIX_DATABASE_URL": dsn}).cache.database_url == dsn
    assert Config.from_env({"PROMPTPIX_DATABASE_URL": "postgres://db/x"}).cache.database_url
    for wrong in ("mysql://u:hunter2@db/x", "db:5432/promptpix"):
        with pytest.raises(ConfigError, match="PROMPTPIX_DATABASE_URL") as caught:
            Config.from_env({"PROMPTPIX_DATABASE_URL": wrong})
        assert "hunter2" not in str(caught.value)


# One bad value per package's settings, and each kind of value (number, range, choice, flag,
# list, cross-field).
BAD = [
    ("PROMPTPIX_PORT", "eighty"),
    ("PROMPTPIX_PORT", "70000"),
    ("PROMPTPIX_DEMO", "sometimes"),
    ("PROMPTPIX_DEFAULT_FORMAT", "gif"),
    ("PROMPTPIX_GENERATION_TIMEOUT_S", "0.01"),
    ("PROMPTPIX_MAX_DIMENSION", "4k"),
    ("PROMPTPIX_MAX_UPLOAD_MB", "lots"),
    ("PROMPTPIX_MAX_UPLOAD_MB", "0"),
    ("PROMPTPIX_TRANSFORM_THREADS", "-1"),
    ("PROMPTPIX_TRANSFORM_QUEUE", "lots"),
    ("PROMPTPIX_MAX_SOURCE_PIXELS", "0"),
    ("PROMPTPIX_MEMORY_CACHE_MB", "big"),
    ("PROMPTPIX_SEMANTIC", "maybe"),
    ("PROMPTPIX_SEMANTIC_MAX_AGE", "soon"),
    ("PROMPTPIX_GENERATORS", "gemini,nosuch"),
    ("PROMPTPIX_LOCAL_RPM", "abc"),
    ("PROMPTPIX_LOCAL_LATENCY_MS", "-5"),
    ("PROMPTPIX_REFUSAL_FALLBACK", "maybe"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_value_names_its_variable_in_one_line(name: str, value: str) -> None:
    env = {name: value}
    if name == "PROMPTPIX_GENERATORS":
        env["GEMINI_API_KEY"] = "k"  # so that only the unknown id is wrong
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    message = str(caught.value)
    assert message.startswith(f"{name}: "), message
    assert "\n" not in message and value not in message.removeprefix(f"{name}: ")


def test_a_generator_without_its_credentials_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        Config.from_env({"PROMPTPIX_GENERATORS": "gemini,local"})
    run = serve({"PROMPTPIX_GENERATORS": "gemini,local"}, tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "promptpix: GEMINI_API_KEY: unset (nor GOOGLE_API_KEY), and PROMPTPIX_GENERATORS names "
        "gemini"
    ]


def serve(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = "import sys; from promptpix.gateway.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", command, "serve", "--port", "0"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(cwd),
    )


def test_serve_stops_with_one_line_on_a_bad_store(tmp_path: Path) -> None:
    """No server starts, no worker traceback: the reason, and exit status 2."""
    run = serve({"PROMPTPIX_STORE": "s3://pp/images"}, tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "promptpix: PROMPTPIX_STORE: not a valid bucket name: 3 to 63 lowercase "
        "letters, digits, dots and hyphens, starting and ending with a letter or digit"
    ]
    assert "Listening" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROMPTPIX_LOCAL_RPM", "abc"),
        ("PROMPTPIX_GENERATORS", "local,nosuch"),
        ("PROMPTPIX_SEMANTIC", "maybe"),
        ("PROMPTPIX_TRANSFORM_THREADS", "many"),
    ],
)
def test_serve_stops_before_it_listens_on_any_bad_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    run = serve({name: value}, tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"promptpix: {name}: "), lines
    assert "Traceback" not in run.stderr and not (tmp_path / "promptpix-data").exists()
