"""Every call of the JSON API described once, as a `Call`: method, path, query and body.
`Client` and `AsyncClient` only send them, so the two cannot drift apart."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class Call:
    """One request: what is sent, and whether the answer is read as bytes, not JSON."""

    method: str
    path: str  # on the gateway, or an absolute URL
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: Any = None
    data: dict[str, str] | None = None
    raw: bool = False


def _seg(value: str) -> str:
    return quote(value, safe="@")


def query_of(values: Mapping[str, Any]) -> dict[str, str]:
    """Filters as query fields: `None` left out, `metadata={k: v}` as `metadata.k=v`."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name == "metadata" and isinstance(value, Mapping):
            out.update({f"metadata.{k}": str(v) for k, v in value.items()})
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


def generate(prompt: str, wait: bool, params: Mapping[str, Any]) -> Call:
    body = {"prompt": prompt, **{k: v for k, v in params.items() if v is not None}}
    return Call("POST", "/v1/generations", {} if wait else {"wait": "false"}, json=body)


def generation(id: str) -> Call:
    return Call("GET", f"/v1/generations/{_seg(id)}")


def history(filters: Mapping[str, Any]) -> Call:
    return Call("GET", "/v1/generations", query_of(filters))


def batch(items: Sequence[Mapping[str, Any]]) -> Call:
    return Call("POST", "/v1/generations/batch", json={"items": list(items)})


def create_flow(name: str, steps: Sequence[Mapping[str, Any]]) -> Call:
    return Call("POST", "/v1/flows", json={"name": name, "steps": list(steps)})


def flow(id: str) -> Call:
    return Call("GET", f"/v1/flows/{_seg(id)}")


def urls(params: Mapping[str, Any]) -> Call:
    return Call("POST", "/v1/urls", json=dict(params))


def upload(data: bytes | str | os.PathLike[str], alias: str | None) -> Call:
    if isinstance(data, bytes):
        content, name = data, "upload"
    else:
        path = Path(data)
        content, name = path.read_bytes(), path.name
    return Call(
        "POST",
        "/v1/assets",
        files={"file": (name, content, "application/octet-stream")},
        data={"alias": alias} if alias else None,
    )


def assets(limit: int | None, cursor: str | None) -> Call:
    return Call("GET", "/v1/assets", query_of({"limit": limit, "cursor": cursor}))


def asset(ref: str) -> Call:
    return Call("GET", f"/v1/assets/{_seg(ref)}")


def delete_asset(id: str) -> Call:
    return Call("DELETE", f"/v1/assets/{_seg(id)}")


def validate(prompt: str) -> Call:
    return Call("POST", "/v1/prompts/validate", json={"prompt": prompt})


def warm(html: str | None, urls: Sequence[str] | None) -> Call:
    body = {"html": html} if html is not None else {"urls": list(urls or ())}
    return Call("POST", "/v1/warm", json=body)


def warm_status(id: str) -> Call:
    return Call("GET", f"/v1/warm/{_seg(id)}")


def styles() -> Call:
    return Call("GET", "/v1/styles")


def download(url: str) -> Call:
    return Call("GET", url, raw=True)
