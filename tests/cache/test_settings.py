"""The cache package's settings from the environment: each variable read, each bad value
refused in one line that names the variable and never repeats the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptpix.cache.backends import build_backends
from promptpix.cache.filestore import FileStore
from promptpix.cache.leases import FileLeases
from promptpix.cache.pgleases import PgLeases
from promptpix.cache.postgres import Postgres
from promptpix.cache.s3store import S3Store
from promptpix.cache.settings import CacheSettings, S3Settings, SemanticSettings
from promptpix.cache.spool import SpooledStore
from promptpix.cache.sqlite import SQLiteDatabase

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t"  # in every bad value below: no message may repeat it


def test_nothing_set_is_the_embedded_default() -> None:
    assert CacheSettings.from_env({}) == CacheSettings()
    blank = {"PROMPTPIX_STORE": "  ", "PROMPTPIX_SEMANTIC": "", "AWS_REGION": "\t"}
    assert CacheSettings.from_env(blank) == CacheSettings()
    default = CacheSettings()
    assert default.store_root == Path("promptpix-data").resolve()
    assert default.semantic.enabled and not default.semantic.demo_reuse
    assert default.semantic.cache_control == "public, max-age=300"


def test_every_variable_is_read() -> None:
    settings = CacheSettings.from_env(
        {
            "PROMPTPIX_STORE": " s3://my.bucket-01/images ",
            "PROMPTPIX_DATABASE_URL": "postgresql://promptpix:pw@db:5432/promptpix",
            "PROMPTPIX_SPOOL_DIR": "/var/spool/promptpix",
            "PROMPTPIX_S3_ENDPOINT": "http://127.0.0.1:8333",
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "PROMPTPIX_MEMORY_CACHE_MB": "0",
            "PROMPTPIX_SOURCE_CACHE_MB": "512",
            "PROMPTPIX_SEMANTIC": "OFF",
            "PROMPTPIX_SEMANTIC_DIR": "/srv/semantic",
            "PROMPTPIX_SEMANTIC_REUSE": "1",
            "PROMPTPIX_SEMANTIC_MAX_AGE": "60",
            "PROMPTPIX_PORT": "9000",  # not the cache's: left alone
        }
    )
    assert settings == CacheSettings(
        store="s3://my.bucket-01/images",
        database_url="postgresql://promptpix:pw@db:5432/promptpix",
        spool_dir="/var/spool/promptpix",
        memory_cache_mb=0,
        source_cache_mb=512,
        s3=S3Settings(
            endpoint="http://127.0.0.1:8333",
            region="eu-west-1",
            access_key="key",
            secret_key="secret",
        ),
        semantic=SemanticSettings(
            enabled=False, directory="/srv/semantic", demo_reuse=True, max_age_s=60
        ),
    )
    assert settings.store_root is None
    assert settings.semantic.cache_control == "public, max-age=60"


def test_the_aws_sdks_own_names_stand_in() -> None:
    settings = CacheSettings.from_env(
        {"AWS_ENDPOINT_URL": "https://s3.example", "AWS_DEFAULT_REGION": "us-west-2"}
    )
    assert settings.s3 == S3Settings(endpoint="https://s3.example", region="us-west-2")
    both = CacheSettings.from_env(
        {"PROMPTPIX_S3_ENDPOINT": "http://a:1", "AWS_ENDPOINT_URL": "http://b:2"}
    )
    assert both.s3.endpoint == "http://a:1"


@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        *[("on", True), ("1", True), ("true", True), ("Yes", True)],
        *[("off", False), ("0", False), ("FALSE", False), ("no", False)],
    ],
)
def test_switches(value: str, enabled: bool) -> None:
    settings = CacheSettings.from_env(
        {"PROMPTPIX_SEMANTIC": value, "PROMPTPIX_SEMANTIC_REUSE": value}
    )
    assert settings.semantic.enabled is enabled and settings.semantic.demo_reuse is enabled


def test_where_the_semantic_sidecar_lives(tmp_path: Path) -> None:
    on_files = CacheSettings(store=f"file://{tmp_path}/data")
    assert on_files.semantic_directory == tmp_path / "data" / "semantic"
    on_s3 = CacheSettings(store="s3://bucket/images")
    assert on_s3.semantic_directory == Path("promptpix-semantic").resolve()
    chosen = CacheSettings(store="s3://bucket", semantic=SemanticSettings(directory=str(tmp_path)))
    assert chosen.semantic_directory == tmp_path


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PROMPTPIX_STORE", f"ftp://user:{SECRET}@host/dir", "unsupported store URL"),
        ("PROMPTPIX_STORE", f"s3:///{SECRET}", "needs a bucket"),
        ("PROMPTPIX_STORE", f"s3://user:{SECRET}@bucket/x", "not a valid bucket name"),
        ("PROMPTPIX_STORE", f"s3://{SECRET.upper()}/images", "not a valid bucket name"),
        ("PROMPTPIX_STORE", "s3://10.0.0.1/images", "not a valid bucket name"),
        ("PROMPTPIX_STORE", "s3://a..b", "not a valid bucket name"),
        ("PROMPTPIX_DATABASE_URL", f"mysql://user:{SECRET}@db/x", "postgresql://"),
        ("PROMPTPIX_DATABASE_URL", f"db:5432/{SECRET}", "postgresql://"),
        ("PROMPTPIX_S3_ENDPOINT", f"ftp://{SECRET}", "http:// or https://"),
        ("PROMPTPIX_S3_ENDPOINT", f"{SECRET}:9000", "http:// or https://"),
        ("AWS_ENDPOINT_URL", f"{SECRET}.example", "http:// or https://"),
        ("PROMPTPIX_MEMORY_CACHE_MB", f"{SECRET}", "whole number from 0 to 1048576"),
        ("PROMPTPIX_MEMORY_CACHE_MB", "-1", "whole number from 0 to 1048576"),
        ("PROMPTPIX_MEMORY_CACHE_MB", "1.5", "whole number"),
        ("PROMPTPIX_SOURCE_CACHE_MB", "1048577", "whole number from 0 to 1048576"),
        ("PROMPTPIX_SEMANTIC", "maybe", "must be on or off"),
        ("PROMPTPIX_SEMANTIC", SECRET, "must be on or off"),
        ("PROMPTPIX_SEMANTIC_REUSE", "perhaps", "must be on or off"),
        ("PROMPTPIX_SEMANTIC_MAX_AGE", "five minutes", "whole number from 0 to 31536000"),
        ("PROMPTPIX_SEMANTIC_MAX_AGE", "-5", "whole number from 0 to 31536000"),
        ("PROMPTPIX_SEMANTIC_MAX_AGE", "99999999999", "whole number from 0 to 31536000"),
    ],
)
def test_bad_values_are_refused_by_name(variable: str, value: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        CacheSettings.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}: ") and says in message, message
    assert "\n" not in message and value not in message
    assert SECRET not in message.lower()
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_settings_made_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match=r"^PROMPTPIX_STORE: "):
        CacheSettings(store="ftp://host/dir")
    with pytest.raises(ValueError, match=r"^PROMPTPIX_DATABASE_URL: "):
        CacheSettings(database_url="mysql://db/x")
    with pytest.raises(ValueError, match=r"^PROMPTPIX_S3_ENDPOINT: "):
        S3Settings(endpoint="localhost:9000")


def test_the_embedded_backends(tmp_path: Path) -> None:
    backends = build_backends(CacheSettings(store=f"file://{tmp_path}"))
    assert isinstance(backends.store, FileStore) and backends.store.root == tmp_path
    assert isinstance(backends.database, SQLiteDatabase)
    assert backends.database.path == tmp_path / "index.sqlite3"
    assert isinstance(backends.leases, FileLeases) and backends.spool is None
    assert not backends.lookup_index


def test_the_remote_backends(tmp_path: Path) -> None:
    settings = CacheSettings.from_env(
        {
            "PROMPTPIX_STORE": "s3://images/p",
            "PROMPTPIX_S3_ENDPOINT": "http://127.0.0.1:1",
            "PROMPTPIX_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
            "PROMPTPIX_SPOOL_DIR": str(tmp_path / "spool"),
        }
    )
    backends = build_backends(settings)  # nothing is connected to until used
    spool = backends.spool
    assert isinstance(spool, SpooledStore) and backends.store is spool
    assert isinstance(spool.primary, S3Store) and spool.primary.bucket == "images"
    assert spool.primary.prefix == "p" and spool.primary.endpoint == "http://127.0.0.1:1"
    assert spool.spool.root == tmp_path / "spool"
    assert isinstance(backends.database, Postgres) and isinstance(backends.leases, PgLeases)
    assert backends.lookup_index


def test_no_module_of_the_package_reads_the_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "cache").rglob("*.py"))
        if any(word in path.read_text() for word in ("os.environ", "getenv", "environ["))
    ]
    assert readers == []
