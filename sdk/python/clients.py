"""`Client` and `AsyncClient`: the JSON API (`/v1`) over httpx with a project key. Every
failure raises `PromptpixError` with the API's code and `Retry-After`."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Self, Unpack, cast

import httpx

from . import calls
from .calls import Call
from .errors import PromptpixError, error_from
from .models import (
    Asset,
    AssetPage,
    Generation,
    GenerationBody,
    GenerationParams,
    ImageParams,
    Page,
    UrlParams,
    UrlSet,
)
from .urls import image_url as build_url

DEFAULT_TIMEOUT = 120.0  # a generation on a miss may take a minute
POLL_INTERVAL = 0.5
Json = dict[str, Any]
Data = bytes | str | os.PathLike[str]


def _agent() -> str:
    try:
        return f"promptpix-python/{version('promptpix')}"
    except PackageNotFoundError:
        return "promptpix-python"


class _Api:
    """What both clients share: where the gateway is, the key, and how an answer is read."""

    def __init__(self, base_url: str, api_key: str | None, project: str | None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or None
        self.project = project
        self.headers = {"user-agent": _agent(), "accept": "application/json"}
        if self.api_key:
            self.headers["authorization"] = f"Bearer {self.api_key}"

    def _url(self, call: Call) -> str:
        if call.path.startswith(("http://", "https://")):
            return call.path
        return self.base_url + "/" + call.path.lstrip("/")

    def _sent(self, call: Call) -> dict[str, Any]:
        """What httpx sends beside the method and the URL."""
        return {
            "params": call.query or None,
            "json": call.json,
            "files": call.files,
            "data": call.data,
            "headers": self.headers,
        }

    def _local_url(self, params: Mapping[str, Any]) -> str:
        """A live URL written here, unsigned: a public project's, with no key."""
        return build_url(self.base_url, self.project or "demo", **params)

    @staticmethod
    def _answer(response: httpx.Response, call: Call) -> Any:
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            raise error_from(response.status_code, response.headers, payload, response.text)
        if call.raw:
            return response.content
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @staticmethod
    def _unreachable(exc: httpx.HTTPError, url: str) -> PromptpixError:
        return PromptpixError(0, "unreachable", f"no answer from {url}: {exc}")


def settled(found: Generation, deadline: float) -> bool:
    """Whether a polled generation is done; a failed one raises its error."""
    status = found.get("status")
    if status == "failed":
        error = found.get("error") or {}
        raise PromptpixError(
            422 if error.get("code") == "content_refused" else 500,
            str(error.get("code") or "failed"),
            str(error.get("message") or "the generation failed"),
            param=error.get("param"),
            body=found,
        )
    if status == "completed":
        return True
    if time.monotonic() > deadline:
        raise PromptpixError(0, "timeout", f"generation {found.get('id')} is still {status}")
    return False


class Client(_Api):
    """The JSON API: `Client("https://img.example.com", api_key="pk_...")`. `project` is
    needed only without a key, for `image_url` on a public project (default `demo`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        project: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, project)
        self._http = http or httpx.Client(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, call: Call) -> Any:
        url = self._url(call)
        try:
            response = self._http.request(call.method, url, **self._sent(call))
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, url) from exc
        return self._answer(response, call)

    def generate(
        self, prompt: str, *, wait: bool = True, **params: Unpack[GenerationParams]
    ) -> Generation:
        """Generate (or find) an image: the `/v1/generations` answer. With `wait=False`
        it answers `queued` at once, and `wait_for(id)` follows it."""
        return cast(Generation, self.request(calls.generate(prompt, wait, params)))

    def get_generation(self, id: str) -> Generation:
        return cast(Generation, self.request(calls.generation(id)))

    def wait_for(self, id: str, timeout: float = DEFAULT_TIMEOUT) -> Generation:
        """Poll a generation until it is `completed`; a failed one raises its error."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.get_generation(id)
            if settled(found, deadline):
                return found
            time.sleep(POLL_INTERVAL)

    def list_generations(self, **filters: Any) -> Page:
        """History, newest first: `limit`, `cursor`, `flow_id`, `alias`, `generator`,
        `since`, `until`, and `metadata={"key": "value"}`."""
        return cast(Page, self.request(calls.history(filters)))

    def batch(self, items: Sequence[GenerationBody]) -> Json:
        """Up to 16 generation bodies at once, each answered on its own."""
        return cast(Json, self.request(calls.batch(items)))

    def create_flow(self, name: str = "", steps: Sequence[GenerationBody] = ()) -> Json:
        """A flow; with `steps`, run in order (`@last` is the previous step's image)."""
        return cast(Json, self.request(calls.create_flow(name, steps)))

    def get_flow(self, id: str) -> Json:
        return cast(Json, self.request(calls.flow(id)))

    def urls(self, **params: Unpack[UrlParams]) -> UrlSet:
        """A live URL, its srcset and an `<img>`, signed when the project signs; nothing
        is generated."""
        return cast(UrlSet, self.request(calls.urls(params)))

    def image_url(self, **params: Unpack[ImageParams]) -> str:
        """The live URL of these parameters: signed by the gateway when the project signs
        (with a key), or written here for a public project (without one)."""
        return self.urls(**params)["url"] if self.api_key else self._local_url(params)

    def upload_asset(self, data: Data, alias: str | None = None) -> Asset:
        """Upload an image (its bytes, or a file's path), optionally named `alias`, which
        prompts then name as `@alias`."""
        return cast(Asset, self.request(calls.upload(data, alias)))

    def list_assets(self, limit: int | None = None, cursor: str | None = None) -> AssetPage:
        return cast(AssetPage, self.request(calls.assets(limit, cursor)))

    def get_asset(self, ref: str) -> Asset:
        """An asset by its id or `@alias`."""
        return cast(Asset, self.request(calls.asset(ref)))

    def delete_asset(self, id: str) -> None:
        self.request(calls.delete_asset(id))

    def validate_prompt(self, prompt: str) -> Json:
        return cast(Json, self.request(calls.validate(prompt)))

    def warm(self, *, html: str | None = None, urls: Sequence[str] | None = None) -> Json:
        """Generate ahead every `/i/` image of this project in a page, or in a URL list."""
        return cast(Json, self.request(calls.warm(html, urls)))

    def get_warm(self, id: str) -> Json:
        return cast(Json, self.request(calls.warm_status(id)))

    def list_styles(self) -> Json:
        """The styles this project may use, and its default."""
        return cast(Json, self.request(calls.styles()))

    def download(self, url: str) -> bytes:
        """The bytes of an image URL: absolute, or a path on this gateway."""
        return cast(bytes, self.request(calls.download(url)))


