"""Sending answers over raw ASGI: images, 304s and JSON errors, with their headers."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from .errors import GatewayError
from .tiers import Variant
from .types import Send

Headers = list[tuple[bytes, bytes]]

COMMON: Headers = [
    (b"access-control-allow-origin", b"*"),
    (b"x-content-type-options", b"nosniff"),
]
EXPOSE = (
    b"access-control-expose-headers",
    b"ETag, X-Cache-Status, X-Image-Id, X-Generator, X-Semantic-Similarity, Server-Timing, "
    b"Retry-After, RateLimit, RateLimit-Policy, WWW-Authenticate",
)
TIMING_ALLOW = (b"timing-allow-origin", b"*")
# The answer to a CORS preflight (`OPTIONS`) of an image URL.
PREFLIGHT: Headers = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"*"),
    (b"access-control-max-age", b"86400"),
    (b"content-length", b"0"),
]


async def send(send: Send, status: int, headers: Headers, body: bytes, *, head: bool) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def conditions(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """What an image request's answer depends on: its `Accept` and `If-None-Match`."""
    accept = if_none_match = b""
    for name, value in headers:
        if name == b"accept":
            accept = value
        elif name == b"if-none-match":
            if_none_match = value
    return accept, if_none_match


def etag_of(key: str) -> bytes:
    return b'"' + key.encode() + b'"'


def image_headers(variant: Variant, negotiated: bool, cache_control: bytes) -> Headers:
    """An image answer's headers (SPEC §1) but its cache status and timing; `negotiated`
    (`fmt=auto`): the format came from `Accept`."""
    headers = [
        (b"content-type", variant.content_type.encode()),
        (b"content-length", str(len(variant.data)).encode()),
        (b"cache-control", cache_control),
        (b"etag", etag_of(variant.key)),
        (b"x-image-id", variant.original_key.encode()),
        (b"x-generator", variant.generator.encode()),
        *COMMON,
        EXPOSE,
        TIMING_ALLOW,
    ]
    if negotiated:
        headers.append((b"vary", b"Accept"))
    return headers


def not_modified_headers(key: str, negotiated: bool, cache_control: bytes) -> Headers:
    """A 304's headers for the variant `key`."""
    headers = [(b"etag", etag_of(key)), (b"cache-control", cache_control), *COMMON]
    if negotiated:
        headers.append((b"vary", b"Accept"))
    return headers


def json_headers(length: int) -> Headers:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
        (b"cache-control", b"no-store"),
        *COMMON,
        EXPOSE,
    ]


async def send_error(send_: Send, exc: GatewayError, *, head: bool = False) -> None:
    body = orjson.dumps(exc.body())
    headers = json_headers(len(body))
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    headers.extend((name.encode(), value.encode()) for name, value in exc.headers.items())
    await send(send_, exc.status, headers, body, head=head)


def server_timing(stages: Iterable[tuple[str, float]]) -> bytes:
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in stages).encode()


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """`If-None-Match` holds our (strong or weak) ETag, or `*`."""
    value = if_none_match.strip()
    if value == b"*":
        return True
    for tag in value.split(b","):
        tag = tag.strip()
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False
