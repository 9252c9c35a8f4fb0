"""The cache package's settings: the store, the database, the memory tiers, the semantic tier.

Every field names its environment variable (`rename`), has a default (so `CacheSettings()`
is the embedded setup: files under `./promptpix-data`, the embedded database beside them),
and is checked when the settings are made. `from_env` reads only these variables; no other
module of the package reads the environment. An error names the variable and what it must
be, never the value it has (a URL can hold a password).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from .storeurl import store_path

DATABASE_SCHEMES = ("postgresql", "postgres")  # what asyncpg connects to
Megabytes = Annotated[int, msgspec.Meta(ge=0, le=1 << 20)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=31_536_000)]
Text = Annotated[str, msgspec.Meta(min_length=1)]

# A variable read when the one a field names is unset: the AWS SDKs' own names.
FALLBACKS = {"PROMPTPIX_S3_ENDPOINT": "AWS_ENDPOINT_URL", "AWS_REGION": "AWS_DEFAULT_REGION"}
SWITCHES = {
    **dict.fromkeys(("on", "1", "true", "yes"), True),
    **dict.fromkeys(("off", "0", "false", "no"), False),
}


class S3Settings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "endpoint": "PROMPTPIX_S3_ENDPOINT",
        "region": "AWS_REGION",
        "access_key": "AWS_ACCESS_KEY_ID",
        "secret_key": "AWS_SECRET_ACCESS_KEY",
    },
):
    """An S3 store's server and credentials; empty: the AWS defaults (region us-east-1,
    botocore's own credential chain)."""

    endpoint: str = ""  # MinIO, R2, SeaweedFS: http(s)://host:port
    region: str = ""
    access_key: str = ""
    secret_key: str = ""

    def __post_init__(self) -> None:
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("PROMPTPIX_S3_ENDPOINT: must be an http:// or https:// URL")


class SemanticSettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "enabled": "PROMPTPIX_SEMANTIC",
        "directory": "PROMPTPIX_SEMANTIC_DIR",
        "demo_reuse": "PROMPTPIX_SEMANTIC_REUSE",
        "max_age_s": "PROMPTPIX_SEMANTIC_MAX_AGE",
    },
):
    enabled: bool = True
    # Where the sidecar file lives; empty: `semantic/` under a file store's root, or
    # `./promptpix-semantic` with another store (`CacheSettings.semantic_directory`).
    directory: str = ""
    demo_reuse: bool = False  # the demo project serves matches of cosine >= 0.85 first
    max_age_s: Seconds = 300  # the max-age of a SIMILAR answer

    @property
    def cache_control(self) -> str:
        return f"public, max-age={self.max_age_s}"


class CacheSettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "store": "PROMPTPIX_STORE",
        "database_url": "PROMPTPIX_DATABASE_URL",
        "spool_dir": "PROMPTPIX_SPOOL_DIR",
        "memory_cache_mb": "PROMPTPIX_MEMORY_CACHE_MB",
        "source_cache_mb": "PROMPTPIX_SOURCE_CACHE_MB",
    },
):
    store: str = "file://./promptpix-data"  # file:///path (or a path) or s3://bucket/prefix
    database_url: str = ""  # postgresql://...; empty: the embedded database
    spool_dir: Text = "./promptpix-spool"  # a remote store's writes that failed, kept here
    memory_cache_mb: Megabytes = 128  # answers (variants) kept in memory
    source_cache_mb: Megabytes = 128  # originals kept in memory, encoded and decoded
    s3: S3Settings = msgspec.field(default_factory=S3Settings)
    semantic: SemanticSettings = msgspec.field(default_factory=SemanticSettings)

    def __post_init__(self) -> None:
        try:
            store_path(self.store)
        except ValueError as exc:
            raise ValueError(f"PROMPTPIX_STORE: {exc}") from None
        if self.database_url and urlsplit(self.database_url).scheme not in DATABASE_SCHEMES:
            raise ValueError("PROMPTPIX_DATABASE_URL: must be a postgresql:// or postgres:// URL")

    @property
    def store_root(self) -> Path | None:
        """A file store's directory; None for S3."""
        return store_path(self.store)

    @property
    def semantic_directory(self) -> Path:
        if self.semantic.directory:
            return Path(self.semantic.directory).expanduser().resolve()
        root = self.store_root
        return root / "semantic" if root is not None else Path("promptpix-semantic").resolve()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CacheSettings:
        """The settings from these variables (stripped; an empty one is unset). ValueError
        names the variable that is wrong, in one line."""
        read: dict[str, str] = {}  # a field's name -> the variable its value came from
        values = _pick(cls, env, read)
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(_explain(cls, str(exc), read)) from None


def _pick(cls: type[msgspec.Struct], env: Mapping[str, str], read: dict[str, str]) -> Any:
    """The struct's variables that are set, nested structs as nested dicts; on/off as bools."""
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        name = field.encode_name
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            values[name] = _pick(field.type, env, read)
            continue
        for variable in (name, FALLBACKS.get(name, "")):
            raw = env.get(variable, "").strip() if variable else ""
            if raw:
                read[name] = variable
                values[name] = SWITCHES.get(raw.lower(), raw) if field.type is bool else raw
                break
    return values


def _explain(cls: type[msgspec.Struct], message: str, read: Mapping[str, str]) -> str:
    """msgspec's error as `VARIABLE: what it must be`, without the value it quotes."""
    what, at, where = message.rpartition(" - at `$")
    if not at:  # about the whole struct
        what = message
    field = where.rstrip("`").rpartition(".")[2]
    expected = _expectations(msgspec.inspect.type_info(cls))
    if field in expected:  # a field's own check
        return f"{read.get(field, field)}: {expected[field]}"
    variable, _, rest = what.partition(":")  # a __post_init__ check, already in these terms
    return f"{read.get(variable, variable)}:{rest}"


def _expectations(struct: msgspec.inspect.Type) -> dict[str, str]:
    """Each variable's rule in words, from the struct's fields."""
    found: dict[str, str] = {}
    assert isinstance(struct, msgspec.inspect.StructType)
    for field in struct.fields:
        kind = field.type
        if isinstance(kind, msgspec.inspect.StructType):
            found |= _expectations(kind)
        elif isinstance(kind, msgspec.inspect.BoolType):
            found[field.encode_name] = "must be on or off"
        elif isinstance(kind, msgspec.inspect.IntType):
            found[field.encode_name] = f"must be a whole number from {kind.ge} to {kind.le}"
        elif isinstance(kind, msgspec.inspect.StrType) and kind.min_length:
            found[field.encode_name] = "must not be empty"
        else:
            found[field.encode_name] = "is not valid"
    return found
