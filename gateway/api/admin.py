"""Projects, their keys and signing secrets, and their usage: the admin token's routes
(SPEC §2 "Projects and keys"); usage also answers a `read` key of the project."""

from __future__ import annotations

from typing import Any

from ..control import Control
from .models import (
    Deleted,
    KeyBody,
    KeyCreated,
    KeyList,
    ProjectBody,
    ProjectCreated,
    ProjectList,
    ProjectOut,
    ProjectPatch,
    SecretCreated,
    SecretList,
    UsageOut,
)
from .routing import Call, Operation, json_answer

PROJECT = "/v1/projects/{slug}"


def operations(control: Control) -> list[Operation]:
    async def create(call: Call) -> Any:
        return json_answer(await control.create(call.body), 201)

    async def list_projects(call: Call) -> Any:
        return ProjectList(projects=await control.all())

    async def read(call: Call) -> Any:
        return await control.get(call.params["slug"])

    async def patch(call: Call) -> Any:
        return await control.update(call.params["slug"], call.body)

    async def add_secret(call: Call) -> Any:
        return json_answer(await control.add_secret(call.params["slug"]), 201)

    async def list_secrets(call: Call) -> Any:
        return SecretList(signing_secrets=await control.list_secrets(call.params["slug"]))

    async def delete_secret(call: Call) -> Any:
        await control.delete_secret(call.params["slug"], call.params["id"])
        return Deleted(id=call.params["id"])

    async def create_key(call: Call) -> Any:
        return json_answer(await control.create_key(call.params["slug"], call.body), 201)

    async def list_keys(call: Call) -> Any:
        return KeyList(keys=await control.list_keys(call.params["slug"]))

    async def revoke_key(call: Call) -> Any:
        await control.revoke_key(call.params["slug"], call.params["id"])
        return Deleted(id=call.params["id"])

    async def usage(call: Call) -> Any:
        return await control.usage(call.params["slug"])

    def admin(method: str, path: str, handler: Any, summary: str, **more: Any) -> Operation:
        return Operation(method, path, handler, summary, auth="admin", tags=("projects",), **more)

    return [
        admin(
            "POST",
            "/v1/projects",
            create,
            "Create a project (its signing secret, when it signs, is shown once)",
            body=ProjectBody,
            answer=ProjectCreated,
            status=201,
            errors=(400, 401, 403, 409, 413),
        ),
        admin(
            "GET",
            "/v1/projects",
            list_projects,
            "List the projects",
            answer=ProjectList,
            errors=(401, 403),
        ),
        admin(
            "GET",
            PROJECT,
            read,
            "Read a project (never a secret)",
            answer=ProjectOut,
            errors=(401, 403, 404),
        ),
        admin(
            "PATCH",
            PROJECT,
            patch,
            "Change a project; a new style or system prompt raises its style_version",
            body=ProjectPatch,
            answer=ProjectCreated,
            errors=(400, 401, 403, 404, 413),
        ),
        admin(
            "POST",
            PROJECT + "/signing-secrets",
            add_secret,
            "Add a signing secret (shown once); every secret verifies until deleted",
            answer=SecretCreated,
            status=201,
            errors=(401, 403, 404),
        ),
        admin(
            "GET",
            PROJECT + "/signing-secrets",
            list_secrets,
            "List the signing secrets' ids, oldest first (never a secret itself)",
            answer=SecretList,
            errors=(401, 403, 404),
        ),
        admin(
            "DELETE",
            PROJECT + "/signing-secrets/{id}",
            delete_secret,
            "Delete a signing secret",
            answer=Deleted,
            errors=(401, 403, 404, 409),
        ),
        admin(
            "POST",
            PROJECT + "/keys",
            create_key,
            "Create an API key of the project (shown once)",
            body=KeyBody,
            answer=KeyCreated,
            status=201,
            errors=(400, 401, 403, 404, 413),
        ),
        admin(
            "GET",
            PROJECT + "/keys",
            list_keys,
            "List the project's keys (never a key itself)",
            answer=KeyList,
            errors=(401, 403, 404),
        ),
        admin(
            "DELETE",
            PROJECT + "/keys/{id}",
            revoke_key,
            "Revoke a key: it fails everywhere within seconds",
            answer=Deleted,
            errors=(401, 403, 404),
        ),
        Operation(
            "GET",
            PROJECT + "/usage",
            usage,
            "This month's generations and estimated spend, against the quota and budget",
            answer=UsageOut,
            auth="admin_or_key",
            scope="read",
            errors=(401, 403, 404),
            tags=("projects",),
        ),
    ]
