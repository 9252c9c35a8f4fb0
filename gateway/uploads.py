"""An upload's body as `POST /v1/assets` takes it: `multipart/form-data` with a `file` part
and an optional `alias` field, or the image itself with `Content-Type: image/...` (and
`?alias=`). Either way no more than the limit (PROMPTPIX_MAX_UPLOAD_MB) is ever kept: a body
that declares more, or turns out larger, is refused (413 `upload_too_large`), after what
is left of it is read and dropped when that is modest (api/bodies.py `drop_rest`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from .api.bodies import declared_over, drop_declared, drop_rest, read_limited
from .errors import (
    BadParameter,
    InvalidBody,
    UnknownField,
    UnsupportedMediaType,
    UploadTooLarge,
)
from .params import split_query

MULTIPART = "multipart/form-data"
RAW_TYPES = ("application/octet-stream",)  # beside any image/...: told apart by its bytes
FIELDS = ("file", "alias")
FIELD_LIMIT = 1024  # a form field other than the file (the alias) is short
SLACK = 64 << 10  # boundaries and part headers around the file
MAX_PARTS = 8


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    alias: str | None  # as given; the caller checks it


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_upload(request: Request, limit: int) -> Upload:
    """The image's bytes and the alias asked for, reading at most `limit` bytes of image."""
    query = split_query(request.url.query)
    for name in query:
        if name != "alias":
            raise UnknownField(f"unknown query parameter '{name}'", param=name)
    alias = query.get("alias")
    media = media_type(request)
    if media == MULTIPART:
        data, form_alias = await _multipart(request, limit)
        if form_alias is not None and alias is not None:
            raise BadParameter("give 'alias' once: in the form or in the query", param="alias")
        alias = form_alias if form_alias is not None else alias
    elif media.startswith("image/") or media in RAW_TYPES:
        data = await _raw(request, limit)
    else:
        raise UnsupportedMediaType(
            "upload multipart/form-data with a 'file' part, or the image itself with "
            "Content-Type: image/..."
        )
    if not data:
        raise InvalidBody("the upload is empty", param="file")
    return Upload(data, alias)


def _too_large(limit: int) -> UploadTooLarge:
    return UploadTooLarge(
        f"an upload is limited to {limit >> 20} MiB (PROMPTPIX_MAX_UPLOAD_MB)", param="file"
    )


async def _raw(request: Request, limit: int) -> bytes:
    return await read_limited(request, limit, _too_large(limit))


@dataclass(slots=True)
class _Part:
    name: str = ""
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


class _Form:
    """The parts of a multipart body as the parser finds them, each bounded as it grows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[_Part] = []
        self._header = b""
        self._value = b""
        self._disposition = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._field,
            "on_header_value": self._val,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
        }

    def _begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise InvalidBody(f"at most {MAX_PARTS} form parts")
        self.parts.append(_Part())
        self._disposition = b""

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _val(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _headers_done(self) -> None:
        kind, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if kind != b"form-data" or not name:
            raise InvalidBody("every form part needs Content-Disposition: form-data; name=...")
        if name not in FIELDS:
            raise UnknownField(f"unknown form field '{name[:64]}'", param=name[:64])
        if any(p.name == name for p in self.parts):
            raise BadParameter(f"'{name}' is given more than once", param=name)
        self.parts[-1].name = name

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.name == "file" and part.size > self.limit:
            raise _too_large(self.limit)
        if part.name != "file" and part.size > FIELD_LIMIT:
            raise BadParameter(f"'{part.name}' is too long", param=part.name)
        part.chunks.append(data[start:end])


async def _multipart(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The `file` part's bytes and the `alias` field, parsed as the body streams in."""
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary", b"")
    if not boundary:
        raise InvalidBody("multipart/form-data needs a boundary in its Content-Type")
    if declared_over(request, limit + SLACK):
        await drop_declared(request)
        raise _too_large(limit)
    form = _Form(limit)
    parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]
    size = 0
    stream = request.stream()
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > limit + SLACK:
                await drop_rest(stream, size)
                raise _too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidBody(f"the multipart body is malformed: {exc}") from None
    parts = {p.name: b"".join(p.chunks) for p in form.parts}
    if "file" not in parts:
        raise BadParameter("the form needs a 'file' part: the image", param="file")
    alias = parts.get("alias")
    try:
        text = alias.decode("utf-8") if alias is not None else None
    except UnicodeDecodeError:
        raise BadParameter("'alias' is not valid UTF-8", param="alias") from None
    return parts["file"], text
