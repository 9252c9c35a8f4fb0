"""The API's records: uploaded assets, generations (the history) and flows, and the protocol
of their store, `Library`, which PostgreSQL and the embedded database both implement.

An asset's bytes live in the object store under its id (the BLAKE3 of the bytes), beside the
originals; its row here says which project holds it, under which alias. A generation's row
keeps the answer it was given (or its error) as JSON, with the columns history filters on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

ALIAS = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_PAGE = 100

Status = Literal["queued", "running", "completed", "failed"]


class Asset(msgspec.Struct, frozen=True):
    project: str
    id: str  # BLAKE3 of the bytes, 64 hex digits: its key in the object store
    content_type: str
    width: int
    height: int
    bytes: int
    alias: str | None = None
    focal_x: float = 0.5
    focal_y: float = 0.5
    created_at: float = 0.0


class GenerationRecord(msgspec.Struct):
    id: str
    project: str
    status: Status
    created_at: float
    original_key: str = ""  # "" until known
    flow_id: str | None = None
    parent_id: str | None = None  # the flow's step before this one
    generator: str = ""
    aliases: list[str] = msgspec.field(default_factory=list)  # the assets' aliases it named
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    answer: dict[str, Any] = msgspec.field(default_factory=dict)  # the API's answer, or error
    seq: int = 0  # the store's order: higher is newer (0 until stored)


class Flow(msgspec.Struct, frozen=True):
    id: str
    project: str
    name: str = ""
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class History:
    """What `Library.generations` filters on (every given field must hold)."""

    flow_id: str | None = None
    alias: str | None = None
    generator: str | None = None
    since: float | None = None  # created_at >= since (Unix seconds)
    until: float | None = None  # created_at < until
    metadata: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # KEY=VALUE, all


class Library(Protocol):
    kind: str

    async def start(self) -> None: ...

    # Assets
    async def put_asset(self, asset: Asset) -> Asset:
        """Record an upload. The same bytes again keep their row (and created_at); a given
        alias moves to this asset from whichever asset of the project had it. Answers the
        row as stored."""
        ...

    async def asset(self, project: str, id: str) -> Asset | None: ...

    async def asset_by_alias(self, project: str, alias: str) -> Asset | None: ...

    async def assets(
        self, project: str, limit: int, before: tuple[float, str] | None = None
    ) -> list[Asset]:
        """Newest first; `before` is the (created_at, id) of the last one already seen."""
        ...

    async def delete_asset(self, project: str, id: str) -> bool:
        """Remove the row (and its alias with it); False if there was none. The bytes stay
        in the object store: originals made with them keep their key's meaning."""
        ...

    # Generations
    async def add_generation(self, record: GenerationRecord) -> GenerationRecord:
        """Insert; answers the record with its `seq`."""
        ...

    async def add_generations(self, records: Sequence[GenerationRecord]) -> None:
        """Insert several in one transaction (their `seq`s are not answered)."""
        ...

    async def update_generation(self, record: GenerationRecord) -> None:
        """Replace the status, original_key, generator, aliases and answer of `record.id`."""
        ...

    async def generation(self, project: str, id: str) -> GenerationRecord | None: ...

    async def generations(
        self, project: str, filters: History, limit: int, before_seq: int | None = None
    ) -> list[GenerationRecord]:
        """Newest first (by `seq`), only those with `seq < before_seq` when given."""
        ...

    # Flows
    async def add_flow(self, flow: Flow) -> Flow: ...

    async def flow(self, project: str, id: str) -> Flow | None: ...

    async def flow_steps(self, project: str, flow_id: str) -> list[GenerationRecord]:
        """The flow's generations, oldest first."""
        ...

    # Warm jobs (`/v1/warm`): a job's state as JSON, replaced whole as it moves on
    async def put_warm_job(self, project: str, id: str, state: dict[str, Any]) -> None: ...

    async def warm_job(self, project: str, id: str) -> dict[str, Any] | None: ...

    async def close(self) -> None: ...
