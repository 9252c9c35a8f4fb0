"""The ASGI application: `/i/` straight to the live-image handler, the rest through a router."""

from __future__ import annotations

import dataclasses
import logging
import os

from starlette.routing import Route, Router

from promptpix.cache.backends import build_backends
from promptpix.generators.registry import build_chain, build_llm, build_vision
from promptpix.generators.semantic import one_blas_thread
from promptpix.generators.settings import GeneratorSettings
from promptpix.transforms.executor import TransformPool
from promptpix.transforms.vips import configure

from . import health, providers
from .config import Config
from .errors import MethodNotAllowed, NotFound
from .images import ImageService, ImageSettings
from .live import ROUTE, LiveImages
from .metrics import Metrics
from .projects import DEMO, Projects
from .responses import send_error
from .similar import SemanticSettings, open_semantic
from .types import Message, Receive, Scope, Send

log = logging.getLogger("promptpix")
KNOWN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/v1/providers"})
LIVE_PREFIX = ROUTE + "/"


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await send_error(send, NotFound(f"no route for {scope.get('path', '')[:200]}"))


class _Route(Route):
    """A route whose wrong method gets the gateway's JSON 405, not Starlette's plain text."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.methods))
            await send_error(
                send, MethodNotAllowed(f"{scope['method']} is not allowed here", allow=allow)
            )
            return
        await super().handle(scope, receive, send)


class App:
    def __init__(
        self, config: Config | None = None, generators: GeneratorSettings | None = None
    ) -> None:
        configure()  # libvips: one thread an image
        one_blas_thread()  # numpy: the same
        self.config = config or Config.from_env()
        cfg = self.config
        self.metrics = Metrics()
        self.backends = build_backends(cfg.store, cfg.database_url, cfg.spool_dir)
        self.store = self.backends.store
        gen = generators or GeneratorSettings.from_env(os.environ)
        self.chain = build_chain(gen, max_pixels=cfg.max_source_pixels)
        self.pool = TransformPool(
            cfg.transform_threads or None, None if cfg.transform_queue < 0 else cfg.transform_queue
        )
        self.semantic_settings = SemanticSettings.from_env(cfg.store)
        self.semantic = open_semantic(self.semantic_settings, busy=lambda: self.images.busy())
        self.llm = build_llm(gen)
        self.vision = build_vision(gen)
        self.images = ImageService(
            ImageSettings(
                max_dimension=cfg.max_dimension,
                max_source_pixels=cfg.max_source_pixels,
                generation_timeout_s=cfg.generation_timeout_s,
                memory_cache_bytes=cfg.memory_cache_mb << 20,
                source_cache_bytes=cfg.source_cache_mb << 20,
                lookup_index=self.backends.lookup_index,
            ),
            self.store,
            self.chain,
            self.pool,
            self.metrics,
            self.backends.index,
            self.backends.leases,
            llm=self.llm,
            semantic=self.semantic,
            vision=self.vision,
        )
        demo = dataclasses.replace(DEMO, semantic_reuse=self.semantic_settings.demo_reuse)
        self.projects = Projects([demo] if cfg.demo_enabled else [])
        self.live = LiveImages(
            self.images,
            self.projects,
            cfg,
            self.metrics,
            self.chain.ids,
            similar_cache_control=self.semantic_settings.cache_control,
        )
        self.router = Router(
            routes=[
                _Route("/healthz", health.healthz, methods=["GET", "HEAD"]),
                _Route("/readyz", health.readyz, methods=["GET", "HEAD"]),
                _Route("/metrics", health.metrics, methods=["GET"]),
                _Route("/v1/providers", providers.providers, methods=["GET", "HEAD"]),
            ],
            default=_not_found,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith(LIVE_PREFIX):
                await self.live(scope, receive, send)
                return
            scope["promptpix"] = self
            route = scope["path"] if scope["path"] in KNOWN_ROUTES else "other"
            status = 500

            async def counting_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.router(scope, receive, counting_send)
            finally:
                self.metrics.requests.inc(route, str(status), "")
            return
        if kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.backends.start()
                if self.semantic is not None:
                    await self.semantic.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Generations under way finish and are stored before the process exits.
                await self.images.original_flight.drain()
                await self.images.variant_flight.drain()
                await self.images.drain()
                if self.backends.spool is not None:
                    await self.backends.spool.flush(timeout=5.0)
                if self.semantic is not None:
                    await self.semantic.drain()
                    self.semantic.close()
                if self.llm is not None:
                    await self.llm.aclose()
                if self.vision is not None:
                    await self.vision.aclose()
                self.pool.close()
                await self.chain.close()
                await self.backends.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(config: Config | None = None) -> App:
    _limit_malloc_arenas()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    return App(config)


def _limit_malloc_arenas() -> None:
    """glibc's per-thread arenas let a long-running image server's memory creep up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX = 2
    except (OSError, AttributeError):
        pass
