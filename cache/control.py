"""The control plane's records (projects, API keys, signing secrets, usage) and the protocol
of their store, `ControlStore`, which PostgreSQL and the embedded database both implement.

A record is what the gateway uses directly: `Project("demo")` is the embedded demo project.
Nothing here holds an API key's text or hash; only `ControlStore.load` fills a project's
signing secrets, which `repr` never shows.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal, Protocol

import msgspec

SCOPES = ("generate", "read", "assets")
SIGNING = ("off", "required", "generation")
ON_FAILURE = ("placeholder", "error")
# The project's fields that `update_project` may change.
CHANGEABLE = frozenset(
    {
        "name",
        "style",
        "system_prompt",
        "signing",
        "quota",
        "rate_limit",
        "budget",
        "generators",
        "enhance",
        "semantic_reuse",
        "on_failure",
    }
)
MICRO = 1_000_000  # USD are kept as whole micro-dollars: exact sums, whatever the count
PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")

Slug = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Name = Annotated[str, msgspec.Meta(max_length=200)]
StyleName = Annotated[str, msgspec.Meta(max_length=100)]
SystemPrompt = Annotated[str, msgspec.Meta(max_length=10_000)]
GeneratorId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Generations = Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]
PerMinute = Annotated[int, msgspec.Meta(ge=1, le=1 << 30)]
Usd = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
Signing = Literal["off", "required", "generation"]
OnFailure = Literal["placeholder", "error"]
Scope = Literal["generate", "read", "assets"]


class ControlError(Exception):
    """A refusal of the control store, with what the gateway answers it with."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


class InvalidProject(ControlError, ValueError):
    """A project's field (`param`) or an argument is out of its rule."""


class ProjectNotFound(ControlError, LookupError):
    status, code = 404, "unknown_project"


class ProjectExists(ControlError):
    status, code = 409, "project_exists"


class LastSecret(ControlError):
    """The only signing secret of a project that signs: it would verify nothing after."""

    status, code = 409, "last_signing_secret"


class Project(msgspec.Struct, frozen=True):
    slug: Slug
    name: Name = ""
    style: StyleName = ""  # the default style, "" for none
    system_prompt: SystemPrompt = ""
    signing: Signing = "off"
    quota: Generations | None = None  # generations a month
    rate_limit: PerMinute | None = None  # misses a minute per client
    budget: Usd | None = None  # USD a month
    generators: tuple[GeneratorId, ...] | None = None  # None: the whole chain, in its order
    enhance: bool = False
    semantic_reuse: bool = False
    on_failure: OnFailure = "placeholder"
    style_version: int = 1  # raised by every change to `style` or `system_prompt`
    created_at: int = 0  # unix seconds
    updated_at: int = 0
    secrets: tuple[str, ...] = ()  # the signing secrets' texts: filled by `load` only

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__struct_fields__
            if name != "secrets"
        )
        return f"Project({shown}, secrets=<{len(self.secrets)} hidden>)"


class ApiKey(msgspec.Struct, frozen=True):
    """A key's public part: never the key's text, nor its hash."""

    id: str
    project: str
    name: str
    scopes: tuple[Scope, ...]
    created_at: int
    revoked_at: int | None = None


class SigningSecret(msgspec.Struct, frozen=True):
    """A signing secret as listed: its id and age, never its text."""

    id: str
    created_at: int


class Reservation(msgspec.Struct, frozen=True):
    """The answer of `reserve`: one generation of the project's month, held or refused.

    `remaining` is how many generations the quota leaves (after this one when granted),
    None without a quota; `stopped_by` says which limit refused it."""

    id: str
    project: str
    period: str
    granted: bool
    micro_usd: int  # the price held, in micro-dollars
    remaining: int | None = None
    stopped_by: Literal["quota", "budget"] | None = None


class Usage(msgspec.Struct, frozen=True):
    period: str
    generations: int = 0
    estimated_usd: float = 0.0
    by_generator: dict[str, tuple[int, float]] = {}  # id -> (generations, estimated_usd)


class RateDecision(msgspec.Struct, frozen=True):
    allowed: bool
    retry_after_s: float = 0.0  # when refused: until the window has a place again
    remaining: int = 0  # places left in the window after this hit


