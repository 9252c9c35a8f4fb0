"""`comfyui` through its httpx client against a local server that speaks ComfyUI's API
(`POST /prompt`, `GET /history/{id}`, `GET /view`)."""

from __future__ import annotations

import pytest

from promptpix.generators.base import GenerationRequest
from promptpix.generators.chain import Chain
from promptpix.generators.comfyui import ComfyUIGenerator, default_workflow, fill
from promptpix.generators.limits import Limits
from promptpix.generators.local import LocalGenerator
from promptpix.generators.ratios import NATIVE_SIZES
from promptpix.generators.settings import ComfyUISettings
from promptpix.transforms.source import decode
from tests.generator_fakes import (
    OPEN,
    Answer,
    ComfyUI,
    FakeServer,
    close_chains,  # noqa: F401 (an autouse fixture)
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

FAST = Limits(retries=1, backoff_s=0.05, max_backoff_s=0.2, timeout_s=5.0)


def request(ratio: tuple[int, int] = (16, 9)) -> GenerationRequest:
    return GenerationRequest(
        key="ef" * 32,
        prompt="a lighthouse at dusk",
        ratio=ratio,
        size=NATIVE_SIZES[ratio],
        negative="blurry",
        seed=42,
    )


def chain(server: FakeServer, limits: Limits = FAST) -> Chain:
    gen = ComfyUIGenerator(ComfyUISettings(url=server.url), poll_s=0.02, timeout_s=limits.timeout_s)
    made = Chain([gen, LocalGenerator()], {"comfyui": limits})
    OPEN.append(made)
    return made


async def test_the_workflow_is_filled_queued_polled_and_viewed() -> None:
    comfy = ComfyUI(polls_until_done=3)
    with FakeServer(comfy) as server:
        result = await chain(server).generate(request())
    assert result.image.generator == "comfyui" and result.attempted == ("comfyui",)
    paths = [(c.method, c.path) for c in server.calls]
    assert paths == [
        ("POST", "/prompt"),
        ("GET", "/history/p1"),
        ("GET", "/history/p1"),
        ("GET", "/history/p1"),
        ("GET", "/view"),
    ]
    view = server.calls[-1].query
    assert view["filename"] == ["p1.png"] and view["type"] == ["output"]
    graph = comfy.graphs["p1"]
    assert graph["5"]["inputs"] == {"width": 1344, "height": 768, "batch_size": 1}
    assert graph["3"]["inputs"]["seed"] == 42 and graph["3"]["inputs"]["steps"] == 30
    assert graph["6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert graph["7"]["inputs"]["text"] == "blurry"
    assert graph["4"]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    src = decode(result.image.data, 50_000_000)
    assert (src.width, src.height) == (168, 96)


async def test_503_on_queueing_then_success() -> None:
    with FakeServer(ComfyUI()) as server:
        server.then(Answer(503, b"busy"))
        result = await chain(server).generate(request())
    assert result.image.generator == "comfyui"
    assert [c.path for c in server.calls][:2] == ["/prompt", "/prompt"]


async def test_a_failed_workflow_falls_to_local_without_retry() -> None:
    comfy = ComfyUI()
    comfy.fail_status = True
    with FakeServer(comfy) as server:
        c = chain(server)
        result = await c.generate(request())
    assert result.image.generator == "local" and result.attempted == ("comfyui", "local")
    assert server.count("/prompt") == 1
    assert "out of memory" in c.stats["comfyui"].last_error


async def test_undecodable_image_falls_to_local() -> None:
    with FakeServer(ComfyUI(image=b"not a png at all")) as server:
        result = await chain(server).generate(request())
    assert result.image.generator == "local"
    assert server.count("/view") == 2  # retried once, then the next generator


async def test_a_workflow_that_never_finishes_times_out() -> None:
    with FakeServer(ComfyUI(polls_until_done=10_000)) as server:
        result = await chain(server, Limits(retries=0, timeout_s=0.4)).generate(request())
    assert result.image.generator == "local"


async def test_the_default_template_has_every_placeholder() -> None:
    text = str(default_workflow())
    for name in ("prompt", "negative", "width", "height", "seed", "steps", "checkpoint"):
        assert "{{" + name + "}}" in text
    filled = fill({"a": "{{width}}", "b": ["x {{prompt}} y"]}, {"width": 8, "prompt": "p"})
    assert filled == {"a": 8, "b": ["x p y"]}
