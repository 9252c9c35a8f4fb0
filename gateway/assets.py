"""Uploaded assets (SPEC §2 "Assets and references"): an upload checked from its header,
then stored; assets found by id or `@alias`, listed a page at a time, deleted; and an asset
as the `Original` every transform starts from.

An asset's bytes go into the object store beside the originals, under its id (the BLAKE3
of the bytes), with metadata of `"kind": "asset"` (an index rebuild leaves them out); its
row (project, alias, size, focal point) goes into the library. The same bytes uploaded
again are the same asset; an alias given with an upload moves to it.

What `/a/` resolves is remembered briefly, per process: an `@alias` for `ALIAS_TTL_S` (a
moved alias shows its new asset within that), an id for `ID_TTL_S` (a deleted asset stops
being served within that).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import blake3
import msgspec

from promptpix.cache.keys import is_key
from promptpix.cache.library import ALIAS, MAX_PAGE, Asset, Library
from promptpix.cache.store import Store, StoreUnavailable
from promptpix.generators.ratios import reduce_ratio
from promptpix.transforms.errors import SourceTooLarge, UnreadableImage, UnsupportedFormat
from promptpix.transforms.executor import TransformPool
from promptpix.transforms.source import header
from promptpix.transforms.upload import Examined, examine

from .errors import (
    BadParameter,
    InvalidImage,
    UnknownAsset,
    UnsupportedImage,
    UploadTooManyPixels,
)
from .tiers import Original, Tiers

GENERATOR = "upload"  # an asset's `X-Generator`
ALIAS_TTL_S = 1.0
ID_TTL_S = 10.0
MAX_REMEMBERED = 10_000


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias):
        raise BadParameter(
            "'alias' must be 1..64 of a-z 0-9 _ -, starting with a letter or digit",
            param="alias",
        )
    return alias


def encode_cursor(asset: Asset) -> str:
    raw = msgspec.json.encode([asset.created_at, asset.id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, id_ = msgspec.json.decode(raw, type=tuple[float, str])
    except (ValueError, msgspec.DecodeError):
        raise BadParameter("'cursor' is not one this API gave", param="cursor") from None
    return created_at, id_


def _identify(data: bytes, max_pixels: int) -> tuple[str, Examined]:
    """On the transform pool: the header checks and the analysis, and the id."""
    examined = examine(data, max_pixels)  # refused from the header before any decode
    return blake3.blake3(data).hexdigest(), examined


class Assets:
    def __init__(
        self,
        library: Library,
        store: Store,
        tiers: Tiers,
        pool: TransformPool,
        *,
        max_source_pixels: int,
        generated: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> None:
        self.library = library
        self.store = store
        # A stored original's metadata by its key: `/a/{project}/{key}` also serves the
        # project's generated originals, for images no live URL can name (a flow's steps,
        # references given by id).
        self.generated = generated
        self.tiers = tiers
        self.pool = pool
        self.max_source_pixels = max_source_pixels
        self._resolved: dict[tuple[str, str], tuple[float, Asset | None]] = {}

    # --- upload -------------------------------------------------------------------------

    async def upload(self, project: str, data: bytes, alias: str | None) -> Asset:
        """Check, analyse, store and record; the same bytes again are the same asset."""
        if alias is not None:
            check_alias(alias)
        try:
            id_, examined = await self.pool.run(_identify, data, self.max_source_pixels)
        except UnsupportedFormat as exc:
            raise UnsupportedImage(str(exc), param="file") from None
        except SourceTooLarge as exc:
            raise UploadTooManyPixels(
                f"{exc} (PROMPTPIX_MAX_SOURCE_PIXELS)", param="file"
            ) from None
        except UnreadableImage as exc:
            raise InvalidImage(str(exc), param="file") from None
        checked = examined.checked
        now = time.time()
        asset = Asset(
            project=project,
            id=id_,
            content_type=checked.content_type,
            width=checked.width,
            height=checked.height,
            bytes=len(data),
            alias=alias,
            focal_x=examined.focal[0],
            focal_y=examined.focal[1],
            created_at=now,
        )
        if not await self.store.head(id_):
            await self.store.put(id_, data, self._meta(asset))
        stored = await self.library.put_asset(asset)
        self.tiers.originals.put(id_, as_original(stored, data, examined.shrinkable))
        self._forget(project, id_, alias)
        return stored

    @staticmethod
    def _meta(asset: Asset) -> dict[str, Any]:
        return {
            "key": asset.id,
            "kind": "asset",
            "project": asset.project,
            "content_type": asset.content_type,
            "width": asset.width,
            "height": asset.height,
            "bytes": asset.bytes,
            "focal_point": {"x": asset.focal_x, "y": asset.focal_y},
            "generator": GENERATOR,
            "created_at": asset.created_at,
        }

    # --- reads --------------------------------------------------------------------------

    async def find(self, project: str, ref: str) -> Asset:
        """An asset by id or `@alias`, as the library holds it now; else 404."""
        found = await self._lookup(project, ref)
        if found is None:
            raise UnknownAsset(f"no asset '{ref[:80]}' in project '{project}'", param="ref")
        return found

    async def resolve(self, project: str, ref: str) -> Asset:
        """`find`, remembered for a moment (for `/a/`, asked for on every request)."""
        now = time.monotonic()
        known = self._resolved.get((project, ref))
        if known is not None and known[0] > now:
            found = known[1]
        else:
            found = await self._lookup(project, ref)
            if found is None and self.generated is not None and is_key(ref):
                found = await self._original_of(project, ref)
            if len(self._resolved) >= MAX_REMEMBERED:
                self._resolved.clear()
            ttl = ALIAS_TTL_S if ref.startswith("@") else ID_TTL_S
            self._resolved[(project, ref)] = (now + ttl, found)
        if found is None:
            raise UnknownAsset(f"no asset '{ref[:80]}' in project '{project}'")
        return found

    async def _original_of(self, project: str, key: str) -> Asset | None:
        """A generated original of `project`, shown as an asset is."""
        assert self.generated is not None
        meta = await self.generated(key)
        if meta is None or meta.get("project") != project or meta.get("kind") == "asset":
            return None
        focal = meta.get("focal_point") or {"x": 0.5, "y": 0.5}
        return Asset(
            project=project,
            id=key,
            content_type=str(meta.get("content_type", "")),
            width=int(meta.get("width", 0)),
            height=int(meta.get("height", 0)),
            bytes=int(meta.get("bytes", 0)),
            focal_x=float(focal["x"]),
            focal_y=float(focal["y"]),
            created_at=float(meta.get("created_at", 0.0)),
        )

    async def _lookup(self, project: str, ref: str) -> Asset | None:
        if ref.startswith("@"):
            alias = ref[1:]
            if not ALIAS.fullmatch(alias):
                return None
            return await self.library.asset_by_alias(project, alias)
        if not is_key(ref):
            return None
        return await self.library.asset(project, ref)

    async def page(
        self, project: str, limit: int, cursor: str | None
    ) -> tuple[list[Asset], str | None]:
        """Newest first; the cursor of the next page, or None after the last."""
        if not 1 <= limit <= MAX_PAGE:
            raise BadParameter(f"'limit' must be 1..{MAX_PAGE}", param="limit")
        before = decode_cursor(cursor) if cursor else None
        found = await self.library.assets(project, limit + 1, before)
        more = len(found) > limit
        items = found[:limit]
        return items, encode_cursor(items[-1]) if more and items else None

    async def delete(self, project: str, id_: str) -> None:
        """The row and its alias go; the bytes stay (originals made with them keep them)."""
        if not is_key(id_) or not await self.library.delete_asset(project, id_):
            raise UnknownAsset(f"no asset '{id_[:80]}' in project '{project}'", param="id")
        self._forget(project, id_, None)

    def _forget(self, project: str, id_: str, alias: str | None) -> None:
        """What this process remembered of the asset (others wait out the TTLs)."""
        self._resolved.pop((project, id_), None)
        if alias is not None:
            self._resolved.pop((project, f"@{alias}"), None)
        stale = [k for k, (_, a) in self._resolved.items() if a is not None and a.id == id_]
        for key in stale:
            self._resolved.pop(key, None)

    # --- as an original -----------------------------------------------------------------

    async def original(self, asset: Asset) -> Original:
        """The asset's bytes and what a transform needs, from memory or the store."""
        hot = self.tiers.originals.get(asset.id)
        if hot is not None:
            return hot
        stored = await self.store.get(asset.id)
        if stored is None:  # listed, and not (yet) in the store: an outage, not a 404
            raise StoreUnavailable(f"the bytes of asset {asset.id} are not in the store")
        head = header(stored.data, self.max_source_pixels)
        # A generated original served by its key says who made it; an upload, `upload`.
        maker = stored.meta.get("generator") if stored.meta.get("kind") != "asset" else None
        original = as_original(asset, stored.data, head.shrinkable, str(maker or GENERATOR))
        self.tiers.originals.put(asset.id, original)
        return original


def as_original(
    asset: Asset, data: bytes, shrinkable: bool, generator: str = GENERATOR
) -> Original:
    """An asset in the shape transforms start from: shown at its own ratio (nothing is cut
    from it but what `fit` cuts), its focal point the one found at upload."""
    return Original(
        key=asset.id,
        data=data,
        size=(asset.width, asset.height),
        shrinkable=shrinkable,
        focal=(asset.focal_x, asset.focal_y),
        native=view_of(asset),
        generator=generator,
        meta={"kind": "asset", "content_type": asset.content_type},
    )


def view_of(asset: Asset) -> tuple[int, int]:
    return reduce_ratio(asset.width, asset.height)