class AsyncClient(_Api):
    """`Client` for asyncio: `async with AsyncClient(base_url, api_key=...) as client:`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        project: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, project)
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, call: Call) -> Any:
        url = self._url(call)
        try:
            response = await self._http.request(call.method, url, **self._sent(call))
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, url) from exc
        return self._answer(response, call)

    async def generate(
        self, prompt: str, *, wait: bool = True, **params: Unpack[GenerationParams]
    ) -> Generation:
        return cast(Generation, await self.request(calls.generate(prompt, wait, params)))

    async def get_generation(self, id: str) -> Generation:
        return cast(Generation, await self.request(calls.generation(id)))

    async def wait_for(self, id: str, timeout: float = DEFAULT_TIMEOUT) -> Generation:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.get_generation(id)
            if settled(found, deadline):
                return found
            await asyncio.sleep(POLL_INTERVAL)

    async def list_generations(self, **filters: Any) -> Page:
        return cast(Page, await self.request(calls.history(filters)))

    async def batch(self, items: Sequence[GenerationBody]) -> Json:
        return cast(Json, await self.request(calls.batch(items)))

    async def create_flow(self, name: str = "", steps: Sequence[GenerationBody] = ()) -> Json:
        return cast(Json, await self.request(calls.create_flow(name, steps)))

    async def get_flow(self, id: str) -> Json:
        return cast(Json, await self.request(calls.flow(id)))

    async def urls(self, **params: Unpack[UrlParams]) -> UrlSet:
        return cast(UrlSet, await self.request(calls.urls(params)))

    async def image_url(self, **params: Unpack[ImageParams]) -> str:
        return (await self.urls(**params))["url"] if self.api_key else self._local_url(params)

    async def upload_asset(self, data: Data, alias: str | None = None) -> Asset:
        return cast(Asset, await self.request(calls.upload(data, alias)))

    async def list_assets(self, limit: int | None = None, cursor: str | None = None) -> AssetPage:
        return cast(AssetPage, await self.request(calls.assets(limit, cursor)))

    async def get_asset(self, ref: str) -> Asset:
        return cast(Asset, await self.request(calls.asset(ref)))

    async def delete_asset(self, id: str) -> None:
        await self.request(calls.delete_asset(id))

    async def validate_prompt(self, prompt: str) -> Json:
        return cast(Json, await self.request(calls.validate(prompt)))

    async def warm(self, *, html: str | None = None, urls: Sequence[str] | None = None) -> Json:
        return cast(Json, await self.request(calls.warm(html, urls)))

    async def get_warm(self, id: str) -> Json:
        return cast(Json, await self.request(calls.warm_status(id)))

    async def list_styles(self) -> Json:
        return cast(Json, await self.request(calls.styles()))

    async def download(self, url: str) -> bytes:
        return cast(bytes, await self.request(calls.download(url)))
