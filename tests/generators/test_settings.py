"""The generators' settings from an environment mapping (no process environment touched),
and the chain, prompt LLM and vision model built from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from promptpix.generators.comfyui import ComfyUIGenerator, default_workflow
from promptpix.generators.limits import DEFAULT_LIMITS, Limits
from promptpix.generators.llm import GeminiLLM, LLMChain, OllamaLLM
from promptpix.generators.registry import FACTORIES, build_chain, build_llm, build_vision
from promptpix.generators.settings import (
    GENERATOR_IDS,
    ComfyUISettings,
    GeneratorId,
    GeneratorSettings,
)

SECRET = "sk-very-secret-value-0123"


def from_env(**env: str) -> GeneratorSettings:
    return GeneratorSettings.from_env(env)


def test_the_embedded_default_is_the_default_of_an_empty_environment() -> None:
    assert from_env() == GeneratorSettings()
    assert GeneratorSettings().generators == ("local",)
    assert GeneratorSettings().limits == DEFAULT_LIMITS


def test_the_default_chain_depends_on_the_gemini_key() -> None:
    assert from_env().generators == ("local",)
    assert from_env(GEMINI_API_KEY="k").generators == ("gemini", "local")
    assert from_env(GOOGLE_API_KEY="k").generators == ("local",)  # as before: GEMINI_API_KEY
    chosen = from_env(GEMINI_API_KEY="k", PROMPTPIX_GENERATORS="openai,local", OPENAI_API_KEY="o")
    assert chosen.generators == ("openai", "local")
    assert from_env(PROMPTPIX_GENERATORS=" local , ").generators == ("local",)
    assert from_env(PROMPTPIX_GENERATORS="  ").generators == ("local",)  # empty: unset


def test_values_are_read_stripped_and_typed() -> None:
    s = from_env(
        GEMINI_API_KEY=" k ",
        PROMPTPIX_GEMINI_MODEL="gemini-3-pro-image-preview",
        PROMPTPIX_GEMINI_BASE_URL="http://127.0.0.1:9",
        PROMPTPIX_LOCAL_LATENCY_MS="1500",
        PROMPTPIX_COMFYUI_STEPS="12",
        PROMPTPIX_OPENAI_QUALITY="high",
    )
    assert s.gemini.api_key == "k" and s.gemini.model == "gemini-3-pro-image-preview"
    assert s.gemini.base_url == "http://127.0.0.1:9"
    assert s.local_latency_ms == 1500 and s.comfyui.steps == 12 and s.openai.quality == "high"
    assert from_env(GOOGLE_API_KEY="g", PROMPTPIX_GENERATORS="gemini").gemini.image_key == "g"


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("true", True), ("on", True), ("YES", True), ("0", False), ("off", False)],
)
def test_refusal_fallback_takes_the_usual_words(raw: str, value: bool) -> None:
    assert from_env(PROMPTPIX_REFUSAL_FALLBACK=raw).refusal_fallback is value


def test_limits_per_generator_over_its_defaults() -> None:
    s = from_env(
        PROMPTPIX_GEMINI_CONCURRENCY="2",
        PROMPTPIX_GEMINI_RPM="15",
        PROMPTPIX_GEMINI_TIMEOUT_S="7.5",
        PROMPTPIX_COMFYUI_RETRIES="3",
    )
    assert (s.limits["gemini"].concurrency, s.limits["gemini"].rpm) == (2, 15)
    assert s.limits["gemini"].timeout_s == 7.5
    assert s.limits["gemini"].max_queue == DEFAULT_LIMITS["gemini"].max_queue  # kept
    assert s.limits["comfyui"].retries == 3 and s.limits["comfyui"].timeout_s == 300.0
    assert s.limits["local"] == DEFAULT_LIMITS["local"]
    assert set(s.limits) == set(GENERATOR_IDS)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"PROMPTPIX_GENERATORS": "gemini,nosuch", "GEMINI_API_KEY": "k"},
            "PROMPTPIX_GENERATORS: entry 2 must be one of gemini, imagen, openai, comfyui, local",
        ),
        ({"PROMPTPIX_GENERATORS": "local,local"}, "PROMPTPIX_GENERATORS: entries 1 and 2"),
        ({"PROMPTPIX_GENERATORS": ","}, "PROMPTPIX_GENERATORS: names no generator"),
        ({"PROMPTPIX_GENERATORS": "gemini"}, "GEMINI_API_KEY: unset"),
        ({"PROMPTPIX_GENERATORS": "openai,local"}, "OPENAI_API_KEY: unset"),
        ({"PROMPTPIX_GENERATORS": "comfyui"}, "PROMPTPIX_COMFYUI_URL: unset"),
        ({"PROMPTPIX_GENERATORS": "imagen", "GEMINI_API_KEY": "k"}, "GOOGLE_CLOUD_PROJECT: unset"),
        ({"PROMPTPIX_LOCAL_RPM": "abc"}, "PROMPTPIX_LOCAL_RPM: must be a whole number"),
        (
            {"PROMPTPIX_GEMINI_RETRIES": "-1"},
            "PROMPTPIX_GEMINI_RETRIES: must be a whole number >= 0",
        ),
        ({"PROMPTPIX_OPENAI_TIMEOUT_S": "-2.5"}, "PROMPTPIX_OPENAI_TIMEOUT_S: must be a number >="),
        ({"PROMPTPIX_GEMINI_CONCURRENCY": "0"}, "PROMPTPIX_GEMINI_CONCURRENCY: must be a whole"),
        ({"PROMPTPIX_IMAGEN_BACKOFF_S": "inf"}, "PROMPTPIX_IMAGEN_BACKOFF_S: must be a number <="),
        ({"PROMPTPIX_REFUSAL_FALLBACK": "maybe"}, "PROMPTPIX_REFUSAL_FALLBACK: must be 1 or 0"),
        ({"PROMPTPIX_LOCAL_LATENCY_MS": "soon"}, "PROMPTPIX_LOCAL_LATENCY_MS: must be a whole"),
        ({"PROMPTPIX_PROMPT_LLM": "ollama,bard"}, "PROMPTPIX_PROMPT_LLM: entry 2 must be one of"),
        ({"PROMPTPIX_PROMPT_LLM": ","}, "PROMPTPIX_PROMPT_LLM: names no backend"),
        ({"PROMPTPIX_PROMPT_LLM": "ollama"}, "PROMPTPIX_OLLAMA_URL: unset"),
        ({"PROMPTPIX_PROMPT_LLM": "gemini"}, "GEMINI_API_KEY: unset, and PROMPTPIX_PROMPT_LLM"),
        ({"PROMPTPIX_PROMPT_LLM_TIMEOUT_S": "soon"}, "PROMPTPIX_PROMPT_LLM_TIMEOUT_S: must be a"),
        ({"PROMPTPIX_PROMPT_LLM_TIMEOUT_S": "0"}, "PROMPTPIX_PROMPT_LLM_TIMEOUT_S: must be a"),
        ({"PROMPTPIX_VISION": "gpt"}, "PROMPTPIX_VISION: must be one of off, gemini"),
        ({"PROMPTPIX_VISION": "gemini"}, "GEMINI_API_KEY: unset, and PROMPTPIX_VISION"),
        ({"PROMPTPIX_VISION_TIMEOUT_S": "ten"}, "PROMPTPIX_VISION_TIMEOUT_S: must be a number"),
        ({"PROMPTPIX_COMFYUI_STEPS": "many"}, "PROMPTPIX_COMFYUI_STEPS: must be a whole number"),
    ],
)
def test_a_value_that_cannot_be_used_is_named_in_one_line(env: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError) as caught:
        GeneratorSettings.from_env(env)
    message = str(caught.value)
    assert message.startswith(says) and "\n" not in message


@pytest.mark.parametrize(
    "name",
    [
        "PROMPTPIX_GENERATORS",
        "PROMPTPIX_LOCAL_RPM",
        "PROMPTPIX_REFUSAL_FALLBACK",
        "PROMPTPIX_PROMPT_LLM",
        "PROMPTPIX_VISION",
        "PROMPTPIX_PROMPT_LLM_TIMEOUT_S",
        "PROMPTPIX_LOCAL_LATENCY_MS",
    ],
)
def test_an_error_never_echoes_the_value(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        GeneratorSettings.from_env({name: SECRET})
    assert name in str(caught.value) and SECRET not in str(caught.value)


def test_the_known_ids_are_the_ones_the_registry_makes() -> None:
    assert set(FACTORIES) == set(get_args(GeneratorId)) == set(GENERATOR_IDS)


@pytest.mark.anyio
async def test_build_chain_makes_each_generator_with_its_limits() -> None:
    env = {
        "GEMINI_API_KEY": "k",
        "PROMPTPIX_GEMINI_CONCURRENCY": "2",
        "PROMPTPIX_GEMINI_RPM": "15",
        "PROMPTPIX_REFUSAL_FALLBACK": "on",
    }
    chain = build_chain(GeneratorSettings.from_env(env), max_pixels=1234)
    await chain.close()
    assert chain.ids == ["gemini", "local"] and chain.max_pixels == 1234
    described = chain.describe()
    assert described["refusal_fallback"] is True
    gemini, local = described["generators"]
    assert gemini["limits"]["concurrency"] == 2 and gemini["limits"]["rpm"] == 15
    assert gemini["model"] == "gemini-2.5-flash-image"
    assert local["limits"]["concurrency"] == DEFAULT_LIMITS["local"].concurrency
    # Limits a settings value leaves out are the generator's defaults.
    sparse = build_chain(GeneratorSettings(limits={"local": Limits(retries=1)}))
    await sparse.close()
    assert sparse.slots[0].limits.retries == 1


@pytest.mark.anyio
async def test_build_chain_reads_a_comfyui_workflow_file(tmp_path: Path) -> None:
    workflow = default_workflow()
    workflow["extra"] = {"inputs": {"text": "{{prompt}}"}}
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(workflow))
    env = {
        "PROMPTPIX_GENERATORS": "comfyui",
        "PROMPTPIX_COMFYUI_URL": "http://127.0.0.1:9",
        "PROMPTPIX_COMFYUI_WORKFLOW": str(path),
    }
    chain = build_chain(GeneratorSettings.from_env(env))
    await chain.close()
    [gen] = chain.generators
    assert isinstance(gen, ComfyUIGenerator) and gen.workflow == workflow


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot be read"), ("{not json", "is not JSON"), ("[1, 2]", "not a JSON object")],
)
@pytest.mark.anyio
async def test_a_workflow_file_that_cannot_be_used_is_named(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "secret-name.json"
    if content is not None:
        path.write_text(content)
    env = {
        "PROMPTPIX_GENERATORS": "comfyui",
        "PROMPTPIX_COMFYUI_URL": "http://127.0.0.1:9",
        "PROMPTPIX_COMFYUI_WORKFLOW": str(path),
    }
    with pytest.raises(ValueError, match=f"^PROMPTPIX_COMFYUI_WORKFLOW: .*{says}") as caught:
        GeneratorSettings.from_env(env)
    assert "secret-name" not in str(caught.value)
    settings = ComfyUISettings(url="http://127.0.0.1:9", workflow=str(path))
    with pytest.raises(ValueError, match=f"^PROMPTPIX_COMFYUI_WORKFLOW: .*{says}") as caught:
        ComfyUIGenerator(settings)
    assert "secret-name" not in str(caught.value)
    del env["PROMPTPIX_GENERATORS"]  # a chain without comfyui does not read the file
    assert GeneratorSettings.from_env(env).comfyui.workflow == str(path)


@pytest.mark.anyio
async def test_build_llm() -> None:
    assert build_llm(from_env()) is None
    assert build_llm(from_env(GEMINI_API_KEY="k", PROMPTPIX_PROMPT_LLM="off")) is None
    assert build_llm(from_env(GEMINI_API_KEY="k", PROMPTPIX_PROMPT_LLM="None")) is None
    only = build_llm(
        from_env(PROMPTPIX_OLLAMA_URL="http://127.0.0.1:9", PROMPTPIX_OLLAMA_MODEL="m")
    )
    assert isinstance(only, OllamaLLM) and only.name == "ollama:m"
    both = build_llm(
        from_env(
            PROMPTPIX_OLLAMA_URL="http://127.0.0.1:9",
            GEMINI_API_KEY="k",
            PROMPTPIX_GEMINI_BASE_URL="http://127.0.0.1:9",
            PROMPTPIX_PROMPT_LLM_TIMEOUT_S="2.5",
        )
    )
    assert isinstance(both, LLMChain)
    assert both.name == "ollama:llama3.2,gemini:gemini-2.5-flash" and both.timeout_s == 2.5
    reordered = build_llm(
        from_env(
            PROMPTPIX_OLLAMA_URL="http://127.0.0.1:9",
            GEMINI_API_KEY="k",
            PROMPTPIX_PROMPT_LLM="Gemini, ollama",
            PROMPTPIX_GEMINI_TEXT_MODEL="gemini-2.5-pro",
        )
    )
    assert isinstance(reordered, LLMChain)
    first = reordered.members[0]
    assert isinstance(first, GeminiLLM) and first.thinking_budget is None  # not a flash model
    assert reordered.name == "gemini:gemini-2.5-pro,ollama:llama3.2"
    for llm in (only, both, reordered):
        await llm.aclose()


@pytest.mark.anyio
async def test_build_vision() -> None:
    assert build_vision(from_env(GEMINI_API_KEY="k")) is None
    assert build_vision(from_env(GEMINI_API_KEY="k", PROMPTPIX_VISION="off")) is None
    vision = build_vision(
        from_env(
            GEMINI_API_KEY="k",
            PROMPTPIX_VISION="GEMINI",
            PROMPTPIX_VISION_MODEL="gemini-2.5-pro",
            PROMPTPIX_VISION_TIMEOUT_S="3",
        )
    )
    assert vision is not None
    assert vision.name == "gemini:gemini-2.5-pro" and vision.timeout_s == 3.0
    await vision.aclose()
