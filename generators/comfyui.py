"""`comfyui`: a ComfyUI server driven by a workflow template.

The template is ComfyUI's API-format workflow JSON with placeholders: a string value that is
exactly `"{{width}}"`, `"{{height}}"`, `"{{seed}}"` or `"{{steps}}"` becomes that number;
`{{prompt}}`, `{{negative}}` and `{{checkpoint}}` are replaced inside strings. The packaged
default is an SDXL text-to-image graph (`comfyui_workflow.json`); `PROMPTPIX_COMFYUI_WORKFLOW`
names another file. The flow: `POST /prompt`, poll `GET /history/{id}`, `GET /view`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from importlib import resources
from typing import Any

import httpx

from .base import GeneratedImage, GenerationError, GenerationRequest, retry_after, sniff
from .ratios import NATIVE_SIZES
from .settings import ComfyUISettings, read_workflow

NUMBERS = ("width", "height", "seed", "steps")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


def default_workflow() -> dict[str, Any]:
    text = (
        resources.files("promptpix.generators").joinpath("comfyui_workflow.json").read_text("utf-8")
    )
    return dict(json.loads(text))


def load_workflow(path: str) -> dict[str, Any]:
    """The workflow file `PROMPTPIX_COMFYUI_WORKFLOW` names (empty: the packaged default)."""
    return read_workflow(path) if path else default_workflow()


def fill(template: Any, values: Mapping[str, Any]) -> Any:
    """The template with its placeholders replaced (a new object; the template is kept)."""
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    if isinstance(template, str):
        for name in NUMBERS:
            if template == "{{" + name + "}}":
                return values[name]
        out = template
        for name, value in values.items():
            out = out.replace("{{" + name + "}}", str(value))
        return out
    return template


class ComfyUIGenerator:
    kind = "comfyui"
    takes_negative = True  # the workflow has a negative prompt of its own
    native_sizes = NATIVE_SIZES  # SDXL draws any multiple of 8: Gemini's ten sizes are all that

    def __init__(
        self,
        settings: ComfyUISettings,
        *,
        workflow: dict[str, Any] | None = None,
        poll_s: float = 0.25,
        timeout_s: float = 300.0,
        id: str = "comfyui",
    ) -> None:
        self.id = id
        self.base_url = settings.url.rstrip("/")
        self.workflow = workflow or load_workflow(settings.workflow)
        self.checkpoint = settings.checkpoint
        self.model = settings.checkpoint
        self.steps = settings.steps
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.client_id = uuid.uuid4().hex
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))

    def graph(self, request: GenerationRequest) -> dict[str, Any]:
        width, height = request.size
        return dict(
            fill(
                self.workflow,
                {
                    "prompt": request.prompt,
                    "negative": request.negative,
                    "width": width,
                    "height": height,
                    "seed": request.seed,
                    "steps": self.steps,
                    "checkpoint": self.checkpoint,
                },
            )
        )

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        try:
            return await self._generate(request)
        except httpx.TimeoutException as exc:
            raise GenerationError(self.id, f"timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise GenerationError(self.id, f"{type(exc).__name__}: {exc}") from exc

    async def _generate(self, request: GenerationRequest) -> GeneratedImage:
        body = {"prompt": self.graph(request), "client_id": self.client_id}
        queued = await self._client.post(f"{self.base_url}/prompt", json=body)
        self._check(queued, "POST /prompt")
        try:
            prompt_id = str(queued.json()["prompt_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise GenerationError(self.id, "POST /prompt answered no prompt_id") from exc
        deadline = time.monotonic() + self.timeout_s
        delay = self.poll_s
        while True:
            found = await self._client.get(f"{self.base_url}/history/{prompt_id}")
            self._check(found, "GET /history")
            entry = _json(found).get(prompt_id)
            if entry:
                status = entry.get("status") or {}
                if status.get("status_str") == "error":
                    raise GenerationError(
                        self.id, f"workflow failed: {_messages(status)}"[:300], retryable=False
                    )
                image = _first_image(entry.get("outputs") or {})
                if image is not None:
                    break
                if status.get("completed"):
                    raise GenerationError(self.id, "workflow finished without an image")
            if time.monotonic() + delay > deadline:
                raise GenerationError(self.id, f"no result within {self.timeout_s:g} s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        params = {
            "filename": image.get("filename", ""),
            "subfolder": image.get("subfolder", ""),
            "type": image.get("type", "output"),
        }
        view = await self._client.get(f"{self.base_url}/view", params=params)
        self._check(view, "GET /view")
        data = view.content
        ctype = view.headers.get("content-type", "").split(";")[0].strip()
        if not ctype.startswith("image/"):
            ctype = sniff(data)
        return GeneratedImage(
            data=data,
            content_type=ctype,
            generator=self.id,
            model=self.model,
            details={"prompt_id": prompt_id, "filename": params["filename"]},
        )

    def _check(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status == 200:
            return
        raise GenerationError(
            self.id,
            f"{what}: HTTP {status} {response.text[:200]}",
            retryable=status in RETRYABLE_STATUS,
            retry_after=retry_after(response.headers) if status in (429, 503) else None,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _first_image(outputs: dict[str, Any]) -> dict[str, Any] | None:
    for node in outputs.values():
        for image in (node or {}).get("images") or ():
            if image.get("type", "output") == "output" and image.get("filename"):
                return dict(image)
    return None


def _messages(status: dict[str, Any]) -> str:
    for kind, data in status.get("messages") or ():
        if kind == "execution_error" and isinstance(data, dict):
            return str(data.get("exception_message") or data)
    return "execution error"
