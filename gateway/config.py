"""Configuration: every package's settings, composed here from the environment.

Each package reads its own variables (`promptpix.<package>.settings`); the gateway adds the
server's. A value any of them cannot use stops the gateway before it listens, with one line
that names the variable (never its value: values can be secrets).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec

from promptpix.cache.settings import CacheSettings
from promptpix.generators.settings import GeneratorSettings
from promptpix.transforms.settings import TransformSettings

from .clients import Network, parse_networks

DEFAULT_CACHE_CONTROL = "public, max-age=31536000, immutable"

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seconds = Annotated[float, msgspec.Meta(ge=0.1, le=3600)]
Dimension = Annotated[int, msgspec.Meta(ge=16, le=16384)]
UploadMegabytes = Annotated[int, msgspec.Meta(ge=1, le=1024)]
ProjectSlug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]

SERVER_ENV = {
    "host": "PROMPTPIX_HOST",
    "port": "PROMPTPIX_PORT",
    "cache_control": "PROMPTPIX_CACHE_CONTROL",
    "demo": "PROMPTPIX_DEMO",
    "generation_timeout_s": "PROMPTPIX_GENERATION_TIMEOUT_S",
    "max_dimension": "PROMPTPIX_MAX_DIMENSION",
    "default_format": "PROMPTPIX_DEFAULT_FORMAT",
    "fallback_cache_control": "PROMPTPIX_FALLBACK_CACHE_CONTROL",
    "admin_token": "PROMPTPIX_ADMIN_TOKEN",
    "trusted_proxies": "PROMPTPIX_TRUSTED_PROXIES",
    "public_url": "PROMPTPIX_PUBLIC_URL",
    "max_upload_mb": "PROMPTPIX_MAX_UPLOAD_MB",
    "v2_project": "PROMPTPIX_V2_PROJECT",
    "mcp_allowed_hosts": "PROMPTPIX_MCP_ALLOWED_HOSTS",
}
# The Host values `/mcp` answers (DNS-rebinding protection): `name`, `name:port`, `name:*`.
_HOST_PATTERN = re.compile(r"^(\*|(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}|\*))?)$")


class ConfigError(ValueError):
    """A setting the gateway cannot use; the message is one line naming the variable."""


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True, rename=SERVER_ENV):
    host: str = "127.0.0.1"
    port: Port = 8080
    cache_control: str = DEFAULT_CACHE_CONTROL  # of successful image answers
    demo: Literal["auto", "on", "off"] = "auto"  # auto: the public `demo` while on loopback
    generation_timeout_s: Seconds = 60.0  # how long a request waits for a generation
    max_dimension: Dimension = 4096  # largest `w`/`h`, and output side after `dpr`
    default_format: Literal["webp", "avif", "jpeg", "png"] = "webp"
    # The offline stand-in's answers, for generators that failed: kept a minute, not a year.
    fallback_cache_control: str = "public, max-age=60"
    admin_token: str = ""  # manages projects and keys over the API; empty: the CLI only
    trusted_proxies: str = ""  # CIDRs whose X-Forwarded-For is believed
    public_url: str = ""  # how pages reach the gateway (URLs it writes); "": the request's
    max_upload_mb: UploadMegabytes = 20  # largest asset upload (`POST /v1/assets`), in MiB
    v2_project: ProjectSlug = "demo"  # the project `/api/v2/generate` acts in
    # Host headers `/mcp` answers, comma-separated (`*`: any); the public URL's host is added.
    mcp_allowed_hosts: str = "127.0.0.1:*,localhost:*,[::1]:*"

    def __post_init__(self) -> None:
        try:
            parse_networks(self.trusted_proxies)
        except ValueError:
            raise ValueError(
                "PROMPTPIX_TRUSTED_PROXIES: must be IP addresses or CIDRs, comma-separated"
            ) from None
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ValueError("PROMPTPIX_PUBLIC_URL: must be an http:// or https:// URL")
        if not all(_HOST_PATTERN.match(h) for h in self.mcp_hosts):
            raise ValueError(
                "PROMPTPIX_MCP_ALLOWED_HOSTS: must be host names, host:port or host:*, "
                "comma-separated (or *)"
            )
        if self.admin_token and len(self.admin_token) < 16:
            raise ValueError("PROMPTPIX_ADMIN_TOKEN: must be 16 characters or more")

    @property
    def mcp_hosts(self) -> tuple[str, ...]:
        """The allowed Host values of `/mcp`, with the public URL's own."""
        hosts = [h.strip() for h in self.mcp_allowed_hosts.split(",") if h.strip()]
        if self.public_url:
            hosts.append(self.public_url.split("://", 1)[1].split("/", 1)[0])
        return tuple(dict.fromkeys(hosts))

    @property
    def proxies(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    def __repr__(self) -> str:
        return f"ServerSettings(host={self.host!r}, port={self.port}, admin_token=<hidden>)"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        values = {n: env[n].strip() for n in SERVER_ENV.values() if env.get(n, "").strip()}
        return msgspec.convert(values, cls, strict=False)


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSettings = field(default_factory=ServerSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    generators: GeneratorSettings = field(default_factory=GeneratorSettings)
    transforms: TransformSettings = field(default_factory=TransformSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Every package's settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        try:
            return cls(
                server=ServerSettings.from_env(env),
                cache=CacheSettings.from_env(env),
                generators=GeneratorSettings.from_env(env),
                transforms=TransformSettings.from_env(env),
            )
        except (msgspec.ValidationError, ValueError) as exc:
            raise ConfigError(one_line(exc)) from None

    @property
    def demo_enabled(self) -> bool:
        demo = self.server.demo
        return demo == "on" or (demo == "auto" and is_loopback(self.server.host))


_AT = re.compile(r"^(?P<what>.*) - at `\$\.(?P<name>[A-Za-z0-9_]+)`")


def one_line(exc: Exception) -> str:
    """`PROMPTPIX_X: what is wrong`, from msgspec's "Expected ... - at `$.PROMPTPIX_X`" or a
    package's own "PROMPTPIX_X: ..." message; never the value given."""
    text = " ".join(str(exc).split())
    found = _AT.match(text)
    if not found:
        return text
    name, what = found["name"], found["what"].replace("`", "")
    if what.startswith("Invalid enum value"):  # msgspec quotes the value: say the choices
        choices = _choices(name)
        what = f"must be one of {', '.join(choices)}" if choices else "not a value it takes"
    return f"{name}: {what[:1].lower()}{what[1:]}"


def _choices(name: str) -> list[str]:
    """The values a `Literal` setting named `name` takes, from the settings' own types."""
    pending: list[Any] = [ServerSettings, CacheSettings, GeneratorSettings, TransformSettings]
    while pending:
        kind = pending.pop()
        for f in msgspec.structs.fields(kind):
            inner = [f.type, *get_args(f.type)]
            pending.extend(
                t for t in inner if isinstance(t, type) and issubclass(t, msgspec.Struct)
            )
            if f.encode_name == name and get_origin(f.type) is Literal:
                return [str(v) for v in get_args(f.type)]
    return []


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
