"""Request bodies: JSON only, bounded in size, decoded straight into the route's model.

A body over the limit is refused (413) before it is all read; anything but JSON is 415 (JSON
labelled as a form, as `curl -d` sends it, is read); a
body that does not fit the model (a wrong type, a missing or unknown field) is 400 naming
the field.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from starlette.requests import Request

from ..errors import BadParameter, BodyTooLarge, InvalidBody, UnknownField, UnsupportedMediaType

T = TypeVar("T")
MAX_BODY = 1 << 20  # 1 MiB: any JSON body of the API fits in far less
DROP_AT_MOST = 8 << 20  # a refused body up to this size is read to its end, then answered

_FIELD = re.compile(r" - at `\$\.?([^`\[]*)")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


async def drop_declared(request: Request) -> None:
    """Before refusing a body that declares too many bytes: read and drop them, up to
    DROP_AT_MOST, so a client still sending reads the 413 rather than a reset connection.
    A larger one is not read: the connection closes under it."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > DROP_AT_MOST:
        return
    async for _ in request.stream():
        pass


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The raw body; refused when it passes `limit` (or says it will)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        await drop_declared(request)
        raise BodyTooLarge(f"the body is limited to {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    over = False
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            # Too long without a declared length: the rest is read and dropped, as for a
            # declared one (up to DROP_AT_MOST), so that the client reads the 413.
            over = True
            chunks.clear()
            if size > DROP_AT_MOST:
                break
            continue
        chunks.append(chunk)
    if over:
        raise BodyTooLarge(f"the body is limited to {limit} bytes")
    return b"".join(chunks)


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
