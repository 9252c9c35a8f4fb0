"""The S3 store (MinIO, AWS S3, Cloudflare R2, SeaweedFS) through aiobotocore.

Each original is two objects: the image, then `KEY.json` with its metadata. The JSON is
written last and only if absent (`If-None-Match: *`), so it marks a complete original and
the first writer wins; the store alone is enough to rebuild the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import blake3
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from .filestore import EXTENSIONS
from .keys import is_key
from .store import StoredOriginal, StoreUnavailable, StoreUnreachable

MISSING = {"NoSuchKey", "404", "NotFound"}


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
                s3={"addressing_style": "path"} if endpoint else {},
            ),
        }
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._bucket_ready = False

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> S3Store:
        env = os.environ if env is None else env
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError("an s3:// store URL needs a bucket: s3://bucket/prefix")
        return cls(
            bucket,
            prefix,
            endpoint=env.get("PROMPTPIX_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        )

    def _name(self, key: str, suffix: str) -> str:
        if not is_key(key):
            raise ValueError("not a content key")
        path = f"originals/{key[:2]}/{key}{suffix}"
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
            await self._ensure_bucket(self._client)
        return self._client

    async def _ensure_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in MISSING:
                raise
            with contextlib.suppress(ClientError):  # another replica may create it first
                await client.create_bucket(Bucket=self.bucket)
        self._bucket_ready = True

    async def get(self, key: str) -> StoredOriginal | None:
        async with _mapped("get", key):
            client = await self._s3()
            meta = await self._meta(client, key)
            if meta is None:
                return None
            try:
                data = await _read(client, self.bucket, self._file(key, meta))
            except ClientError as exc:
                if _code(exc) in MISSING:
                    return None
                raise
        return StoredOriginal(key, data, meta)

    def _file(self, key: str, meta: Mapping[str, Any]) -> str:
        name = str(meta.get("file") or f"{key}{meta.get('ext', '')}")
        if not name.startswith(key) or "/" in name:
            raise StoreUnavailable(f"s3 get {key}: metadata names a foreign file {name!r}")
        return self._name(key, name[len(key) :])

    async def head(self, key: str) -> bool:
        """Whether a complete original (its metadata object) is stored, without reading it."""
        async with _mapped("head", key):
            client = await self._s3()
            try:
                await client.head_object(Bucket=self.bucket, Key=self._name(key, ".json"))
            except ClientError as exc:
                if _code(exc) in MISSING:
                    return False
                raise
        return True

    async def put(self, key: str, data: bytes, meta: dict[str, Any]) -> None:
        content_type = str(meta.get("content_type", "application/octet-stream"))
        ext = EXTENSIONS.get(content_type, ".bin")
        # The image's name carries a digest of its bytes: a writer that loses the race for
        # the metadata never overwrites the image the winner's metadata describes.
        file = f"{key}.{blake3.blake3(data).hexdigest()[:16]}{ext}"
        record = {**meta, "key": key, "ext": ext, "file": file}
        async with _mapped("put", key):
            client = await self._s3()
            await client.put_object(
                Bucket=self.bucket,
                Key=self._name(key, file[len(key) :]),
                Body=data,
                ContentType=content_type,
                Metadata={"promptpix-key": key},
            )
            try:
                await client.put_object(
                    Bucket=self.bucket,
                    Key=self._name(key, ".json"),
                    Body=orjson.dumps(record),
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise
                # Another replica stored this original first: its copy stands, ours goes.
                theirs = await self._meta(client, key)
                if theirs is not None and theirs.get("file") != file:
                    with contextlib.suppress(ClientError):
                        await client.delete_object(
                            Bucket=self.bucket, Key=self._name(key, file[len(key) :])
                        )

    async def _meta(self, client: Any, key: str) -> dict[str, Any] | None:
        try:
            meta: dict[str, Any] = orjson.loads(
                await _read(client, self.bucket, self._name(key, ".json"))
            )
        except ClientError as exc:
            if _code(exc) in MISSING:
                return None
            raise
        return meta

    async def metadata(self) -> AsyncIterator[dict[str, Any]]:
        """Every original's metadata, for rebuilding the index."""
        client = await self._s3()
        prefix = f"{self.prefix}/originals/" if self.prefix else "originals/"
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if name.endswith(".json") and is_key(name[:-5]):
                    meta = orjson.loads(await _read(client, self.bucket, item["Key"]))
                    meta.setdefault("key", name[:-5])
                    yield meta

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
