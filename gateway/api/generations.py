"""`/v1/generations` (one, `?wait=false`, the history, a batch) and `/v1/flows`: the routes
over `Generations`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from datetime import datetime
from typing import Any

import msgspec

from promptpix.cache.library import MAX_PAGE, METADATA_KEY, Flow, History

from ..errors import BadParameter, UnknownFlow, UnknownGeneration, UnknownParameter
from ..failures import answer_for
from ..generations import Generations, error_out, is_id, iso, new_id
from ..projects import Projects
from .bodies import body_error
from .models import (
    BatchBody,
    BatchItem,
    BatchOut,
    FlowBody,
    FlowOut,
    FlowStep,
    GenerationBody,
    GenerationOut,
    GenerationPage,
)
from .routing import Call, Operation, json_answer

HISTORY_QUERY = (
    ("limit", "how many, 1..100 (default 20)"),
    ("cursor", "`next_cursor` of the page before"),
    ("flow_id", "only this flow's steps"),
    ("alias", "only generations that referenced this asset alias"),
    ("generator", "only those this generator made"),
    ("since", "created at or after: ISO 8601 or Unix seconds"),
    ("until", "created before: ISO 8601 or Unix seconds"),
    ("metadata.KEY", "only those whose metadata KEY is this value (repeatable)"),
)
DEFAULT_PAGE = 20


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"g{seq}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if not raw.startswith("g") or not raw[1:].isdigit():
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadParameter("'cursor' is not a cursor this API gave", param="cursor") from None


def instant(name: str, text: str) -> float:
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else _iso(text)
    except ValueError:
        raise BadParameter(f"'{name}' must be ISO 8601 or Unix seconds", param=name) from None


def _iso(text: str) -> float:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(text)
    return at.timestamp()


def history_filters(query: list[tuple[str, str]]) -> tuple[History, int, int | None]:
    seen: dict[str, str] = {}
    metadata: list[tuple[str, str]] = []
    for name, value in query:
        if "\x00" in value:
            raise BadParameter(f"'{name[:64]}' cannot hold NUL", param=name[:64])
        if name.startswith("metadata."):
            key = name[len("metadata.") :]
            if not METADATA_KEY.match(key):
                raise BadParameter("metadata keys are 1..64 of A-Z a-z 0-9 _ . : -", param=name)
            metadata.append((key, value))
            continue
        if name not in {n for n, _ in HISTORY_QUERY}:
            raise UnknownParameter(f"unknown parameter '{name[:64]}'", param=name[:64])
        if name in seen:
            raise BadParameter(f"'{name}' is given more than once", param=name)
        seen[name] = value
    limit = DEFAULT_PAGE
    if "limit" in seen:
        text = seen["limit"]
        if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
            raise BadParameter(f"'limit' must be an integer 1..{MAX_PAGE}", param="limit")
        limit = int(text)
    cursor = decode_cursor(seen["cursor"]) if "cursor" in seen else None
    filters = History(
        flow_id=seen.get("flow_id"),
        alias=seen.get("alias", "").lstrip("@") or None,
        generator=seen.get("generator"),
        since=instant("since", seen["since"]) if "since" in seen else None,
        until=instant("until", seen["until"]) if "until" in seen else None,
        metadata=tuple(metadata),
    )
    return filters, limit, cursor


def operations(generations: Generations, projects: Projects) -> list[Operation]:
    library = generations.library

    def base_of(call: Call) -> str:
        return str(call.request.base_url)

    async def prepare(call: Call, body: GenerationBody) -> Any:
        assert call.principal.key is not None
        project = await projects.get(call.principal.key.project)
        peer = call.request.client.host if call.request.client else ""
        return await generations.prepare(
            project, body, base=base_of(call), peer=peer, headers=call.request.headers.raw
        )

    async def create(call: Call) -> Any:
        wait = call.request.query_params.get("wait", "true")
        if wait not in ("true", "false", "1", "0"):
            raise BadParameter("'wait' must be true or false", param="wait")
        extra = set(call.request.query_params) - {"wait"}
        if extra:
            name = sorted(extra)[0][:64]
            raise UnknownParameter(f"unknown parameter '{name}'", param=name)
        prepared = await prepare(call, call.body)
        if wait in ("false", "0"):
            out = await generations.queue(prepared)
            return json_answer(out, 202, {"location": out.status_url})
        return await generations.run(prepared)

    async def one(call: Call) -> Any:
        assert call.principal.key is not None
        id_ = call.params["id"]
        record = (
            await library.generation(call.principal.key.project, id_) if is_id("gen", id_) else None
        )
        if record is None:
            raise UnknownGeneration(f"no generation {call.params['id'][:64]} in this project")
        return generations.stored(record, base_of(call))

    async def history(call: Call) -> Any:
        assert call.principal.key is not None
        filters, limit, cursor = history_filters(call.request.query_params.multi_items())
        found = await library.generations(call.principal.key.project, filters, limit + 1, cursor)
        page, more = found[:limit], len(found) > limit
        base = base_of(call)
        return GenerationPage(
            items=[generations.stored(r, base) for r in page],
            next_cursor=encode_cursor(page[-1].seq) if more and page else None,
        )

    async def batch(call: Call) -> Any:
        body: BatchBody = call.body

        async def item(raw: msgspec.Raw) -> BatchItem:
            try:
                try:
                    each = msgspec.json.decode(raw, type=GenerationBody)
                except msgspec.ValidationError as exc:
                    raise body_error(exc) from None
                out = await generations.run(await prepare(call, each))
            except Exception as exc:  # one bad item fails only itself
                return failure(exc)
            return BatchItem(status=200, generation=out)

        return BatchOut(items=list(await asyncio.gather(*(item(r) for r in body.items))))

    async def new_flow(call: Call) -> Any:
        assert call.principal.key is not None
        body: FlowBody = call.body
        project = call.principal.key.project
        if "\x00" in body.name:
            raise BadParameter("'name' cannot hold NUL", param="name")
        flow = await library.add_flow(Flow(new_id("flow"), project, body.name, time.time()))
        steps: list[FlowStep] = []
        error = None
        for each in body.steps:  # in order: a step may name the outputs before it
            each = msgspec.structs.replace(each, flow_id=flow.id)
            try:
                out = await generations.run(await prepare(call, each))
            except Exception as exc:
                error = failure(exc)
                break
            steps.append(FlowStep(step=len(steps) + 1, parent_id=out.parent_id, generation=out))
        out_flow = FlowOut(
            id=flow.id, name=flow.name, created_at=iso(flow.created_at), steps=steps, error=error
        )
        return json_answer(out_flow, 201)

    async def get_flow(call: Call) -> Any:
        assert call.principal.key is not None
        project = call.principal.key.project
        id_ = call.params["id"]
        flow = await library.flow(project, id_) if is_id("flow", id_) else None
        if flow is None:
            raise UnknownFlow(f"no flow {call.params['id'][:64]} in this project")
        base = base_of(call)
        records = await library.flow_steps(project, flow.id)
        return FlowOut(
            id=flow.id,
            name=flow.name,
            created_at=iso(flow.created_at),
            steps=[
                FlowStep(step=i, parent_id=r.parent_id, generation=generations.stored(r, base))
                for i, r in enumerate(records, 1)
            ],
        )

    common = (400, 401, 403, 404, 413, 422, 429, 503, 504)
    return [
        Operation(
            "POST",
            "/v1/generations",
            create,
            "Generate (or find) an image; `?wait=false` answers 202 and a status URL",
            body=GenerationBody,
            answer=GenerationOut,
            scope="generate",
            errors=common,
            query=(("wait", "false: answer 202 at once, with `Location` and `status_url`"),),
            tags=("generations",),
        ),
        Operation(
            "GET",
            "/v1/generations",
            history,
            "The history, newest first, with filters and an opaque cursor",
            answer=GenerationPage,
            scope="read",
            errors=(400, 401, 403),
            query=HISTORY_QUERY,
            tags=("generations",),
        ),
        Operation(
            "GET",
            "/v1/generations/{id}",
            one,
            "One generation: queued, running, completed or failed (with the error)",
            answer=GenerationOut,
            scope="read",
            errors=(401, 403, 404),
            tags=("generations",),
        ),
        Operation(
            "POST",
            "/v1/generations/batch",
            batch,
            "Up to 16 generations at once, each answered on its own",
            body=BatchBody,
            answer=BatchOut,
            scope="generate",
            errors=(400, 401, 403, 413),
            tags=("generations",),
        ),
        Operation(
            "POST",
            "/v1/flows",
            new_flow,
            "A flow; with `steps`, run them in order (`@last`, `@first` name their outputs)",
            body=FlowBody,
            answer=FlowOut,
            status=201,
            scope="generate",
            errors=(400, 401, 403, 413),
            tags=("flows",),
        ),
        Operation(
            "GET",
            "/v1/flows/{id}",
            get_flow,
            "A flow's steps in order, each with its generation and parent",
            answer=FlowOut,
            scope="read",
            errors=(401, 403, 404),
            tags=("flows",),
        ),
    ]


def failure(exc: BaseException) -> BatchItem:
    """A failed item, with the status it would have been answered with alone."""
    return BatchItem(status=answer_for(exc).status, error=error_out(exc))
