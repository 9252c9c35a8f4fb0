"""The JSON API's generations: a body becomes the live URL's parameters (one key space, one
quota, one history), the image is made or found by the same pipeline as `/i/`, and what
happened is recorded in the history and answered.

A generation whose references a live URL cannot name (a flow's `@last`, an id in
`references`) is delivered by its original's key at `/a/{project}/{key}`; every other one
by its `/i/` URL, which gives the same image to anyone who writes it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from cachetools import LRUCache

from promptpix.cache.batch import GroupWrite
from promptpix.cache.control import Project
from promptpix.cache.keys import variant_key
from promptpix.cache.library import METADATA_KEY, GenerationRecord, Library
from promptpix.generators.ratios import ratio_text

from .api.models import (
    CacheOut,
    ErrorOut,
    FocalPoint,
    GenerationBody,
    GenerationOut,
    GenerationUrls,
    ImageOut,
    PromptOut,
)
from .errors import BadParameter, GenerationTimeout, UnknownFlow
from .failures import answer_for
from .generation import Terms
from .images import Images
from .originals import Originals
from .params import ImageRequest, ParseRules, parse_fields
from .references import FlowOutputs, References, Resolved
from .tiers import HIT, MISS, PLACEHOLDER, SIMILAR, TRANSFORM, Variant
from .urls import asset_url, live_url, srcset, widths

log = logging.getLogger("promptpix.generations")

MAX_METADATA_BYTES = 4096
PREVIEW_WIDTH = 512
PRESETS = {"thumb": (256, 256), "card": (640, 400), "og": (1200, 630), "hero": (1920, 1080)}
ANCHORS = {"smart": "attention"}  # the Image Builder's name for the saliency crop
URL_SETS = 10_000
ID = re.compile(r"[a-z]{1,8}_[0-9a-f]{20}")
BACKGROUND_WAITS = 6  # a queued generation waits this many request timeouts at most


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked request: what to make, for whom, in which flow."""

    project: Project
    body: GenerationBody
    fields: dict[str, str]  # the live URL's parameters
    request: ImageRequest
    resolved: Resolved
    flow_id: str | None
    parent_id: str | None
    terms: Terms
    base: str  # the public base URL the answer's URLs start with
    metadata: dict[str, str]  # the body's, as text: what the history filters on


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the pipeline answered, and the original's recorded metadata."""

    prepared: Prepared
    variant: Variant
    status: str  # HIT, TRANSFORM, MISS, SIMILAR or PLACEHOLDER
    meta: dict[str, Any]
    elapsed_ms: float


# A live parameter's error, told in the body's own names.
BODY_NAMES = {
    "ar": "aspect_ratio",
    "neg": "negative_prompt",
    "anchor": "options.crop_anchor",
    "rmbg": "options.remove_background",
}


def in_body_names(exc: BadParameter) -> BadParameter:
    if exc.param in BODY_NAMES:
        theirs = BODY_NAMES[exc.param]
        exc.message = exc.message.replace(f"'{exc.param}'", f"'{theirs}'")
        exc.param = theirs
    return exc


def fields_of(body: GenerationBody) -> dict[str, str]:
    """The body's parameters as a live URL's query would carry them."""
    out = {"prompt": body.prompt}
    for name, value in (
        ("ar", body.aspect_ratio),
        ("style", body.style),
        ("neg", body.negative_prompt),
        ("model", body.model),
    ):
        if value is not None:
            out[name] = value
    if body.seed is not None:
        out["seed"] = str(body.seed)
    if body.enhance is not None:
        out["enhance"] = "1" if body.enhance else "0"
    options = body.options
    if options is not None:
        if options.remove_background:
            out["rmbg"] = "1"
        if options.crop_anchor is not None:
            out["anchor"] = ANCHORS.get(options.crop_anchor, options.crop_anchor)
    return out


