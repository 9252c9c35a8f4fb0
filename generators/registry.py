"""Which generators exist, and building the chain, the prompt LLM and the vision model from
`GeneratorSettings`.

The ids a chain may name are `settings.GeneratorId`; `FACTORIES` makes each of them.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Generator
from .chain import MAX_PIXELS, Chain
from .comfyui import ComfyUIGenerator
from .gemini import GeminiGenerator
from .imagen import ImagenGenerator
from .limits import Limits, limits_for
from .llm import GeminiLLM, LLMChain, OllamaLLM, TextLLM
from .local import LocalGenerator
from .openai import OpenAIGenerator
from .settings import GeneratorSettings
from .vision import GeminiVision

# A call's timeout is the chain's to enforce; a client gets the same, or an hour when the
# chain sets none (timeout 0).
NO_TIMEOUT_S = 3600.0

Factory = Callable[[GeneratorSettings, float], Generator]
FACTORIES: dict[str, Factory] = {
    "gemini": lambda s, timeout_s: GeminiGenerator(s.gemini, timeout_s=timeout_s),
    "imagen": lambda s, timeout_s: ImagenGenerator(s.imagen, timeout_s=timeout_s),
    "openai": lambda s, timeout_s: OpenAIGenerator(s.openai, timeout_s=timeout_s),
    "comfyui": lambda s, timeout_s: ComfyUIGenerator(s.comfyui, timeout_s=timeout_s),
    "local": lambda s, _: LocalGenerator(s.local_latency_ms),
}


def build_chain(settings: GeneratorSettings, *, max_pixels: int = MAX_PIXELS) -> Chain:
    """The chain `settings.generators` names, each generator with its limits."""
    limits: dict[str, Limits] = {
        gen_id: limits_for(gen_id, settings.limits) for gen_id in settings.generators
    }
    generators = [
        FACTORIES[gen_id](settings, limits[gen_id].timeout_s or NO_TIMEOUT_S)
        for gen_id in settings.generators
    ]
    return Chain(
        generators, limits, refusal_fallback=settings.refusal_fallback, max_pixels=max_pixels
    )


def build_llm(settings: GeneratorSettings) -> TextLLM | None:
    """The prompt LLM (one backend, or several tried in order), or None: prompt work is
    deterministic."""
    llm = settings.llm
    members: list[TextLLM] = []
    for name in settings.llm_backends:
        if name == "ollama":
            members.append(OllamaLLM(llm.ollama_url, llm.ollama_model, timeout_s=llm.timeout_s))
        else:
            members.append(
                GeminiLLM(
                    settings.gemini.api_key,
                    llm.gemini_model,
                    base_url=settings.gemini.base_url or None,
                    timeout_s=llm.timeout_s,
                    # Flash models answer faster without a thinking phase; others decide.
                    thinking_budget=0 if llm.gemini_model.startswith("gemini-2.5-flash") else None,
                )
            )
    if not members:
        return None
    return members[0] if len(members) == 1 else LLMChain(members)


def build_vision(settings: GeneratorSettings) -> GeminiVision | None:
    """The vision model that analyses new originals, or None: saliency alone."""
    vision = settings.vision
    if vision.backend != "gemini":
        return None
    return GeminiVision(
        settings.gemini.api_key,
        vision.model,
        base_url=vision.base_url or settings.gemini.base_url or None,
        timeout_s=vision.timeout_s,
    )
