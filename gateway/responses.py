"""Sending answers over raw ASGI: images, 304s and JSON errors, with their headers."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from .errors import GatewayError
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


async def send(send: Send, status: int, headers: Headers, body: bytes, *, head: bool) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


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
