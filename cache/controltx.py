"""The control store's transactions, written once for both databases.

A transaction is a generator: it yields `(sql, args)` and is sent back the rows (tuples) that
the statement returned, and its return value is the operation's answer. The two drivers
(`pgcontrol`, `sqlitecontrol`) run it inside one database transaction: an exception from it
rolls everything back. The SQL is what PostgreSQL and SQLite both read: `$n` parameters
(SQLite's `?n`), `CAST(... AS bigint)` where a parameter's type is not plain, `RETURNING`.

Every write to a project, a secret or a key starts by raising `control_version`: in
PostgreSQL that takes the counter's row lock, so writers take turns, and each one reads
what the one before it committed (SQLite's `BEGIN IMMEDIATE` does the same).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, Literal, TypeVar

import msgspec
import orjson

from . import credentials
from .control import (
    ApiKey,
    InvalidProject,
    LastSecret,
    Project,
    ProjectExists,
    ProjectNotFound,
    SigningSecret,
    changed,
    checked,
    checked_scopes,
    micro_usd,
    usd,
)

T = TypeVar("T")
Query = tuple[str, Sequence[Any]]
Rows = list[tuple[Any, ...]]
Tx = Generator[Query, Rows, T]
Mode = Literal["write", "read", "single"]  # how a driver runs a transaction

COLUMNS = (
    "slug, name, style, system_prompt, signing, quota, rate_limit, budget_micro_usd, "
    "generators, enhance, semantic_reuse, on_failure, style_version, created_at, updated_at"
)
MARKS = ", ".join(f"${i}" for i in range(1, 16))
KEY_COLUMNS = "id, project, name, scopes, created_at, revoked_at"


def single(transaction: Tx[T]) -> Tx[T]:
    """The transaction, refused if it asks for more than one statement (run as `single`,
    outside any database transaction, only one statement is atomic)."""
    try:
        query = next(transaction)
    except StopIteration as done:
        result: T = done.value
        return result
    rows = yield query
    try:
        transaction.send(rows)
    except StopIteration as done:
        result = done.value
        return result
    raise RuntimeError("a single-statement transaction asked for a second statement")


def to_row(p: Project) -> tuple[Any, ...]:
    generators = None if p.generators is None else orjson.dumps(p.generators).decode()
    return (
        p.slug,
        p.name,
        p.style,
        p.system_prompt,
        p.signing,
        p.quota,
        p.rate_limit,
        micro_usd(p.budget, "budget"),
        generators,
        p.enhance,
        p.semantic_reuse,
        p.on_failure,
        p.style_version,
        p.created_at,
        p.updated_at,
    )


def from_row(row: Sequence[Any], secrets: tuple[str, ...] = ()) -> Project:
    (slug, name, style, system_prompt, signing, quota, rate_limit, budget, generators) = row[:9]
    enhance, semantic_reuse, on_failure, style_version, created_at, updated_at = row[9:]
    return Project(
        slug,
        name=name,
        style=style,
        system_prompt=system_prompt,
        signing=signing,
        quota=quota,
        rate_limit=rate_limit,
        budget=None if budget is None else usd(budget),
        generators=None if generators is None else tuple(orjson.loads(generators)),
        enhance=bool(enhance),
        semantic_reuse=bool(semantic_reuse),
        on_failure=on_failure,
        style_version=style_version,
        created_at=created_at,
        updated_at=updated_at,
        secrets=secrets,
    )


def key_from_row(row: Sequence[Any]) -> ApiKey:
    key_id, project, name, scopes, created_at, revoked_at = row[:6]
    return ApiKey(key_id, project, name, tuple(orjson.loads(scopes)), created_at, revoked_at)


def bump() -> Tx[int]:
    """Raise the version, first in a write: the new number also orders what it creates."""
    rows = yield (
        "UPDATE control_version SET version = version + 1 WHERE id = 1 RETURNING version",
        (),
    )
    return int(rows[0][0])


def version() -> Tx[int]:
    rows = yield ("SELECT version FROM control_version WHERE id = 1", ())
    return int(rows[0][0])


def project_row(slug: str) -> Tx[Project]:
    """The project (without secrets); ProjectNotFound if there is none."""
    rows = yield (f"SELECT {COLUMNS} FROM projects WHERE slug = $1", (slug,))
    if not rows:
        raise ProjectNotFound(f"no project named '{str(slug)[:64]}'", "slug")
    return from_row(rows[0])


def secret_texts(slug: str) -> Tx[tuple[str, ...]]:
    rows = yield (
        "SELECT secret FROM signing_secrets WHERE project = $1 ORDER BY seq",
        (slug,),
    )
    return tuple(r[0] for r in rows)


def insert_secret(slug: str, now: int, seq: int) -> Tx[tuple[str, str]]:
    secret_id, secret = credentials.new_id(), credentials.random_text()
    yield (
        "INSERT INTO signing_secrets (id, project, secret, created_at, seq) "
        "VALUES ($1, $2, $3, $4, $5)",
        (secret_id, slug, secret, now, seq),
    )
    return secret_id, secret


def create_project(project: Project, now: int) -> Tx[tuple[Project, str | None]]:
    new = checked(
        msgspec.structs.replace(
            project, style_version=1, created_at=now, updated_at=now, secrets=()
        )
    )
    seq = yield from bump()
    rows = yield (
        f"INSERT INTO projects ({COLUMNS}) VALUES ({MARKS}) ON CONFLICT (slug) DO NOTHING "
        "RETURNING slug",
        to_row(new),
    )
    if not rows:
        raise ProjectExists(f"a project named '{new.slug}' exists", "slug")
    secret = None
    if new.signing != "off":
        _, secret = yield from insert_secret(new.slug, now, seq)
    return new, secret


def list_projects() -> Tx[list[Project]]:
    rows = yield (f"SELECT {COLUMNS} FROM projects ORDER BY slug", ())
    return [from_row(r) for r in rows]


def get_project(slug: str, *, with_secrets: bool) -> Tx[Project | None]:
    rows = yield (f"SELECT {COLUMNS} FROM projects WHERE slug = $1", (slug,))
    if not rows:
        return None
    secrets = (yield from secret_texts(slug)) if with_secrets else ()
    return from_row(rows[0], secrets)


def update_project(slug: str, changes: dict[str, Any], now: int) -> Tx[tuple[Project, str | None]]:
    seq = yield from bump()
    current = yield from project_row(slug)
    new = changed(current, changes, now)
    row = to_row(new)
    yield (
        f"UPDATE projects SET ({COLUMNS}) = ({MARKS}) WHERE slug = $1",
        row,
    )
    secret = None
    if current.signing == "off" and new.signing != "off" and not (yield from secret_texts(slug)):
        _, secret = yield from insert_secret(slug, now, seq)
    return new, secret


def add_secret(slug: str, now: int) -> Tx[tuple[str, str]]:
    seq = yield from bump()
    yield from project_row(slug)
    return (yield from insert_secret(slug, now, seq))


def delete_secret(slug: str, secret_id: str) -> Tx[bool]:
    yield from bump()
    project = yield from project_row(slug)
    rows = yield ("SELECT id FROM signing_secrets WHERE project = $1", (slug,))
    ids = [r[0] for r in rows]
    if secret_id not in ids:
        return False
    if project.signing != "off" and len(ids) == 1:
        raise LastSecret(
            f"'{secret_id}' is the only signing secret of '{slug}', which signs: "
            "add another first, or turn signing off",
            "id",
        )
    yield ("DELETE FROM signing_secrets WHERE project = $1 AND id = $2", (slug, secret_id))
    return True


def list_secrets(slug: str) -> Tx[list[SigningSecret]]:
    yield from project_row(slug)
    rows = yield (
        "SELECT id, created_at FROM signing_secrets WHERE project = $1 ORDER BY seq",
        (slug,),
    )
    return [SigningSecret(r[0], r[1]) for r in rows]


def create_key(slug: str, name: str, scopes: Sequence[str], now: int) -> Tx[tuple[ApiKey, str]]:
    if not isinstance(name, str) or len(name) > 200:
        raise InvalidProject("name: must be text of at most 200 characters", "name")
    kept = checked_scopes(scopes)
    seq = yield from bump()
    yield from project_row(slug)
    key_id, text, digest = credentials.new_key()
    yield (
        f"INSERT INTO api_keys ({KEY_COLUMNS}, hash, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        (key_id, slug, name, orjson.dumps(kept).decode(), now, None, digest, seq),
    )
    return ApiKey(key_id, slug, name, kept, now), text


def find_key(text: str) -> Tx[ApiKey | None]:
    parts = credentials.split_key(text)
    if parts is None:
        return None
    key_id, secret = parts
    rows = yield (
        f"SELECT {KEY_COLUMNS}, hash FROM api_keys WHERE id = $1 AND revoked_at IS NULL",
        (key_id,),
    )
    if not rows or not credentials.matches(secret, rows[0][6]):
        return None
    return key_from_row(rows[0])


def list_keys(slug: str) -> Tx[list[ApiKey]]:
    yield from project_row(slug)
    rows = yield (
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE project = $1 ORDER BY seq",
        (slug,),
    )
    return [key_from_row(r) for r in rows]


def revoke_key(slug: str, key_id: str, now: int) -> Tx[bool]:
    yield from bump()
    yield from project_row(slug)
    rows = yield (
        "UPDATE api_keys SET revoked_at = $3 "
        "WHERE project = $1 AND id = $2 AND revoked_at IS NULL RETURNING id",
        (slug, key_id, now),
    )
    return bool(rows)
