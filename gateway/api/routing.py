"""The API's routes, declared once: method, path, who may call it, the body and answer
models. Starlette routes and the OpenAPI document are both made from these declarations,
so the document cannot drift from what the handlers accept and answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..admission import Admission, Principal
from ..errors import MethodNotAllowed
from ..failures import answer_for
from ..responses import COMMON, EXPOSE, Headers
from ..responses import send as send_raw
from .bodies import read_json

Auth = Literal["admin", "key", "admin_or_key", "public"]
JSON = "application/json"
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the request, who is calling, the path's parameters, the body."""

    request: Request
    principal: Principal
    params: dict[str, str]
    body: Any = None


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # Starlette's syntax: /v1/projects/{slug}
    handler: Handler
    summary: str
    auth: Auth = "key"
    scope: str | None = None  # the key's scope it needs (`generate`, `read`, `assets`)
    body: type | None = None  # decoded from JSON into this model
    answer: type | None = None  # the success body's model
    status: int = 200
    errors: tuple[int, ...] = ()  # the failure statuses it may answer, for the document
    query: tuple[tuple[str, str], ...] = ()  # (name, description) of query parameters
    raw_body: bool = False  # the handler reads the body itself (uploads)
    tags: tuple[str, ...] = field(default_factory=tuple)


def json_answer(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = _ENCODER.encode(value)
    response = Response(body, status, media_type=JSON)
    response.headers["cache-control"] = "no-store"
    for raw_name, raw_val in (*COMMON, EXPOSE):
        response.headers[raw_name.decode()] = raw_val.decode()
    for name, val in (headers or {}).items():
        response.headers[name] = val
    return response


def error_answer(exc: BaseException) -> Response:
    mapped = answer_for(exc)
    headers = dict(mapped.headers)
    if mapped.retry_after is not None:
        headers["retry-after"] = str(mapped.retry_after)
    return json_answer(mapped.body(), mapped.status, headers)


def endpoint(op: Operation, admission: Admission) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            params = dict(request.path_params)
            principal = await admission.api(
                request.headers.raw, op.auth, op.scope, params.get("slug")
            )
            body: Any = None
            if op.body is not None and not op.raw_body:
                body = await read_json(request, op.body)
            result = await op.handler(Call(request, principal, params, body))
        except Exception as exc:  # every failure leaves as a JSON answer, never a bare 500
            return error_answer(exc)
        if isinstance(result, Response):
            return result
        return json_answer(result, op.status)

    return run


class JsonRoute(Route):
    """A route whose wrong method gets the gateway's JSON 405, not Starlette's plain text."""

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["method"] == "OPTIONS" and self.methods:
            # A CORS preflight: a page on another origin may call the API with its key
            # (the answers carry `Access-Control-Allow-Origin: *`; keys are sent, never
            # cookies).
            allow = ", ".join(sorted({*self.methods, "OPTIONS"}))
            await send_raw(send, 204, api_preflight(allow), b"", head=True)
            return
        if self.methods and scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.methods))
            response = error_answer(
                MethodNotAllowed(f"{scope['method']} is not allowed here", allow=allow)
            )
            await response(scope, receive, send)
            return
        await super().handle(scope, receive, send)


def api_preflight(methods: str) -> Headers:
    return [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", methods.encode()),
        (b"access-control-allow-headers", b"Authorization, X-API-Key, Content-Type"),
        (b"access-control-max-age", b"86400"),
        (b"content-length", b"0"),
    ]


def routes(operations: Sequence[Operation], admission: Admission) -> list[Route]:
    """One Starlette route per path, dispatching on the method."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = op
    out: list[Route] = []
    # Fixed paths first: `/v1/generations/batch` before `/v1/generations/{id}`, which would
    # otherwise also match it for a method only one of them has (a preflight, a 405).
    for path, ops in sorted(by_path.items(), key=lambda item: "{" in item[0]):
        handlers = {method: endpoint(op, admission) for method, op in ops.items()}

        async def dispatch(request: Request, handlers: Any = handlers) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)  # type: ignore[no-any-return]

        methods = sorted({*ops, *(["HEAD"] if "GET" in ops else [])})
        out.append(JsonRoute(path, dispatch, methods=methods))
    return out
