"""The ASGI application: assembles every part from one `Config`, routes, and runs the
lifespan (start the backends; at shutdown, finish and store what is under way)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router

from promptpix.cache.backends import build_backends
from promptpix.cache.semantic import one_blas_thread, open_semantic
from promptpix.generators.registry import build_chain, build_llm, build_vision
from promptpix.transforms.executor import TransformPool
from promptpix.transforms.vips import configure

from .admission import Admission
from .config import Config
from .errors import MethodNotAllowed, NotFound
from .generation import Generation
from .health import Health
from .images import Images
from .live import PREFIX, LiveImages
from .metrics import Metrics
from .originals import Originals
from .params import ParseRules
from .projects import DEMO_SLUG, Project, Projects, StaticProjects
from .rendering import Renderer
from .responses import send_error
from .reuse import Reuse
from .tiers import Tiers
from .types import Message, Receive, Scope, Send

log = logging.getLogger("promptpix")
Endpoint = Callable[[Request], Awaitable[Response]]


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
    def __init__(self, config: Config | None = None) -> None:
        configure()  # libvips: one thread an image, no cache, allow-listed loaders
        one_blas_thread()  # numpy: the same
        self.config = cfg = config or Config()
        self.metrics = Metrics()
        self.backends = build_backends(cfg.cache)
        self.chain = build_chain(cfg.generators, max_pixels=cfg.transforms.max_source_pixels)
        self.llm = build_llm(cfg.generators)
        self.vision = build_vision(cfg.generators)
        ts = cfg.transforms
        self.pool = TransformPool(ts.threads or None, None if ts.queue < 0 else ts.queue)
        self.tiers = Tiers(cfg.cache.memory_cache_mb << 20, cfg.cache.source_cache_mb << 20)
        self.semantic = open_semantic(cfg.cache, busy=lambda: self.images.busy())
        index = self.backends.index
        generation = Generation(
            self.chain,
            self.pool,
            self.metrics,
            index,
            max_source_pixels=ts.max_source_pixels,
            llm=self.llm,
            vision=self.vision,
        )
        originals = Originals(
            self.tiers,
            self.backends.store,
            index,
            self.backends.leases,
            generation,
            self.metrics,
            max_source_pixels=ts.max_source_pixels,
            lookup_index=self.backends.lookup_index,
            semantic=self.semantic,
        )
        renderer = Renderer(
            self.tiers,
            self.pool,
            self.metrics,
            max_dimension=cfg.server.max_dimension,
            max_source_pixels=ts.max_source_pixels,
        )
        reuse = None
        if self.semantic is not None:
            reuse = Reuse(self.semantic, self.tiers, self.backends.store, originals, renderer)
        self.images = Images(
            self.tiers,
            originals,
            renderer,
            index,
            self.pool,
            generation_timeout_s=cfg.server.generation_timeout_s,
            reuse=reuse,
        )
        demo = Project(DEMO_SLUG, semantic_reuse=cfg.cache.semantic.demo_reuse)
        self.projects = Projects(StaticProjects([demo] if cfg.demo_enabled else []))
        self.admission = Admission(self.projects)
        rules = ParseRules(
            generator_ids=frozenset(self.chain.ids),
            max_dimension=cfg.server.max_dimension,
            default_format=cfg.server.default_format,
        )
        self.live = LiveImages(
            self.images,
            self.admission,
            rules,
            self.metrics,
            cache_control=cfg.server.cache_control,
            similar_cache_control=cfg.cache.semantic.cache_control,
        )
        health = Health(self.backends, self.chain, self.pool, self.images, self.metrics)
        self.metrics.watch(health.gauges)  # several workers: each publishes its own
        self.routes: dict[str, tuple[Endpoint, list[str]]] = {
            "/healthz": (health.healthz, ["GET", "HEAD"]),
            "/readyz": (health.readyz, ["GET", "HEAD"]),
            "/metrics": (health.metrics, ["GET"]),
            "/v1/providers": (health.providers, ["GET", "HEAD"]),
        }
        self.router = Router(
            routes=[_Route(path, fn, methods=m) for path, (fn, m) in self.routes.items()],
            default=_not_found,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith(PREFIX):
                await self.live(scope, receive, send)
                return
            route = scope["path"] if scope["path"] in self.routes else "other"
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
                await self.projects.start()
                if self.semantic is not None:
                    await self.semantic.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        # Generations under way finish and are stored before the process exits.
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
        await self.projects.close()
        self.pool.close()
        await self.chain.close()
        await self.backends.close()


def create_app() -> App:
    """The factory the HTTP server's workers call: the configuration from the environment
    (the CLI has checked it before starting them)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    return App(Config.from_env())
