"""`GET /v1/providers`: the generator chain, each generator's state, counts and latency."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from .app import App


async def providers(request: Request) -> Response:
    app: App = request.scope["promptpix"]
    return Response(
        orjson.dumps(app.chain.describe()),
        media_type="application/json",
        headers={"cache-control": "no-store", "access-control-allow-origin": "*"},
    )
