"""`/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from .app import App


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status,
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


async def readyz(request: Request) -> Response:
    app: App = request.scope["promptpix"]
    store = await app.store.check()
    checks: dict[str, Any] = {
        "store": store,
        "generators": {
            "status": "ok",
            "chain": [
                {"id": gid, "calls": s.calls, "failures": s.failures}
                for gid, s in app.chain.stats.items()
            ],
        },
        "transforms": {
            "status": "ok" if app.pool.pending < app.pool.threads + app.pool.queue else "busy",
            "threads": app.pool.threads,
            "pending": app.pool.pending,
            "queue": app.pool.queue,
        },
        "index": await app.backends.index.check(),
    }
    # Only the store is essential: without the index, stored images are still served.
    if checks["index"].get("status") == "down":
        checks["index"]["status"] = "degraded"
    states = {c["status"] for c in checks.values()}
    status = "down" if "down" in states else "degraded" if states - {"ok"} else "ok"
    return _json({"status": status, "checks": checks}, 503 if status == "down" else 200)


def gauges(app: App) -> dict[str, float]:
    """This process's gauges, by their names in `metrics.GAUGES`."""
    images = app.images
    return {
        "promptpix_memory_tier_bytes": images.variants.bytes_used,
        "promptpix_memory_tier_entries": len(images.variants),
        "promptpix_source_tier_bytes": images.originals.bytes_used + images.pixels.bytes_used,
        "promptpix_transforms_pending": app.pool.pending,
        "promptpix_generations_in_flight": len(images.original_flight),
    }


async def metrics(request: Request) -> Response:
    app: App = request.scope["promptpix"]
    return Response(
        app.metrics.render(gauges(app)),
        media_type=CONTENT_TYPE,
        headers={"cache-control": "no-store"},
    )
