"""Configuration from the environment: a setting the gateway cannot use stops it at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from promptpix.gateway.config import Config, ConfigError


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
    assert Config.from_env({"PROMPTPIX_STORE": store}).store == store


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
    assert Config.from_env({"PROMPTPIX_DATABASE_URL": dsn}).database_url == dsn
    assert Config.from_env({"PROMPTPIX_DATABASE_URL": "postgres://db/x"}).database_url
    for wrong in ("mysql://db/x", "db:5432/promptpix"):
        with pytest.raises(ConfigError, match="PROMPTPIX_DATABASE_URL"):
            Config.from_env({"PROMPTPIX_DATABASE_URL": wrong})


def test_serve_stops_with_one_line_on_a_bad_store(tmp_path: Path) -> None:
    """No server starts, no worker traceback: the reason, and exit status 2."""
    command = "import sys; from promptpix.gateway.cli import main; sys.exit(main())"
    run = subprocess.run(
        [sys.executable, "-c", command, "serve", "--port", "0"],
        env={"PROMPTPIX_STORE": "s3://pp/images", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "promptpix: PROMPTPIX_STORE: not a valid bucket name: 3 to 63 lowercase "
        "letters, digits, dots and hyphens, starting and ending with a letter or digit"
    ]
    assert "Listening" not in run.stdout + run.stderr
