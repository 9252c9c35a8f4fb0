"""Configuration from the environment (`PROMPTPIX_*`), with defaults and validation."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from promptpix.cache.store import store_path
from promptpix.transforms.formats import FORMATS

DEFAULT_CACHE_CONTROL = "public, max-age=31536000, immutable"
DATABASE_SCHEMES = ("postgresql", "postgres")  # what asyncpg connects to


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "file://./promptpix-data"
    database_url: str = ""  # empty: the embedded SQLite index beside the file store
    spool_dir: str = "./promptpix-spool"  # local spool for a remote store's failed writes
    memory_cache_mb: int = 128
    source_cache_mb: int = 128
    max_dimension: int = 4096
    max_source_pixels: int = 50_000_000
    generation_timeout_s: float = 60.0
    default_format: str = "webp"
    cache_control: str = DEFAULT_CACHE_CONTROL
    transform_threads: int = 0  # 0: one per core
    transform_queue: int = -1  # -1: 32 per thread
    demo: str = "auto"  # auto: the public `demo` project exists while listening on loopback

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default: str) -> str:
            return env.get(f"PROMPTPIX_{name}", "").strip() or default

        def num(name: str, default: float, lo: float, hi: float) -> float:
            raw = get(name, str(default))
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"PROMPTPIX_{name} must be a number, not {raw!r}") from None
            if not lo <= value <= hi:
                raise ConfigError(f"PROMPTPIX_{name} must be within {lo:g}..{hi:g}")
            return value

        cfg = cls(
            host=get("HOST", d.host),
            port=int(num("PORT", d.port, 0, 65535)),
            store=get("STORE", d.store),
            database_url=get("DATABASE_URL", d.database_url),
            spool_dir=get("SPOOL_DIR", d.spool_dir),
            memory_cache_mb=int(num("MEMORY_CACHE_MB", d.memory_cache_mb, 0, 1 << 20)),
            source_cache_mb=int(num("SOURCE_CACHE_MB", d.source_cache_mb, 0, 1 << 20)),
            max_dimension=int(num("MAX_DIMENSION", d.max_dimension, 16, 16384)),
            max_source_pixels=int(num("MAX_SOURCE_PIXELS", d.max_source_pixels, 1, 1 << 31)),
            generation_timeout_s=num("GENERATION_TIMEOUT_S", d.generation_timeout_s, 0.1, 3600),
            default_format=get("DEFAULT_FORMAT", d.default_format),
            cache_control=get("CACHE_CONTROL", d.cache_control),
            transform_threads=int(num("TRANSFORM_THREADS", d.transform_threads, 0, 256)),
            transform_queue=int(num("TRANSFORM_QUEUE", d.transform_queue, -1, 100_000)),
            demo=get("DEMO", d.demo),
        )
        if cfg.default_format not in FORMATS:
            raise ConfigError(f"PROMPTPIX_DEFAULT_FORMAT must be one of {sorted(FORMATS)}")
        if cfg.demo not in ("auto", "on", "off"):
            raise ConfigError("PROMPTPIX_DEMO must be auto, on or off")
        try:
            store_path(cfg.store)
        except ValueError as exc:
            raise ConfigError(f"PROMPTPIX_STORE: {exc}") from None
        if cfg.database_url and urlsplit(cfg.database_url).scheme not in DATABASE_SCHEMES:
            raise ConfigError("PROMPTPIX_DATABASE_URL must be a postgresql:// URL")
        return cfg

    @property
    def demo_enabled(self) -> bool:
        return self.demo == "on" or (self.demo == "auto" and is_loopback(self.host))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