def check_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """Free key/values of at most 4 KB; answered as given, filtered on as text."""
    if len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
        raise BadParameter(f"'metadata' is limited to {MAX_METADATA_BYTES} bytes", param="metadata")
    out = {}
    for key, value in metadata.items():
        if not METADATA_KEY.match(key):
            raise BadParameter(
                "metadata keys are 1..64 of A-Z a-z 0-9 _ . : -", param=f"metadata.{key[:64]}"
            )
        text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
        if "\x00" in text:
            raise BadParameter("metadata values cannot hold NUL", param=f"metadata.{key}")
        out[key] = text
    return out


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def is_id(prefix: str, text: str) -> bool:
    """Whether `text` has the shape of an id `new_id(prefix)` makes (anything else is
    unknown without asking the database)."""
    return ID.fullmatch(text) is not None and text.startswith(prefix + "_")


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Generations:
    def __init__(
        self,
        images: Images,
        originals: Originals,
        library: Library,
        references: References,
        rules: ParseRules,
        terms: Callable[[Project, str, Sequence[tuple[bytes, bytes]]], Terms],
        *,
        public_url: str = "",
    ) -> None:
        self.images = images
        self.originals = originals
        self.library = library
        self.references = references
        self.rules = rules
        self.terms = terms
        self.public_url = public_url
        self._background: set[asyncio.Task[None]] = set()
        # Records of answers made together are written in one transaction; each answer
        # still leaves only once its record is committed.
        self._history: GroupWrite[GenerationRecord] = GroupWrite(library.add_generations)
        # (project, base, fields, key) -> the project as it was and its URLs: a changed
        # project (a new secret) is a new object, and signs anew.
        self._urls: LRUCache[
            tuple[int, str, tuple[tuple[str, str], ...], str], tuple[Project, GenerationUrls]
        ] = LRUCache(URL_SETS)

    # --- one generation ----------------------------------------------------------------

    async def prepare(
        self,
        project: Project,
        body: GenerationBody,
        *,
        base: str,
        peer: str,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> Prepared:
        """Every check that needs no generator: a bad body is a 4xx before anything runs."""
        fields = fields_of(body)
        metadata = check_metadata(body.metadata)
        flow, parent = None, None
        if body.flow_id is not None:
            if not is_id("flow", body.flow_id):
                raise UnknownFlow(f"no flow {body.flow_id[:64]!r} in this project", param="flow_id")
            flow, parent = await self._flow(project.slug, body.flow_id)
        try:
            request = parse_fields(fields, project, self.rules)
        except BadParameter as exc:
            raise in_body_names(exc) from None
        resolved = await self.references.resolve(
            project.slug, request.gen.prompt, body.references, flow
        )
        if resolved.keys:
            gen = dataclasses.replace(request.gen, references=resolved.keys)
            request = dataclasses.replace(request, gen=gen)
        return Prepared(
            project,
            body,
            fields,
            request,
            resolved,
            body.flow_id,
            parent,
            self.terms(project, peer, headers),
            self.public_url or base,
            metadata,
        )

    async def _flow(self, project: str, flow_id: str) -> tuple[FlowOutputs, str | None]:
        if await self.library.flow(project, flow_id) is None:
            raise UnknownFlow(f"no flow {flow_id[:64]} in this project", param="flow_id")
        done = [s for s in await self.library.flow_steps(project, flow_id) if s.original_key]
        done = [s for s in done if s.status == "completed"]
        if not done:
            return FlowOutputs(), None
        return FlowOutputs(done[0].original_key, done[-1].original_key), done[-1].id

    async def make(self, prepared: Prepared, patient: bool = False) -> Outcome:
        """The image through the live pipeline: the same key, tiers, quota and history.
        `patient` (a queued generation, nobody waiting on the connection): a generation
        slower than a request may wait is waited for again, up to BACKGROUND_WAITS times."""
        started = time.perf_counter()
        request = prepared.request
        vkey = variant_key(request.gen.key, request.transform)
        project = prepared.project
        waits = BACKGROUND_WAITS if patient else 1
        for attempt in range(waits):
            try:
                variant, status = await self.images.variant(
                    request.gen,
                    request.transform,
                    vkey,
                    reuse=project.semantic_reuse,
                    terms=prepared.terms,
                )
                break
            except TimeoutError:  # the generation goes on: a queued one waits for it
                if attempt + 1 == waits:
                    raise
        meta = await self.originals.meta(variant.original_key) or {}
        elapsed = (time.perf_counter() - started) * 1000
        return Outcome(prepared, variant, status, meta, elapsed)

    # --- what is answered ------------------------------------------------------------

    def answer(self, outcome: Outcome, record: GenerationRecord) -> GenerationOut:
        prepared, variant, meta = outcome.prepared, outcome.variant, outcome.meta
        status = outcome.status
        focal = meta.get("focal_point") or {"x": 0.5, "y": 0.5}
        urls = self.urls(prepared, variant.original_key)
        timings = {k: round(v, 1) for k, v in variant.timings.items()} if status != HIT else {}
        timings["total"] = round(outcome.elapsed_ms, 1)
        body = prepared.body
        return GenerationOut(
            id=record.id,
            status="completed",
            created_at=iso(record.created_at),
            status_url=self.status_url(prepared.base, record.id),
            flow_id=prepared.flow_id,
            parent_id=prepared.parent_id,
            image=ImageOut(
                url=urls.live,
                width=variant.width,
                height=variant.height,
                content_type=variant.content_type,
                bytes=len(variant.data),
            ),
            urls=urls,
            original_key=variant.original_key,
            generator=variant.generator,
            model=str(meta.get("model", "")),
            fallback_used=bool(meta.get("fallback_used", False)),
            generators_attempted=list(meta.get("generators_attempted", [variant.generator])),
            prompt=PromptOut(given=body.prompt, sent=str(meta.get("prompt_sent", body.prompt))),
            aspect_ratio=ratio_text(prepared.request.transform.view),
            native_ratio=ratio_text(prepared.request.gen.ratio),
            style=prepared.request.gen.style,
            seed=prepared.request.gen.seed,
            references=list(prepared.resolved.keys),
            aliases=list(prepared.resolved.aliases),
            focal_point=FocalPoint(x=float(focal["x"]), y=float(focal["y"])),
            timings_ms=timings,
            cache=CacheOut(
                hit=status == HIT,
                stored=status in (HIT, TRANSFORM),
                generated=status == MISS,
                similar=status == SIMILAR,
                placeholder=status == PLACEHOLDER,
            ),
            metadata=dict(body.metadata),
            similarity=variant.similarity,
            base64=(
                base64.b64encode(variant.data).decode()
                if body.options is not None and body.options.return_base64
                else None
            ),
        )

    def urls(self, prepared: Prepared, original_key: str) -> GenerationUrls:
        """The live URL and presets; by the original's key when no live URL can name it.
        A repeat reuses them: they depend on nothing else, and eleven signed URLs are most
        of what answering a stored image costs."""
        by_key = self._by_key(prepared)
        name = (
            id(prepared.project),
            prepared.base,
            tuple(prepared.fields.items()),
            original_key if by_key else "",
        )
        known = self._urls.get(name)
        if known is not None and known[0] is prepared.project:
            return known[1]
        made = self._make_urls(prepared, original_key)
        self._urls[name] = (prepared.project, made)
        return made

    def _make_urls(self, prepared: Prepared, original_key: str) -> GenerationUrls:
        project, base = prepared.project, prepared.base
        by_key = self._by_key(prepared)
        fields = dict(prepared.fields)
        prefix = "/i/"
        if by_key:  # no generation parameters: the key names the original
            fields = {k: v for k, v in fields.items() if k in ("rmbg", "anchor")}
            prefix = f"/a/{project.slug}/"

        def url(extra: dict[str, str]) -> str:
            return self._url(base, project, {**fields, **extra}, prefix, original_key, by_key)

        native = ratio_text(prepared.request.gen.ratio)
        original = {k: v for k, v in fields.items() if k not in ("rmbg", "anchor")}
        original["fmt"] = "png"
        if not by_key:
            original["ar"] = native
        # A preset crops this image: its ratio is written out, or `w`x`h` would choose
        # another (and so another original, another generation).
        view = (
            {} if by_key or "ar" in fields else {"ar": ratio_text(prepared.request.transform.view)}
        )
        presets = {
            name: url({**view, "w": str(w), "h": str(h), "fit": "cover"})
            for name, (w, h) in PRESETS.items()
        }
        candidates = widths(fields, self.rules.max_dimension)
        if by_key:
            set_ = ", ".join(f"{url({'w': str(w)})} {w}w" for w in candidates)
        else:
            set_ = srcset(base, project, fields, candidates)
        return GenerationUrls(
            original=self._url(base, project, original, prefix, original_key, by_key),
            live=url({}),
            srcset=set_,
            preview=url({"w": str(PREVIEW_WIDTH), "fmt": "webp"}),
            **presets,
        )

    @staticmethod
    def _by_key(prepared: Prepared) -> bool:
        """Whether a live URL cannot name this image: references that are not the prompt's
        own `@alias`es (a flow's outputs, ids or aliases given in `references`)."""
        if not prepared.resolved.keys:
            return False
        if prepared.body.references:
            return True
        return len(prepared.resolved.aliases) != len(prepared.resolved.keys)

    @staticmethod
    def _url(
        base: str,
        project: Project,
        fields: dict[str, str],
        prefix: str,
        original_key: str,
        by_key: bool,
    ) -> str:
        if not by_key:
            return live_url(base, project, fields, prefix)
        return asset_url(base, project, original_key, fields)

    @staticmethod
    def status_url(base: str, id: str) -> str:
        return f"{base.rstrip('/')}/v1/generations/{id}"

    # --- the history ---------------------------------------------------------------

    def new_record(self, prepared: Prepared, status: str = "running") -> GenerationRecord:
        return GenerationRecord(
            id=new_id("gen"),
            project=prepared.project.slug,
            status=status,  # type: ignore[arg-type]
            created_at=time.time(),
            flow_id=prepared.flow_id,
            parent_id=prepared.parent_id,
            aliases=list(prepared.resolved.aliases),
            metadata=prepared.metadata,
        )

    async def run(self, prepared: Prepared) -> GenerationOut:
        """Generate (or find) and record it; a failure is recorded too, then raised."""
        return (await self.recorded(prepared))[1]

    async def recorded(self, prepared: Prepared) -> tuple[Outcome, GenerationOut]:
        """What `run` does, with the pipeline's outcome (its bytes) as well."""
        record = self.new_record(prepared)
        try:
            outcome = await self.make(prepared)
        except Exception as exc:
            await self._record_failure(record, prepared, exc)
            raise
        out = self.answer(outcome, record)
        await self._record(record, out)
        return outcome, out

    async def queue(self, prepared: Prepared) -> GenerationOut:
        """Record it as queued and make it in the background (`?wait=false`)."""
        record = await self.library.add_generation(self.new_record(prepared, "queued"))
        task = asyncio.create_task(self._in_background(record, prepared))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return self.pending(record, prepared.base)

    async def _in_background(self, record: GenerationRecord, prepared: Prepared) -> None:
        record.status = "running"
        await self._update(record)
        try:
            outcome = await self.make(prepared, patient=True)
        except Exception as exc:
            out = self.failed(record, prepared.base, exc)
            record.status = "failed"
            record.answer = msgspec.to_builtins(out)
            await self._update(record)
            return
        out = self.answer(outcome, record)
        record.status = "completed"
        self._fill(record, out)
        await self._update(record)

    async def _record(self, record: GenerationRecord, out: GenerationOut) -> None:
        record.status = "completed"
        self._fill(record, out)
        await self._history.add(record)

    async def _record_failure(
        self, record: GenerationRecord, prepared: Prepared, exc: BaseException
    ) -> None:
        record.status = "failed"
        record.answer = msgspec.to_builtins(self.failed(record, prepared.base, exc))
        try:
            await self._history.add(record)
        except Exception as failure:  # the caller's answer is the generation's error
            log.warning("recording failed generation %s: %s", record.id, failure)

    @staticmethod
    def _fill(record: GenerationRecord, out: GenerationOut) -> None:
        record.original_key = out.original_key or ""
        record.generator = out.generator or ""
        record.answer = msgspec.to_builtins(out)

    async def _update(self, record: GenerationRecord) -> None:
        try:
            await self.library.update_generation(record)
        except Exception as exc:  # the result is stored; only its record lags
            log.warning("updating generation %s: %s", record.id, exc)

    def pending(self, record: GenerationRecord, base: str) -> GenerationOut:
        return GenerationOut(
            id=record.id,
            status=record.status,
            created_at=iso(record.created_at),
            status_url=self.status_url(base, record.id),
            flow_id=record.flow_id,
            parent_id=record.parent_id,
            aliases=list(record.aliases),
        )

    def failed(self, record: GenerationRecord, base: str, exc: BaseException) -> GenerationOut:
        out = self.pending(record, base)
        out.status = "failed"
        out.error = error_out(exc)
        return out

    def stored(self, record: GenerationRecord, base: str) -> GenerationOut:
        """A record as the API shows it."""
        if record.answer:
            try:
                return msgspec.convert(record.answer, GenerationOut)
            except msgspec.ValidationError:
                log.warning("generation %s has an unreadable answer", record.id)
        return self.pending(record, base)

    async def drain(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def error_out(exc: BaseException) -> ErrorOut:
    """A failure as the API's error object, with the generators tried when it says."""
    if isinstance(exc, TimeoutError):
        exc = GenerationTimeout("the generation took longer than the request may wait")
    mapped = answer_for(exc)
    body = mapped.body()["error"]
    attempted = body.get("generators_attempted")
    return ErrorOut(
        code=str(body.get("code", "internal_error")),
        message=str(body.get("message", "")),
        param=body.get("param"),
        generators_attempted=list(attempted) if isinstance(attempted, list) else None,
    )
