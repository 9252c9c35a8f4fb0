"""`POST /v1/warm` and `GET /v1/warm/{id}`: the routes over `Warming`: a page's (or a
list's) image URLs made ahead in the background, and the job's progress."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from ..errors import BadParameter, BodyTooLarge, Forbidden, NotFound
from ..generations import is_id
from ..pages import image_urls
from ..projects import Projects
from ..warming import Warming, WarmState
from .bodies import read_json
from .models import Body
from .routing import Call, Operation, json_answer

MAX_HTML = 2_000_000  # characters of a page
MAX_URLS = 1000  # URLs of a list, or found in a page
MAX_BODY = 3 << 20  # a page of MAX_HTML, with room for JSON's escapes

Url = Annotated[str, Meta(max_length=8192)]


class WarmBody(Body):
    """A page's HTML, or its image URLs: exactly one of the two."""

    html: str | None = None
    urls: Annotated[list[Url], Meta(max_length=MAX_URLS)] | None = None


class WarmStarted(msgspec.Struct):
    id: str
    total: int
    status_url: str


def urls_of(body: WarmBody) -> list[str]:
    if (body.html is None) == (body.urls is None):
        raise BadParameter("give either 'html' or 'urls'", param="html")
    if body.urls is not None:
        return body.urls
    assert body.html is not None
    if len(body.html) > MAX_HTML:
        raise BodyTooLarge(f"'html' is limited to {MAX_HTML} characters")
    found = image_urls(body.html)
    if len(found) > MAX_URLS:
        raise BadParameter(f"the page names more than {MAX_URLS} URLs", param="html")
    return found


def operations(warming: Warming, projects: Projects) -> list[Operation]:
    async def start(call: Call) -> Any:
        assert call.principal.key is not None
        body = await read_json(call.request, WarmBody, MAX_BODY)
        urls = urls_of(body)
        project = await projects.get(call.principal.key.project)
        base = str(call.request.base_url)
        peer = call.request.client.host if call.request.client else ""
        state = await warming.start(
            project, urls, base=base, peer=peer, headers=call.request.headers.raw
        )
        status_url = f"{(warming.public_url or base).rstrip('/')}/v1/warm/{state.id}"
        started = WarmStarted(id=state.id, total=state.total, status_url=status_url)
        return json_answer(started, 202, {"location": status_url})

    async def status(call: Call) -> Any:
        key = call.principal.key
        assert key is not None
        if not {"read", "generate"} & set(key.scopes):
            raise Forbidden("this key has neither the 'read' nor the 'generate' scope")
        id_ = call.params["id"]
        state = await warming.status(key.project, id_) if is_id("warm", id_) else None
        if state is None:
            raise NotFound(f"no warm job {id_[:64]} in this project")
        return state

    return [
        Operation(
            "POST",
            "/v1/warm",
            start,
            "Make a page's (or a list's) /i/ images ahead, each original once, in the background",
            body=WarmBody,
            raw_body=True,  # a page may be larger than the API's usual body limit
            answer=WarmStarted,
            status=202,
            scope="generate",
            errors=(400, 401, 403, 413, 415),
            tags=("images",),
        ),
        Operation(
            "GET",
            "/v1/warm/{id}",
            status,
            "A warm job's progress and each URL's outcome (a key with `read` or `generate`)",
            answer=WarmState,
            errors=(401, 403, 404),
            tags=("images",),
        ),
    ]
