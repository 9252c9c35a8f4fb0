"""The library's transactions (assets, generations, flows, warm jobs), written once for both
databases.

They are `controltx` transactions: generators of `(sql, args)` with `$n` parameters, run by
`pgcontrol.run` or `sqlitecontrol.run`. Only what the two databases spell differently takes
the dialect: a JSON array's membership, a JSON object's field, and the lock that makes a
project's aliased uploads take turns in PostgreSQL (SQLite's writers already do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson

from .controltx import Tx
from .library import MAX_PAGE, METADATA_KEY, Asset, Flow, GenerationRecord, History

Dialect = Literal["postgresql", "sqlite"]

ASSET_COLUMNS = (
    "project, id, alias, content_type, width, height, bytes, focal_x, focal_y, created_at"
)
GENERATION_FIELDS = (
    "id, project, status, original_key, flow_id, parent_id, generator, aliases, metadata, "
    "answer, created_at"
)
GENERATION_COLUMNS = GENERATION_FIELDS + ", seq"  # `seq` is the database's to give
FLOW_COLUMNS = "id, project, name, created_at"


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def page_size(limit: int) -> int:
    """At most a page of the API and one more: the one more says whether a next page exists."""
    return max(0, min(int(limit), MAX_PAGE + 1))


# --- assets --------------------------------------------------------------------------------


def asset_from_row(row: Sequence[Any]) -> Asset:
    project, asset_id, alias, content_type, width, height, size, fx, fy, created_at = row
    return Asset(
        project=project,
        id=asset_id,
        alias=alias,
        content_type=content_type,
        width=int(width),
        height=int(height),
        bytes=int(size),
        focal_x=float(fx),
        focal_y=float(fy),
        created_at=float(created_at),
    )


def put_asset(asset: Asset, now: float, dialect: Dialect) -> Tx[Asset]:
    """The alias (if given) leaves whichever other asset of the project had it, then the row
    goes in; the same bytes again keep their row and created_at, and take the alias."""
    if asset.alias is not None:
        if dialect == "postgresql":
            # Aliased uploads of a project take turns. Two under one alias at once would
            # each clear it before the other's row is visible, and the second insert break
            # the unique index; two swapping aliases would lock each other's rows crosswise.
            yield (
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                (f"promptpix.aliases/{asset.project}",),
            )
        yield (
            "UPDATE assets SET alias = NULL WHERE project = $1 AND alias = $2 AND id <> $3",
            (asset.project, asset.alias, asset.id),
        )
    marks = ", ".join(f"${i}" for i in range(1, 11))
    rows = yield (
        f"INSERT INTO assets ({ASSET_COLUMNS}) VALUES ({marks}) "
        "ON CONFLICT (project, id) DO UPDATE SET alias = COALESCE(excluded.alias, assets.alias) "
        f"RETURNING {ASSET_COLUMNS}",
        (
            asset.project,
            asset.id,
            asset.alias,
            asset.content_type,
            asset.width,
            asset.height,
            asset.bytes,
            float(asset.focal_x),
            float(asset.focal_y),
            float(asset.created_at or now),
        ),
    )
    return asset_from_row(rows[0])


def get_asset(project: str, asset_id: str) -> Tx[Asset | None]:
    rows = yield (
        f"SELECT {ASSET_COLUMNS} FROM assets WHERE project = $1 AND id = $2",
        (project, asset_id),
    )
    return asset_from_row(rows[0]) if rows else None


def asset_by_alias(project: str, alias: str) -> Tx[Asset | None]:
    rows = yield (
        f"SELECT {ASSET_COLUMNS} FROM assets WHERE project = $1 AND alias = $2",
        (project, alias),
    )
    return asset_from_row(rows[0]) if rows else None


def list_assets(project: str, limit: int, before: tuple[float, str] | None) -> Tx[list[Asset]]:
    """Newest first, ties by id (the order of the `assets_newest` index)."""
    where = "project = $1"
    args: list[Any] = [project]
    if before is not None:
        where += " AND (created_at < $2 OR (created_at = $2 AND id > $3))"
        args += [float(before[0]), before[1]]
    rows = yield (
        f"SELECT {ASSET_COLUMNS} FROM assets WHERE {where} "
        f"ORDER BY created_at DESC, id LIMIT ${len(args) + 1}",
        (*args, page_size(limit)),
    )
    return [asset_from_row(r) for r in rows]


def delete_asset(project: str, asset_id: str) -> Tx[bool]:
    rows = yield (
        "DELETE FROM assets WHERE project = $1 AND id = $2 RETURNING id",
        (project, asset_id),
    )
    return bool(rows)


# --- generations ---------------------------------------------------------------------------


def generation_from_row(row: Sequence[Any]) -> GenerationRecord:
    gen_id, project, status, original_key, flow_id, parent_id, generator = row[:7]
    aliases, metadata, answer, created_at, seq = row[7:]
    return GenerationRecord(
        id=gen_id,
        project=project,
        status=status,
        created_at=float(created_at),
        original_key=original_key,
        flow_id=flow_id,
        parent_id=parent_id,
        generator=generator,
        aliases=orjson.loads(aliases),
        metadata=orjson.loads(metadata),
        answer=orjson.loads(answer),
        seq=int(seq),
    )


def add_generation(record: GenerationRecord, now: float) -> Tx[GenerationRecord]:
    rows = yield (
        f"INSERT INTO api_generations ({GENERATION_FIELDS}) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        f"RETURNING {GENERATION_COLUMNS}",
        _generation_args(record, now),
    )
    return generation_from_row(rows[0])


def add_generations(records: Sequence[GenerationRecord], now: float) -> Tx[None]:
    """Several records in one transaction (a group commit: one commit for many answers)."""
    for record in records:
        yield (
            f"INSERT INTO api_generations ({GENERATION_FIELDS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            _generation_args(record, now),
        )


def _generation_args(record: GenerationRecord, now: float) -> tuple[object, ...]:
    return (
        record.id,
        record.project,
        record.status,
        record.original_key,
        record.flow_id,
        record.parent_id,
        record.generator,
        json_text(record.aliases),
        json_text(record.metadata),
        json_text(record.answer),
        float(record.created_at or now),
    )


def update_generation(record: GenerationRecord) -> Tx[None]:
    yield (
        "UPDATE api_generations SET status = $3, original_key = $4, generator = $5, "
        "aliases = $6, answer = $7 WHERE id = $1 AND project = $2",
        (
            record.id,
            record.project,
            record.status,
            record.original_key,
            record.generator,
            json_text(record.aliases),
            json_text(record.answer),
        ),
    )


def get_generation(project: str, gen_id: str) -> Tx[GenerationRecord | None]:
    rows = yield (
        f"SELECT {GENERATION_COLUMNS} FROM api_generations WHERE id = $1 AND project = $2",
        (gen_id, project),
    )
    return generation_from_row(rows[0]) if rows else None


def history_where(
    project: str, filters: History, before_seq: int | None, dialect: Dialect
) -> tuple[str, list[Any]]:
    """The WHERE clause of a history page and its arguments (every filter given must hold)."""
    clauses = ["project = $1"]
    args: list[Any] = [project]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters.flow_id is not None:
        clauses.append(f"flow_id = {arg(filters.flow_id)}")
    if filters.alias is not None:
        if dialect == "postgresql":
            clauses.append(f"aliases ? {arg(filters.alias)}")
        else:
            clauses.append(
                f"EXISTS (SELECT 1 FROM json_each(aliases) WHERE value = {arg(filters.alias)})"
            )
    if filters.generator is not None:
        clauses.append(f"generator = {arg(filters.generator)}")
    if filters.since is not None:
        clauses.append(f"created_at >= {arg(float(filters.since))}")
    if filters.until is not None:
        clauses.append(f"created_at < {arg(float(filters.until))}")
    for key, value in filters.metadata:
        if not METADATA_KEY.match(key):
            raise ValueError(f"metadata key {key[:64]!r}: not a key")
        if dialect == "postgresql":
            field = f"metadata->>CAST({arg(key)} AS text)"
        else:
            # The JSON path is an argument too: a `$` in the statement would be read as one.
            # The key is quoted in it, so that `.` and `-` in a key are plain characters.
            path = '$."' + key + '"'
            field = f"json_extract(metadata, {arg(path)})"
        clauses.append(f"{field} = {arg(value)}")
    if before_seq is not None:
        clauses.append(f"seq < {arg(int(before_seq))}")
    return " AND ".join(clauses), args


def history(
    project: str, filters: History, limit: int, before_seq: int | None, dialect: Dialect
) -> Tx[list[GenerationRecord]]:
    where, args = history_where(project, filters, before_seq, dialect)
    rows = yield (
        f"SELECT {GENERATION_COLUMNS} FROM api_generations WHERE {where} "
        f"ORDER BY seq DESC LIMIT ${len(args) + 1}",
        (*args, page_size(limit)),
    )
    return [generation_from_row(r) for r in rows]


# --- flows ---------------------------------------------------------------------------------


def add_flow(flow: Flow, now: float) -> Tx[Flow]:
    rows = yield (
        f"INSERT INTO flows ({FLOW_COLUMNS}) VALUES ($1, $2, $3, $4) RETURNING {FLOW_COLUMNS}",
        (flow.id, flow.project, flow.name, float(flow.created_at or now)),
    )
    return flow_from_row(rows[0])


def flow_from_row(row: Sequence[Any]) -> Flow:
    flow_id, project, name, created_at = row
    return Flow(id=flow_id, project=project, name=name, created_at=float(created_at))


def get_flow(project: str, flow_id: str) -> Tx[Flow | None]:
    rows = yield (
        f"SELECT {FLOW_COLUMNS} FROM flows WHERE id = $1 AND project = $2",
        (flow_id, project),
    )
    return flow_from_row(rows[0]) if rows else None


def flow_steps(project: str, flow_id: str) -> Tx[list[GenerationRecord]]:
    rows = yield (
        f"SELECT {GENERATION_COLUMNS} FROM api_generations "
        "WHERE project = $1 AND flow_id = $2 ORDER BY seq",
        (project, flow_id),
    )
    return [generation_from_row(r) for r in rows]


# --- warm jobs -----------------------------------------------------------------------------


def put_warm_job(project: str, job_id: str, state: dict[str, Any], now: float) -> Tx[None]:
    """The job's state, made or replaced (of that project only)."""
    yield (
        "INSERT INTO warm_jobs (id, project, state, created_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state "
        "WHERE warm_jobs.project = excluded.project",
        (job_id, project, json_text(state), now),
    )


def get_warm_job(project: str, job_id: str) -> Tx[dict[str, Any] | None]:
    rows = yield (
        "SELECT state FROM warm_jobs WHERE id = $1 AND project = $2",
        (job_id, project),
    )
    return dict(orjson.loads(rows[0][0])) if rows else None