class ControlStore(Protocol):
    """Projects, signing secrets, API keys, and the counters that enforce their limits."""

    async def start(self) -> None: ...

    async def version(self) -> int:
        """Changes, in the same transaction, with every write to a project, secret or key."""
        ...

    async def create_project(self, project: Project) -> tuple[Project, str | None]: ...

    async def list_projects(self) -> list[Project]: ...

    async def get_project(self, slug: str) -> Project | None: ...

    async def load(self, slug: str) -> Project | None: ...

    async def update_project(self, slug: str, /, **changes: Any) -> tuple[Project, str | None]: ...

    async def add_secret(self, slug: str) -> tuple[str, str]: ...

    async def delete_secret(self, slug: str, secret_id: str) -> bool: ...

    async def list_secrets(self, slug: str) -> list[SigningSecret]: ...

    async def create_key(
        self, slug: str, name: str, scopes: Sequence[str]
    ) -> tuple[ApiKey, str]: ...

    async def find_key(self, key_text: str) -> ApiKey | None: ...

    async def list_keys(self, slug: str) -> list[ApiKey]: ...

    async def revoke_key(self, slug: str, key_id: str) -> bool: ...

    async def reserve(
        self,
        slug: str,
        period: str,
        price_usd: float | Decimal,
        quota: int | None,
        budget: float | Decimal | None,
    ) -> Reservation: ...

    async def release(self, reservation: Reservation) -> bool: ...

    async def settle(
        self, reservation: Reservation, generator: str, price_usd: float | Decimal
    ) -> bool: ...

    async def record(self, slug: str, period: str, generator: str, price_usd: float) -> None:
        """Count a generation of a project with no quota and no budget: nothing was held."""
        ...

    async def usage(self, slug: str, period: str) -> Usage: ...

    async def hit_rate(self, slug: str, client: str, limit: int | None, now: float) -> RateDecision:
        """A miss of `client` against the project's limit a minute (None: no limit)."""
        ...

    async def close(self) -> None: ...


def checked(project: Project) -> Project:
    """The project if every field keeps its rule, else InvalidProject naming the field."""
    fields = msgspec.to_builtins(project)
    try:
        return msgspec.convert(fields, Project)
    except msgspec.ValidationError as exc:
        what, _, where = str(exc).rpartition(" - at `$.")
        param = where.rstrip("`").split("[")[0].split(".")[0] or None
        raise InvalidProject(f"{param}: {what or exc}", param) from None


def changed(project: Project, changes: dict[str, Any], now: int) -> Project:
    """The project with `changes` applied and checked; `style_version` raised when the
    style or the system prompt is another."""
    for name in changes:
        if name not in CHANGEABLE:
            raise InvalidProject(f"{name}: is not a field that can be changed", name)
    new = checked(msgspec.structs.replace(project, **changes, updated_at=now))
    if (new.style, new.system_prompt) != (project.style, project.system_prompt):
        new = msgspec.structs.replace(new, style_version=project.style_version + 1)
    return new


def checked_scopes(scopes: Sequence[str]) -> tuple[Scope, ...]:
    """The scopes in their canonical order, or InvalidProject(`scopes`)."""
    if isinstance(scopes, str) or not scopes or any(s not in SCOPES for s in scopes):
        raise InvalidProject(f"scopes: must be a non-empty subset of {', '.join(SCOPES)}", "scopes")
    return tuple(s for s in ("generate", "read", "assets") if s in scopes)


def micro_usd(usd: float | Decimal | None, param: str = "price_usd") -> int | None:
    """USD as whole micro-dollars (half up), None for None; InvalidProject if negative."""
    if usd is None:
        return None
    if isinstance(usd, bool) or not isinstance(usd, float | int | Decimal):
        raise InvalidProject(f"{param}: must be a number of USD", param)
    exact = Decimal(str(usd)) if isinstance(usd, float) else Decimal(usd)
    if not exact.is_finite() or exact < 0:
        raise InvalidProject(f"{param}: must be a number of USD, 0 or more", param)
    return int((exact * MICRO).to_integral_value(ROUND_HALF_UP))


def usd(micro: int) -> float:
    return micro / MICRO


def check_period(period: str) -> str:
    if not isinstance(period, str) or not PERIOD.match(period):
        raise InvalidProject("period: must be YYYY-MM", "period")
    return period


def current_period(now: float | None = None) -> str:
    """The month (UTC) that quotas and budgets count in, `YYYY-MM`."""
    return time.strftime("%Y-%m", time.gmtime(time.time() if now is None else now))


def period_end(period: str) -> int:
    """The unix second the period's month ends (UTC): where a quota's Retry-After points."""
    year, month = (int(part) for part in check_period(period).split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))
