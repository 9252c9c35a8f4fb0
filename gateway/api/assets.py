"""`/v1/assets` (SPEC §2 "Assets and references"), for a key with the `assets` scope:
upload one image, list them a page at a time, read one by id or `@alias`, delete one.

The upload is `multipart/form-data` (`file`, optional `alias`) or the image itself with
`Content-Type: image/...` and `?alias=`; it answers 201 with the asset and its `/a/` URL
(signed when the project signs). `DELETE` answers 200 `{"id", "deleted": true}`, like
the other deletions of the API; the asset's alias goes with it, its bytes stay stored (the
originals made with it keep their meaning).
"""

from __future__ import annotations

from typing import Any

import msgspec

from promptpix.cache.library import MAX_PAGE, Asset

from ..assets import Assets
from ..errors import BadParameter, UnknownParameter
from ..params import split_query
from ..projects import Projects
from ..uploads import read_upload
from ..urls import asset_url
from .models import Deleted
from .routing import Call, Operation, json_answer

DEFAULT_PAGE = 20
ONE = "/v1/assets/{ref}"  # an id, or @alias where an alias will do
LIST_QUERY = (
    ("limit", f"how many, 1..{MAX_PAGE} (default {DEFAULT_PAGE})"),
    ("cursor", "`next_cursor` of the page before"),
)


class AssetOut(msgspec.Struct, kw_only=True):
    id: str  # BLAKE3 of the bytes
    alias: str | None
    width: int
    height: int
    content_type: str
    bytes: int
    url: str  # /a/{project}/{id}, signed when the project signs
    focal_point: dict[str, float]
    created_at: float


class AssetPage(msgspec.Struct, kw_only=True):
    items: list[AssetOut]
    next_cursor: str | None  # the next page's `cursor`; null after the last


def operations(
    assets: Assets, projects: Projects, max_upload_mb: int, public_url: str
) -> list[Operation]:
    limit = max_upload_mb << 20

    async def out(call: Call, asset: Asset) -> AssetOut:
        project = await projects.get(asset.project)
        base = public_url or str(call.request.base_url)
        return AssetOut(
            id=asset.id,
            alias=asset.alias,
            width=asset.width,
            height=asset.height,
            content_type=asset.content_type,
            bytes=asset.bytes,
            url=asset_url(base, project, asset.id),
            focal_point={"x": asset.focal_x, "y": asset.focal_y},
            created_at=asset.created_at,
        )

    def project_of(call: Call) -> str:
        assert call.principal.key is not None
        return call.principal.key.project

    async def upload(call: Call) -> Any:
        given = await read_upload(call.request, limit)
        asset = await assets.upload(project_of(call), given.data, given.alias)
        return json_answer(await out(call, asset), 201)

    async def list_assets(call: Call) -> Any:
        query = split_query(call.request.url.query)
        for name in query:
            if name not in ("limit", "cursor"):
                raise UnknownParameter(f"unknown parameter '{name[:64]}'", param=name[:64])
        text = query.get("limit", str(DEFAULT_PAGE))
        if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
            raise BadParameter(f"'limit' must be an integer 1..{MAX_PAGE}", param="limit")
        items, cursor = await assets.page(project_of(call), int(text), query.get("cursor"))
        return AssetPage(items=[await out(call, a) for a in items], next_cursor=cursor)

    async def read(call: Call) -> Any:
        return await out(call, await assets.find(project_of(call), call.params["ref"]))

    async def delete(call: Call) -> Any:
        ref = call.params["ref"]
        if ref.startswith("@"):
            raise BadParameter("an asset is deleted by its id, not by its alias", param="id")
        await assets.delete(project_of(call), ref)
        return Deleted(id=ref)

    def route(method: str, path: str, handler: Any, summary: str, **more: Any) -> Operation:
        return Operation(method, path, handler, summary, scope="assets", tags=("assets",), **more)

    return [
        route(
            "POST",
            "/v1/assets",
            upload,
            "Upload an image (multipart `file` and `alias`, or the raw image with ?alias=)",
            answer=AssetOut,
            status=201,
            errors=(400, 401, 403, 413, 415),
            query=(("alias", "name it: [a-z0-9][a-z0-9_-]{0,63}; moves from another asset"),),
            raw_body=True,
        ),
        route(
            "GET",
            "/v1/assets",
            list_assets,
            "The project's assets, newest first, a page at a time",
            answer=AssetPage,
            errors=(400, 401, 403),
            query=LIST_QUERY,
        ),
        route(
            "GET",
            ONE,
            read,
            "One asset, by id or @alias",
            answer=AssetOut,
            errors=(401, 403, 404),
        ),
        route(
            "DELETE",
            ONE,
            delete,
            "Delete an asset by its id (its alias goes with it)",
            answer=Deleted,
            errors=(400, 401, 403, 404),
        ),
    ]
