"""The ASGI application: assembles every part from one `Config`, routes, and runs the
lifespan (start the backends; at shutdown, finish and store what is under way)."""

from __future__ import annotations

import logging
from importlib.metadata import version

from starlette.routing import Router

from promptpix.cache.backends import build_backends
from promptpix.cache.control import Project
from promptpix.cache.semantic import one_blas_thread, open_semantic
from promptpix.generators.registry import build_chain, build_llm, build_vision
from promptpix.transforms.executor import TransformPool
from promptpix.transforms.vips import configure

from .admission import Admission
from .api import admin, docs, llms, openapi, prompts, styles, urls, v2
from .api import assets as asset_routes
from .api import generations as generation_routes
from .api import warm as warm_routes
from .api.routing import JsonRoute as Route
from .api.routing import routes
from .assets import Assets
from .config import Config
from .control import Control
from .delivery import PREFIX as ASSET_PREFIX
from .delivery import AssetImages
from .errors import NotFound
from .generation import Generation
from .generations import Generations
from .health import Health
from .images import Images
from .live import PREFIX, LiveImages
from .mcp_http import PATH as MCP_PATH
from .mcp_http import McpEndpoint
from .metrics import Metrics
from .originals import Originals
from .params import ParseRules
from .playground import ASSET_PATH as PLAYGROUND_ASSETS
from .playground import Playground
from .projects import DEMO_SLUG, Projects, StoredProjects
from .references import References
from .rendering import Renderer
from .responses import send_error
from .reuse import Reuse
from .spending import Spending
from .tiers import Tiers
from .types import Message, Receive, Scope, Send
from .warming import Warming

log = logging.getLogger("promptpix")


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await send_error(send, NotFound(f"no route for {scope.get('path', '')[:200]}"))


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
        store = self.backends.control
        demo = Project(DEMO_SLUG, semantic_reuse=cfg.cache.semantic.demo_reuse)
        self.projects = Projects(StoredProjects(store, demo if cfg.demo_enabled else None))
        self.spending = Spending(store, self.chain, self.metrics)
        self.admission = Admission(
            self.projects,
            store,
            self.spending,
            admin_token=cfg.server.admin_token,
            trusted_proxies=cfg.server.proxies,
        )
        rules = ParseRules(
            generator_ids=frozenset(self.chain.ids),
            max_dimension=cfg.server.max_dimension,
            default_format=cfg.server.default_format,
        )
        self.references = References(self.backends.library)
        self.generations = Generations(
            self.images,
            originals,
            self.backends.library,
            self.references,
            rules,
            self.admission.terms,
            public_url=cfg.server.public_url,
        )
        self.warming = Warming(self.generations)
        self.live = LiveImages(
            self.images,
            self.admission,
            rules,
            self.metrics,
            cache_control=cfg.server.cache_control,
            similar_cache_control=cfg.cache.semantic.cache_control,
            fallback_cache_control=cfg.server.fallback_cache_control,
            references=self.references,
        )
        self.assets = Assets(
            self.backends.library,
            self.backends.store,
            self.tiers,
            self.pool,
            max_source_pixels=ts.max_source_pixels,
            generated=originals.meta,
        )
        self.asset_images = AssetImages(
            self.assets,
            renderer,
            self.tiers,
            self.admission,
            rules,
            self.metrics,
            cache_control=cfg.server.cache_control,
        )
        health = Health(self.backends, self.chain, self.pool, self.images, self.metrics)
        self.metrics.watch(health.gauges)  # several workers: each publishes its own
        self.control = Control(store, self.chain.ids)
        self.docs = docs.Docs()
        self.playground = Playground(
            demo=cfg.demo_enabled,
            max_dimension=cfg.server.max_dimension,
            default_format=cfg.server.default_format,
            public_url=cfg.server.public_url,
        )
        self.mcp = McpEndpoint(self, self.admission, cfg.server.mcp_hosts)
        self.operations = [
            *admin.operations(self.control),
            *urls.operations(self.projects, rules, cfg.server.public_url),
            *prompts.operations(self.llm),
            *styles.operations(self.projects),
            *asset_routes.operations(
                self.assets, self.projects, cfg.server.max_upload_mb, cfg.server.public_url
            ),
            *generation_routes.operations(self.generations, self.projects),
            *warm_routes.operations(self.warming, self.projects),
            llms.operation(rules, cfg.server.public_url, cfg.demo_enabled),
            *v2.operations(
                self.generations, self.admission, self.backends, self.chain, cfg.server.v2_project
            ),
            health.providers_operation(public=cfg.demo_enabled),
            self.docs.operation(),
            self.playground.operation(),
        ]
        self.operations.append(openapi.operation(self.operations, version("promptpix")))
        plain = [
            Route(path, fn, methods=methods)
            for path, fn, methods in (
                ("/healthz", health.healthz, ["GET", "HEAD"]),
                ("/readyz", health.readyz, ["GET", "HEAD"]),
                ("/metrics", health.metrics, ["GET"]),
                (docs.ASSET_PATH, self.docs.asset, ["GET", "HEAD"]),
                (PLAYGROUND_ASSETS, self.playground.asset, ["GET", "HEAD"]),
            )
        ]
        self.router = Router(
            routes=[*plain, *routes(self.operations, self.admission)], default=_not_found
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith(PREFIX):
                await self.live(scope, receive, send)
                return
            if scope["path"].startswith(ASSET_PREFIX):
                await self.asset_images(scope, receive, send)
                return
            if scope["path"] == MCP_PATH:
                await self.mcp(scope, receive, send)
                return
            status = 500

            async def counting_send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.router(scope, receive, counting_send)
            finally:  # counted by the route's template (/v1/projects/{slug}), not its path
                route = getattr(scope.get("route"), "path", "other")
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
                await self.mcp.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        await self.mcp.stop()
        # Generations under way finish and are stored before the process exits.
        await self.generations.drain()
        await self.warming.drain()
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
