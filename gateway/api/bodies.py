"""Request bodies: JSON only, bounded in size, decoded straight into the route's model.

A body over the limit is refused (413) and never kept (a modest one is read to its end
first, so that the client reads the answer); anything but JSON is 415 (JSON labelled as a
form, as `curl -d` sends it, is read); a body that does not fit the model (a wrong type, a
missing or unknown field) is 400 naming the field.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TypeVar

import msgspec
from starlette.requests import Request

from ..errors import (
    BadParameter,
    BodyTooLarge,
    GatewayError,
    InvalidBody,
    UnknownField,
    UnsupportedMediaType,
)

T = TypeVar("T")
MAX_BODY = 1 << 20  # 1 MiB: any JSON body of the API fits in far less
DROP_AT_MOST = 8 << 20  # a refused body up to this size is read to its end, then answered

_FIELD = re.compile(r" - at `\$\.?([^`\[]*)")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


async def drop_rest(stream: AsyncIterator[bytes], size: int = 0) -> None:
    """Read and drop what is left of a refused body (`size` bytes of it read already), up
    to DROP_AT_MOST in all, so that a client still sending reads the 413 rather than a
    reset connection. A larger one is not read: the connection closes under it."""
    async for chunk in stream:
        size += len(chunk)
        if size > DROP_AT_MOST:
            return


def declared_over(request: Request, limit: int) -> bool:
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > limit


async def drop_declared(request: Request) -> None:
    """Before refusing a body that declares too many bytes: drop it, if it is not huge."""
    if not declared_over(request, DROP_AT_MOST):
        await drop_rest(request.stream())


async def read_limited(request: Request, limit: int, too_large: GatewayError) -> bytes:
    """The raw body, of at most `limit` bytes. One that says it is longer, or turns out
    longer, is dropped (see drop_rest) and refused with `too_large`."""
    if declared_over(request, limit):
        await drop_declared(request)
        raise too_large
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await drop_rest(stream, size)
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    return await read_limited(request, limit, BodyTooLarge(f"the body is limited to {limit} bytes"))


FORM = "application/x-www-form-urlencoded"


async def read_json(request: Request, model: type[T], limit: int = MAX_BODY) -> T:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/json", "", FORM):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    body = await read_body(request, limit)
    # `curl -d '{...}'` labels JSON as a form; a body that opens an object is taken as JSON.
    if media == FORM and not body.lstrip().startswith(b"{"):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    if not body.strip():
        body = b"{}"
    return decode(body, model)


def decode(body: bytes, model: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=model)
    except msgspec.ValidationError as exc:
        raise body_error(exc) from None
    except msgspec.DecodeError:
        raise InvalidBody("the body is not valid JSON") from None


def convert(value: object, model: type[T]) -> T:
    """An already-decoded value (an item of a batch, say) into `model`."""
    try:
        return msgspec.convert(value, model)
    except msgspec.ValidationError as exc:
        raise body_error(exc) from None


def body_error(exc: msgspec.ValidationError) -> BadParameter:
    text = str(exc)
    unknown = _UNKNOWN.search(text)
    at = _FIELD.search(text)
    field = at[1] if at else ""
    if unknown:
        name = f"{field}.{unknown[1]}" if field else unknown[1]
        return UnknownField(f"unknown field '{name}'", param=name)
    missing = _MISSING.search(text)
    if missing:
        field = f"{field}.{missing[1]}" if field else missing[1]
    what = text.split(" - at ")[0]
    return InvalidBody(f"{field or 'body'}: {what[:1].lower()}{what[1:]}", param=field or None)
