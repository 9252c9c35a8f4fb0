"""`GET /openapi.json`: the JSON API as an OpenAPI 3.1 document, made from the same
declarations the routes are made from (each `Operation` and its msgspec models), so the
document cannot drift from what the handlers accept and answer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import msgspec

from .routing import JSON, Call, Operation

_PATH_PARAM = re.compile(r"\{([a-z_]+)(?::[a-z]+)?\}")
_REF = "#/components/schemas/{name}"

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "a stable, machine-readable code"},
                "message": {"type": "string"},
                "param": {"type": "string", "description": "the parameter or field at fault"},
            },
            "additionalProperties": True,
        }
    },
}
SECURITY = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "a project's API key (`ppk_...`), or the admin token on admin routes",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
# What a route that reads its own body (`raw_body`: an upload) takes.
UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                    "alias": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
                },
            }
        },
        "image/*": {"schema": {"type": "string", "contentMediaType": "image/*"}},
    },
}
AUTH_TEXT = {
    "admin": "Needs the admin token (`PROMPTPIX_ADMIN_TOKEN`).",
    "key": "Needs a project's API key",
    "admin_or_key": "Needs the admin token or a project's API key.",
}


def document(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`."""
    models = sorted(
        {m for op in operations for m in (op.body, op.answer) if m is not None},
        key=lambda m: m.__name__,
    )
    refs, components = msgspec.json.schema_components(models, ref_template=_REF)
    schema_of = dict(zip(models, refs, strict=True))
    components = {**components, "Error": ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        path = _PATH_PARAM.sub(r"{\1}", op.path)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "promptpix",
            "version": version,
            "description": "Images from a prompt: live URLs (`/i/{project}?prompt=...`) and "
            'this JSON API. Every failure is `{"error": {"code", "message", "param"}}`.',
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY},
    }


def _operation(op: Operation, schema_of: dict[type, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "tags": list(op.tags),
    }
    if op.auth != "public":
        text = AUTH_TEXT[op.auth]
        if op.scope is not None:
            text = f"{text.rstrip('.')} with the `{op.scope}` scope."
        elif op.auth == "key":
            text += "."
        out["description"] = text
        out["security"] = [{"bearer": []}, {"apiKey": []}]
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(op.path)
    ]
    params += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text in op.query
    ]
    if params:
        out["parameters"] = params
    if op.body is not None:  # a JSON body, read by the route or by the handler itself
        out["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": schema_of[op.body]}},
        }
    elif op.raw_body:
        out["requestBody"] = UPLOAD_BODY
    ok: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.answer is not None:
        ok["content"] = {JSON: {"schema": schema_of[op.answer]}}
    responses: dict[str, Any] = {str(op.status): ok}
    for status in op.errors:
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": {JSON: {"schema": {"$ref": _REF.format(name="Error")}}},
        }
    out["responses"] = responses
    return out


def _operation_id(op: Operation) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", op.path.lower()) if w and w != "v1"]
    return "_".join([op.method.lower(), *words])


def operation(operations: Sequence[Operation], version: str) -> Operation:
    """The route that serves the document (itself included)."""
    cached: dict[str, Any] = {}

    async def serve(call: Call) -> Any:
        if not cached:
            cached.update(document([*operations, route], version))
        return cached

    route = Operation(
        "GET",
        "/openapi.json",
        serve,
        "This document: the JSON API as OpenAPI 3.1",
        auth="public",
        tags=("service",),
    )
    return route
