"""`/healthz`, `/readyz` and `/metrics`: the gateway's own state."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from promptpix.cache.backends import Backends
from promptpix.generators.chain import Chain
from promptpix.transforms.executor import TransformPool

from .api.routing import Call, Operation
from .images import Images
from .metrics import CONTENT_TYPE, Metrics


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data),
        status,
        media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


class Health:
    def __init__(
        self,
        backends: Backends,
        chain: Chain,
        pool: TransformPool,
        images: Images,
        metrics: Metrics,
    ) -> None:
        self.backends = backends
        self.chain = chain
        self.pool = pool
        self.images = images
        self.registry = metrics

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        pool = self.pool
        checks: dict[str, dict[str, Any]] = {
            "store": await self.backends.store.check(),
            "generators": {
                "status": "ok",
                "chain": [
                    {"id": gid, "calls": s.calls, "failures": s.failures}
                    for gid, s in self.chain.stats.items()
                ],
            },
            "transforms": {
                "status": "ok" if pool.pending < pool.threads + pool.queue else "busy",
                "threads": pool.threads,
                "pending": pool.pending,
                "queue": pool.queue,
            },
            "index": await self.backends.index.check(),
        }
        # Only the store is essential: without the index, stored images are still served.
        if checks["index"].get("status") == "down":
            checks["index"]["status"] = "degraded"
        states = {c["status"] for c in checks.values()}
        status = "down" if "down" in states else "degraded" if states - {"ok"} else "ok"
        return json_response({"status": status, "checks": checks}, 503 if status == "down" else 200)

    def gauges(self) -> dict[str, float]:
        """This process's gauges, by their names in `metrics.GAUGES`."""
        tiers = self.images.tiers
        return {
            "promptpix_memory_tier_bytes": tiers.variants.bytes_used,
            "promptpix_memory_tier_entries": len(tiers.variants),
            "promptpix_source_tier_bytes": tiers.originals.bytes_used + tiers.pixels.bytes_used,
            "promptpix_transforms_pending": self.pool.pending,
            "promptpix_generations_in_flight": len(self.images.originals.flight),
        }

    async def metrics(self, request: Request) -> Response:
        """Prometheus text for the whole gateway (every worker's counts summed)."""
        return Response(
            self.registry.render(self.gauges()),
            media_type=CONTENT_TYPE,
            headers={"cache-control": "no-store"},
        )

    def providers_operation(self, *, public: bool) -> Operation:
        """`GET /v1/providers`: the chain, each generator's state, counts and latency; open
        to anyone while the public demo project is, else to a key or the admin token."""

        async def providers(call: Call) -> Any:
            return self.chain.describe()

        return Operation(
            "GET",
            "/v1/providers",
            providers,
            "The generator chain, each generator's circuit, calls, failures and latency",
            auth="public" if public else "admin_or_key",
            errors=() if public else (401, 403),
            tags=("service",),
        )
