"""`imagen` through the real google-genai SDK (Vertex AI mode) against a local server that
speaks Vertex AI's `:predict`."""

from __future__ import annotations

import base64

import pytest

from promptpix.generators.base import GenerationRequest, Refused
from promptpix.generators.chain import Chain
from promptpix.generators.imagen import ImagenGenerator
from promptpix.generators.limits import Limits
from promptpix.generators.local import LocalGenerator
from promptpix.generators.ratios import NATIVE_SIZES
from promptpix.generators.settings import GeneratorSettings, ImagenSettings
from promptpix.transforms.source import decode
from tests.generator_fakes import (
    FAST,
    IMAGEN_SIZES,
    OPEN,
    Answer,
    FakeServer,
    close_chains,  # noqa: F401 (an autouse fixture)
    google_error,
    imagen_ok,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore:The generate_images method is deprecated"),
]


def request(ratio: tuple[int, int] = (1, 1), prompt: str = "a red fox") -> GenerationRequest:
    return GenerationRequest(
        key="cd" * 32, prompt=prompt, ratio=ratio, size=NATIVE_SIZES[ratio], seed=11
    )


def chain(server: FakeServer, limits: Limits = FAST) -> Chain:
    settings = ImagenSettings(vertex_api_key="vertex-key", base_url=server.url)
    gen = ImagenGenerator(settings, timeout_s=limits.timeout_s)
    made = Chain([gen, LocalGenerator()], {"imagen": limits})
    OPEN.append(made)
    return made


async def test_success_on_a_native_ratio() -> None:
    with FakeServer(imagen_ok) as server:
        result = await chain(server).generate(request((16, 9)))
    [call] = server.calls
    assert call.path == "/v1beta1/publishers/google/models/imagen-4.0-generate-001:predict"
    body = call.json()
    assert body["instances"] == [{"prompt": "a red fox"}]
    params = body["parameters"]
    assert params["aspectRatio"] == "16:9" and params["sampleCount"] == 1
    assert params["seed"] == 11 and params["addWatermark"] is False
    src = decode(result.image.data, 50_000_000)
    assert (src.width, src.height) == (176, 96)
    assert result.image.generator == "imagen"


@pytest.mark.parametrize(
    ("ratio", "asked", "own"),
    [
        ((21, 9), "16:9", (16, 9)),
        ((2, 3), "3:4", (3, 4)),
        ((5, 4), "4:3", (4, 3)),
        ((4, 5), "3:4", (3, 4)),
        ((9, 16), "9:16", (9, 16)),
    ],
)
async def test_five_native_ratios_the_rest_made_at_the_nearest(
    ratio: tuple[int, int], asked: str, own: tuple[int, int]
) -> None:
    with FakeServer(imagen_ok) as server:
        result = await chain(server).generate(request(ratio))
    assert server.calls[0].json()["parameters"]["aspectRatio"] == asked
    assert result.ratio == own  # the ratio it was made at, for the crop to the key's
    src = decode(result.image.data, 50_000_000)
    assert (src.width, src.height) == IMAGEN_SIZES[asked]  # as the generator made it


async def test_safety_filter_is_a_refusal() -> None:
    filtered = {"predictions": [{"raiFilteredReason": "The prompt violates a usage guideline."}]}
    with FakeServer(imagen_ok) as server:
        server.then(Answer(200, filtered))
        c = chain(server)
        with pytest.raises(Refused):
            await c.generate(request())
    assert server.count() == 1 and c.stats["local"].calls == 0


async def test_429_retry_delay_then_503_then_success() -> None:
    with FakeServer(imagen_ok) as server:
        server.then(
            Answer(429, google_error(429, "RESOURCE_EXHAUSTED", retry_delay="0.8s")),
            Answer(503, google_error(503, "UNAVAILABLE")),
        )
        result = await chain(server).generate(request())
    first, second, _ = server.calls
    assert second.at - first.at >= 0.8
    assert result.image.generator == "imagen"


async def test_undecodable_bytes_fall_to_local() -> None:
    junk = {"predictions": [{"bytesBase64Encoded": base64.b64encode(b"junk").decode()}]}
    with FakeServer(imagen_ok) as server:
        server.then(Answer(200, junk), Answer(200, junk))
        result = await chain(server, Limits(retries=1, backoff_s=0.05)).generate(request())
    assert result.image.generator == "local" and result.attempted == ("imagen", "local")


async def test_timeout_falls_to_local() -> None:
    with FakeServer(imagen_ok) as server:
        server.then(Answer(200, {}, delay_s=2.0))
        result = await chain(server, Limits(retries=0, timeout_s=0.3)).generate(request())
    assert result.image.generator == "local"


async def test_needs_vertex() -> None:
    with pytest.raises(ValueError, match="Vertex"):
        GeneratorSettings.from_env({"PROMPTPIX_GENERATORS": "imagen", "GEMINI_API_KEY": "x"})
    express = {"PROMPTPIX_GENERATORS": "imagen", "PROMPTPIX_VERTEX_API_KEY": "v"}
    assert GeneratorSettings.from_env(express).imagen.vertex_api_key == "v"
    project = GeneratorSettings.from_env(
        {"PROMPTPIX_GENERATORS": "imagen", "GOOGLE_CLOUD_PROJECT": "p"}
    )
    assert (project.imagen.project, project.imagen.location) == ("p", "us-central1")
