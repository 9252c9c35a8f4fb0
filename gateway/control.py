"""The control plane's operations, checked against this deployment (its styles, its chain):
the same for the admin API and for the CLI, which writes the database directly."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec

from promptpix.cache.control import ControlStore, Project, current_period
from promptpix.generators.styles import BUILTIN_STYLES

from .api.models import (
    Budget,
    GeneratorUsage,
    KeyBody,
    KeyCreated,
    KeyOut,
    ProjectBody,
    ProjectCreated,
    ProjectOut,
    ProjectPatch,
    Quota,
    RateLimit,
    SecretCreated,
    SecretOut,
    UsageOut,
)
from .errors import BadParameter, NotFound, UnknownProject

# A limit's body (`{"generations_per_month": 100}`) and the record's value (100).
LIMITS = {
    "quota": "generations_per_month",
    "rate_limit": "misses_per_minute",
    "budget": "usd_per_month",
}


class Control:
    def __init__(self, store: ControlStore, generator_ids: Collection[str]) -> None:
        self.store = store
        self.generator_ids = tuple(generator_ids)

    def _check(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The record's fields from a body's, checked: a known style, a subset of the chain."""
        style = fields.get("style")
        if style and style not in BUILTIN_STYLES:
            raise BadParameter(
                f"unknown style; one of: {', '.join(sorted(BUILTIN_STYLES))}", param="style"
            )
        generators = fields.get("generators")
        if generators is not None:
            unknown = [g for g in generators if g not in self.generator_ids]
            if unknown or not generators or len(set(generators)) != len(generators):
                raise BadParameter(
                    "generators must be a subset of the chain, each once, in order: "
                    f"{', '.join(self.generator_ids)}",
                    param="generators",
                )
            fields["generators"] = tuple(generators)
        for name, inner in LIMITS.items():
            if fields.get(name) is not None:
                fields[name] = fields[name][inner]
        return fields

    async def create(self, body: ProjectBody) -> ProjectCreated:
        fields = self._check(msgspec.to_builtins(body))
        project, secret = await self.store.create_project(Project(**fields))
        return ProjectCreated(**_out(project), signing_secret=secret)

    async def get(self, slug: str) -> ProjectOut:
        project = await self.store.get_project(slug)
        if project is None:
            raise UnknownProject(f"no project named '{slug[:64]}'")
        return ProjectOut(**_out(project))

    async def all(self) -> list[ProjectOut]:
        return [ProjectOut(**_out(p)) for p in await self.store.list_projects()]

    async def update(self, slug: str, patch: ProjectPatch) -> ProjectCreated:
        changes = {
            f: getattr(patch, f)
            for f in patch.__struct_fields__
            if getattr(patch, f) is not msgspec.UNSET
        }
        changes = self._check(msgspec.to_builtins(changes))
        project, secret = await self.store.update_project(slug, **changes)
        return ProjectCreated(**_out(project), signing_secret=secret)

    async def create_key(self, slug: str, body: KeyBody) -> KeyCreated:
        key, text = await self.store.create_key(slug, body.name, body.scopes)
        return KeyCreated(**_key(key), key=text)

    async def list_keys(self, slug: str) -> list[KeyOut]:
        await self.get(slug)  # 404 for a project that is not there
        return [KeyOut(**_key(k)) for k in await self.store.list_keys(slug)]

    async def revoke_key(self, slug: str, key_id: str) -> None:
        if not await self.store.revoke_key(slug, key_id):
            raise NotFound("no key with that id in this project")

    async def add_secret(self, slug: str) -> SecretCreated:
        secret_id, secret = await self.store.add_secret(slug)
        return SecretCreated(id=secret_id, signing_secret=secret)

    async def list_secrets(self, slug: str) -> list[SecretOut]:
        listed = await self.store.list_secrets(slug)
        return [SecretOut(id=s.id, created_at=s.created_at) for s in listed]

    async def delete_secret(self, slug: str, secret_id: str) -> None:
        if not await self.store.delete_secret(slug, secret_id):
            raise NotFound("no signing secret with that id in this project")

    async def usage(self, slug: str, period: str | None = None) -> UsageOut:
        project = await self.store.get_project(slug)
        if project is None:
            raise UnknownProject(f"no project named '{slug[:64]}'")
        period = period or current_period()
        used = await self.store.usage(slug, period)
        return UsageOut(
            period=period,
            generations=used.generations,
            quota=project.quota,
            estimated_usd=round(used.estimated_usd, 6),
            budget=project.budget,
            by_generator={
                g: GeneratorUsage(generations=n, estimated_usd=round(usd, 6))
                for g, (n, usd) in used.by_generator.items()
            },
        )


def _out(project: Project) -> dict[str, Any]:
    return {
        "slug": project.slug,
        "name": project.name,
        "style": project.style,
        "system_prompt": project.system_prompt,
        "signing": project.signing,
        "quota": None if project.quota is None else Quota(generations_per_month=project.quota),
        "rate_limit": (
            None if project.rate_limit is None else RateLimit(misses_per_minute=project.rate_limit)
        ),
        "budget": None if project.budget is None else Budget(usd_per_month=project.budget),
        "generators": None if project.generators is None else list(project.generators),
        "enhance": project.enhance,
        "semantic_reuse": project.semantic_reuse,
        "on_failure": project.on_failure,
        "style_version": project.style_version,
        "created_at": project.created_at,
        "updated_at": project.updated_at,
    }


def _key(key: Any) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "scopes": list(key.scopes),
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }
