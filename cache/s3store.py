"""The S3 store (MinIO, AWS S3, Cloudflare R2, SeaweedFS) through aiobotocore.

Each original is one object, `KEY`: the image, with its metadata in the object's own
(`x-amz-meta-`) metadata, so one PUT stores it and one GET reads it back. It is written only
if absent (`If-None-Match: *`): the first writer wins, and the object's existence means a
complete original. Metadata too large for S3's 2 KB of user metadata goes in a sidecar,
`KEY.DIGEST.json`, written before the image that names it. The store alone is enough to
rebuild the index.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import blake3
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from .keys import is_key
from .store import StoredOriginal, StoreUnavailable, StoreUnreachable

log = logging.getLogger("promptpix.store")
MISSING = {"NoSuchKey", "404", "NotFound"}
LOST_RACE = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
BUCKET_EXISTS = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}  # a create that lost a race
BEING_CREATED = "OperationAborted"  # another create is under way: not ready yet
INLINE = "promptpix"  # user metadata: the original's metadata, JSON, deflated, base64
SIDECAR = "promptpix-sidecar"  # user metadata: the name of the sidecar that holds it
INLINE_LIMIT = 1900  # bytes of encoded metadata kept inline (S3 allows 2 KB in all)


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        pool_size: int = 128,
        timeout_s: float = 10.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self._opts: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": region or "us-east-1",
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "config": AioConfig(
                max_pool_connections=pool_size,
                connect_timeout=min(timeout_s, 3.0),
                read_timeout=timeout_s,
                retries={"max_attempts": 2, "mode": "standard"},
                # The body is covered by a CRC32 checksum in a signed header, which the
                # server verifies; hashing it again with SHA-256 for the signature, as
                # botocore does by default over plain HTTP, cost about 0.3 ms of CPU a PUT.
                request_checksum_calculation="when_supported",
                s3={"payload_signing_enabled": False}
                | ({"addressing_style": "path"} if endpoint else {}),
            ),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._bucket_ready = False
        self._ensuring: asyncio.Future[None] | None = None  # one bucket check for every caller

    def _name(self, name: str) -> str:
        """The object name of an original (its key) or of a sidecar (`KEY.DIGEST.json`)."""
        key = name.split(".", 1)[0]
        if not is_key(key):
            raise ValueError("not a content key")
        path = f"originals/{key[:2]}/{name}"
        return f"{self.prefix}/{path}" if self.prefix else path

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    session = get_session()
                    self._client = await self._stack.enter_async_context(
                        session.create_client("s3", **self._opts)
                    )
        if not self._bucket_ready:
            if self._ensuring is None or self._ensuring.done():
                self._ensuring = asyncio.ensure_future(self._ensure_bucket(self._client))
                self._ensuring.add_done_callback(_consume)
            await asyncio.shield(self._ensuring)
        return self._client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in MISSING:
                raise
            try:
                await client.create_bucket(Bucket=self.bucket)
            except ClientError as created:
                if _code(created) == BEING_CREATED:  # checked again on the next call
                    return
                if _code(created) not in BUCKET_EXISTS:
                    raise
        self._bucket_ready = True

    async def get(self, key: str) -> StoredOriginal | None:
        async with _mapped("get", key):
            client = await self._s3()
            try:
                obj = await client.get_object(Bucket=self.bucket, Key=self._name(key))
            except ClientError as exc:
                if _code(exc) in MISSING:
                    return None
                raise
            async with obj["Body"] as body:
                data: bytes = await body.read()
            meta = await self._meta(client, key, obj.get("Metadata") or {})
        return StoredOriginal(key, data, meta)

    async def head(self, key: str) -> bool:
        """Whether a complete original is stored, without reading it."""
        async with _mapped("head", key):
            client = await self._s3()
            try:
                await client.head_object(Bucket=self.bucket, Key=self._name(key))
            except ClientError as exc:
                if _code(exc) in MISSING:
                    return False
                raise
        return True

    async def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        record = {k: v for k, v in meta.items() if k not in ("file", "ext")}
        record["key"] = key
        raw = orjson.dumps(record)
        packed = base64.b64encode(zlib.compress(raw)).decode("ascii")  # S3 headers: ASCII
        sidecar = None
        if len(packed) <= INLINE_LIMIT:
            user_meta = {INLINE: packed}
        else:  # named by its digest: a writer that loses the race never overwrites the winner's
            sidecar = f"{key}.{blake3.blake3(raw).hexdigest()[:16]}.json"
            user_meta = {SIDECAR: sidecar}
        async with _mapped("put", key):
            client = await self._s3()
            if sidecar is not None:
                await client.put_object(
                    Bucket=self.bucket,
                    Key=self._name(sidecar),
                    Body=raw,
                    ContentType="application/json",
                )
            try:
                await client.put_object(
                    Bucket=self.bucket,
                    Key=self._name(key),
                    Body=data,
                    ContentType=str(meta.get("content_type", "application/octet-stream")),
                    Metadata=user_meta,
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if _code(exc) not in LOST_RACE:
                    raise
                # Another replica stored this original first: its copy stands, ours goes
                # (unless the winner's metadata was byte for byte ours, and so its sidecar).
                if sidecar is not None:
                    with contextlib.suppress(ClientError):
                        theirs = await client.head_object(Bucket=self.bucket, Key=self._name(key))
                        if (theirs.get("Metadata") or {}).get(SIDECAR) != sidecar:
                            await client.delete_object(Bucket=self.bucket, Key=self._name(sidecar))

    async def _meta(self, client: Any, key: str, user_meta: Mapping[str, str]) -> dict[str, Any]:
        """An original's metadata from its object's user metadata (or the sidecar it names)."""
        try:
            if INLINE in user_meta:
                meta: dict[str, Any] = orjson.loads(_unpack(user_meta[INLINE]))
            elif SIDECAR in user_meta:
                name = user_meta[SIDECAR]
                if not name.startswith(f"{key}.") or "/" in name:
                    raise StoreUnavailable(f"s3 get {key}: metadata names a foreign file {name!r}")
                meta = orjson.loads(await _read(client, self.bucket, self._name(name)))
            else:
                meta = {}
        except (ValueError, zlib.error) as exc:
            raise StoreUnavailable(f"s3 get {key}: unreadable metadata: {exc}") from exc
        meta.setdefault("key", key)
        return meta

    async def metadata(self) -> AsyncIterator[dict[str, Any]]:
        """Every original's metadata, for rebuilding the index. One whose metadata cannot be
        read (damaged, or its sidecar gone) is left out, with a warning; a store that stops
        answering ends the listing with StoreUnavailable."""
        prefix = f"{self.prefix}/originals/" if self.prefix else "originals/"
        async with _mapped("list", prefix):
            client = await self._s3()
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key = item["Key"].rsplit("/", 1)[-1]
                    if not is_key(key):  # a sidecar: read through the original that names it
                        continue
                    meta = await self._listed(client, key, item["Key"])
                    if meta is not None:
                        yield meta

    async def _listed(self, client: Any, key: str, name: str) -> dict[str, Any] | None:
        try:
            head = await client.head_object(Bucket=self.bucket, Key=name)
            return await self._meta(client, key, head.get("Metadata") or {})
        except ClientError as exc:
            if _code(exc) in MISSING:  # deleted since the listing, or its sidecar is gone
                if _code(exc) != "404":
                    log.warning("original %s left out: %s", key, exc)
                return None
            raise
        except StoreUnavailable as exc:  # its metadata is unreadable
            log.warning("original %s left out: %s", key, exc)
            return None

    async def check(self) -> dict[str, Any]:
        info: dict[str, Any] = {"kind": "s3", "bucket": self.bucket, "endpoint": self.endpoint}
        try:
            client = await self._s3()
            await asyncio.wait_for(client.head_bucket(Bucket=self.bucket), 3.0)
        except Exception as exc:  # readiness reports any failure, it never raises
            self._bucket_ready = False
            return {**info, "status": "down", "error": str(exc)[:300]}
        return {**info, "status": "ok"}

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None


def _unpack(packed: str) -> bytes:
    return zlib.decompress(base64.b64decode(packed, validate=True))


def _consume(done: asyncio.Future[None]) -> None:
    """Retrieve a failed bucket check's error, even when every caller stopped waiting."""
    if not done.cancelled():
        done.exception()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


async def _read(client: Any, bucket: str, name: str) -> bytes:
    obj = await client.get_object(Bucket=bucket, Key=name)
    async with obj["Body"] as body:
        data: bytes = await body.read()
    return data


@contextlib.asynccontextmanager
async def _mapped(op: str, key: str) -> AsyncIterator[None]:
    """S3's errors as the store's: refused (StoreUnavailable), not answering (StoreUnreachable)."""
    try:
        yield
    except ClientError as exc:
        raise StoreUnavailable(f"s3 {op} {key}: {exc}") from exc
    except (TimeoutError, BotoCoreError, OSError) as exc:
        raise StoreUnreachable(f"s3 {op} {key}: {exc}") from exc
