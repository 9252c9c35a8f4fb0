"""The generators' settings: the chain, each generator's limits, each provider, the prompt
LLM and the vision model, with their defaults, read from the environment and checked.

Each variable is named once, beside its field (`rename`); `GeneratorSettings()` is the
embedded default. `GeneratorSettings.from_env(env)` reads only this package's variables
from `env` (stripped; empty means unset) and raises `ValueError("VARIABLE: what is
wrong")`, naming the variable and never echoing its value. No other module of the package
reads the environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from .limits import DEFAULT_LIMITS, Limits

GeneratorId = Literal["gemini", "imagen", "openai", "comfyui", "local"]
GENERATOR_IDS: tuple[str, ...] = get_args(GeneratorId)
LLMBackend = Literal["ollama", "gemini"]

DEFAULT_GEMINI_MODEL = "gemini-2.5-flash-image"
DEFAULT_IMAGEN_MODEL = "imagen-4.0-generate-001"
DEFAULT_OPENAI_MODEL = "gpt-image-1"
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_COMFYUI_CHECKPOINT = "sd_xl_base_1.0.safetensors"
DEFAULT_OLLAMA_MODEL = "llama3.2"
DEFAULT_GEMINI_TEXT_MODEL = "gemini-2.5-flash"
DEFAULT_LLM_TIMEOUT_S = 8.0
DEFAULT_VISION_MODEL = "gemini-2.5-flash"
DEFAULT_VISION_TIMEOUT_S = 10.0

OFF = frozenset({"off", "none", "0", "false"})  # what turns the prompt LLM or vision off
_BOOLEAN = {"on": "true", "yes": "true", "off": "false", "no": "false"}  # msgspec reads 1/0
Timeout = Annotated[float, msgspec.Meta(gt=0, le=3600)]


class GeminiSettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "api_key": "GEMINI_API_KEY",
        "google_api_key": "GOOGLE_API_KEY",
        "model": "PROMPTPIX_GEMINI_MODEL",
        "base_url": "PROMPTPIX_GEMINI_BASE_URL",
    },
):
    api_key: str = ""
    google_api_key: str = ""  # the image generator takes it when GEMINI_API_KEY is unset
    model: str = DEFAULT_GEMINI_MODEL
    base_url: str = ""  # another server speaking the Gemini API

    @property
    def image_key(self) -> str:
        return self.api_key or self.google_api_key


class ImagenSettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "vertex_api_key": "PROMPTPIX_VERTEX_API_KEY",
        "project": "GOOGLE_CLOUD_PROJECT",
        "location": "GOOGLE_CLOUD_LOCATION",
        "model": "PROMPTPIX_IMAGEN_MODEL",
        "base_url": "PROMPTPIX_IMAGEN_BASE_URL",
    },
):
    vertex_api_key: str = ""  # Vertex AI express mode: a key, no project
    project: str = ""  # with Application Default Credentials
    location: str = "us-central1"
    model: str = DEFAULT_IMAGEN_MODEL
    base_url: str = ""


class OpenAISettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "api_key": "OPENAI_API_KEY",
        "model": "PROMPTPIX_OPENAI_MODEL",
        "base_url": "PROMPTPIX_OPENAI_BASE_URL",
        "quality": "PROMPTPIX_OPENAI_QUALITY",
    },
):
    api_key: str = ""
    model: str = DEFAULT_OPENAI_MODEL
    base_url: str = DEFAULT_OPENAI_BASE_URL  # any compatible server
    quality: str = ""  # sent as the API's `quality` when set


class ComfyUISettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "url": "PROMPTPIX_COMFYUI_URL",
        "workflow": "PROMPTPIX_COMFYUI_WORKFLOW",
        "checkpoint": "PROMPTPIX_COMFYUI_CHECKPOINT",
        "steps": "PROMPTPIX_COMFYUI_STEPS",
    },
):
    url: str = ""
    workflow: str = ""  # a workflow file; empty: the packaged SDXL graph
    checkpoint: str = DEFAULT_COMFYUI_CHECKPOINT
    steps: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 30


class PromptLLMSettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "backends": "PROMPTPIX_PROMPT_LLM",
        "ollama_url": "PROMPTPIX_OLLAMA_URL",
        "ollama_model": "PROMPTPIX_OLLAMA_MODEL",
        "gemini_model": "PROMPTPIX_GEMINI_TEXT_MODEL",
        "timeout_s": "PROMPTPIX_PROMPT_LLM_TIMEOUT_S",
    },
):
    # In order; None: ollama when its URL is set, then gemini when GEMINI_API_KEY is; (): off.
    backends: tuple[LLMBackend, ...] | None = None
    ollama_url: str = ""
    ollama_model: str = DEFAULT_OLLAMA_MODEL
    gemini_model: str = DEFAULT_GEMINI_TEXT_MODEL
    timeout_s: Timeout = DEFAULT_LLM_TIMEOUT_S  # one prompt operation


class VisionSettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "backend": "PROMPTPIX_VISION",
        "model": "PROMPTPIX_VISION_MODEL",
        "timeout_s": "PROMPTPIX_VISION_TIMEOUT_S",
        "base_url": "PROMPTPIX_VISION_BASE_URL",
    },
):
    backend: Literal["off", "gemini"] = "off"
    model: str = DEFAULT_VISION_MODEL
    timeout_s: Timeout = DEFAULT_VISION_TIMEOUT_S
    base_url: str = ""  # empty: PROMPTPIX_GEMINI_BASE_URL


class GeneratorSettings(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename={
        "generators": "PROMPTPIX_GENERATORS",
        "local_latency_ms": "PROMPTPIX_LOCAL_LATENCY_MS",
        "refusal_fallback": "PROMPTPIX_REFUSAL_FALLBACK",
    },
):
    # The chain, in order; from_env's default is gemini,local with GEMINI_API_KEY.
    generators: tuple[GeneratorId, ...] = ("local",)
    local_latency_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] = 0
    refusal_fallback: bool = False  # a refusal moves to the next generator
    # Per generator id; PROMPTPIX_{ID}_{FIELD} sets each field of its limits.
    limits: dict[str, Limits] = msgspec.field(default_factory=lambda: dict(DEFAULT_LIMITS))
    gemini: GeminiSettings = msgspec.field(default_factory=GeminiSettings)
    imagen: ImagenSettings = msgspec.field(default_factory=ImagenSettings)
    openai: OpenAISettings = msgspec.field(default_factory=OpenAISettings)
    comfyui: ComfyUISettings = msgspec.field(default_factory=ComfyUISettings)
    llm: PromptLLMSettings = msgspec.field(default_factory=PromptLLMSettings)
    vision: VisionSettings = msgspec.field(default_factory=VisionSettings)

    def __post_init__(self) -> None:
        problem = _chain_problem(self) or _needs_problem(self)
        if problem:
            raise ValueError(problem)

    @property
    def llm_backends(self) -> tuple[str, ...]:
        """The prompt LLM's backends, in order (empty: none, prompt work is deterministic)."""
        if self.llm.backends is not None:
            return self.llm.backends
        found = (("ollama", self.llm.ollama_url), ("gemini", self.gemini.api_key))
        return tuple(name for name, on in found if on)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GeneratorSettings:
        values = _pick(cls, env)
        sections: dict[str, type[msgspec.Struct]] = {
            "gemini": GeminiSettings,
            "imagen": ImagenSettings,
            "openai": OpenAISettings,
            "comfyui": ComfyUISettings,
            "llm": PromptLLMSettings,
            "vision": VisionSettings,
        }
        for name, section in sections.items():
            values[name] = _pick(section, env)
        if "PROMPTPIX_GENERATORS" not in values:
            with_key = "GEMINI_API_KEY" in values["gemini"]
            values["PROMPTPIX_GENERATORS"] = ["gemini", "local"] if with_key else ["local"]
        values["limits"] = {gen_id: _limits(gen_id, env) for gen_id in GENERATOR_IDS}
        llm = values["llm"]
        if "PROMPTPIX_PROMPT_LLM" in llm:
            names = [str(n).lower() for n in llm["PROMPTPIX_PROMPT_LLM"]]
            if not names:
                raise ValueError("PROMPTPIX_PROMPT_LLM: names no backend (off turns it off)")
            llm["PROMPTPIX_PROMPT_LLM"] = [] if names[0] in OFF and len(names) == 1 else names
        vision = values["vision"]
        if "PROMPTPIX_VISION" in vision:
            wanted = str(vision["PROMPTPIX_VISION"]).lower()
            vision["PROMPTPIX_VISION"] = "off" if wanted in OFF else wanted
        settings = _convert(values, cls)
        if "comfyui" in settings.generators and settings.comfyui.workflow:
            read_workflow(settings.comfyui.workflow)  # a file it cannot use stops it here
        return settings


def read_workflow(path: str) -> dict[str, Any]:
    """The API-format workflow in the file `PROMPTPIX_COMFYUI_WORKFLOW` names."""
    try:
        with open(path, encoding="utf-8") as f:
            workflow = json.load(f)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(
            f"PROMPTPIX_COMFYUI_WORKFLOW: the file cannot be read ({reason})"
        ) from None
    except ValueError:
        raise ValueError("PROMPTPIX_COMFYUI_WORKFLOW: the file is not JSON") from None
    if not isinstance(workflow, dict):
        raise ValueError("PROMPTPIX_COMFYUI_WORKFLOW: the file is not a JSON object")
    return workflow


def _chain_problem(s: GeneratorSettings) -> str:
    if not s.generators:
        return "PROMPTPIX_GENERATORS: names no generator"
    for i, gen_id in enumerate(s.generators):
        if gen_id in s.generators[:i]:
            first = s.generators.index(gen_id)
            return f"PROMPTPIX_GENERATORS: entries {first + 1} and {i + 1} name the same generator"
    return ""


def _needs_problem(s: GeneratorSettings) -> str:
    """A generator, LLM or vision model named without what it needs."""
    chain = "and PROMPTPIX_GENERATORS names"
    if "gemini" in s.generators and not s.gemini.image_key:
        return f"GEMINI_API_KEY: unset (nor GOOGLE_API_KEY), {chain} gemini"
    if "imagen" in s.generators and not (s.imagen.vertex_api_key or s.imagen.project):
        return (
            f"GOOGLE_CLOUD_PROJECT: unset, {chain} imagen, which needs Vertex AI: "
            "GOOGLE_CLOUD_PROJECT (with Application Default Credentials) or "
            "PROMPTPIX_VERTEX_API_KEY"
        )
    if "openai" in s.generators and not s.openai.api_key:
        return f"OPENAI_API_KEY: unset, {chain} openai"
    if "comfyui" in s.generators and not s.comfyui.url:
        return f"PROMPTPIX_COMFYUI_URL: unset, {chain} comfyui"
    if "ollama" in s.llm_backends and not s.llm.ollama_url:
        return "PROMPTPIX_OLLAMA_URL: unset, and PROMPTPIX_PROMPT_LLM names ollama"
    if "gemini" in s.llm_backends and not s.gemini.api_key:
        return "GEMINI_API_KEY: unset, and PROMPTPIX_PROMPT_LLM names gemini"
    if s.vision.backend == "gemini" and not s.gemini.api_key:
        return "GEMINI_API_KEY: unset, and PROMPTPIX_VISION is gemini"
    return ""


def _limits(gen_id: str, env: Mapping[str, str]) -> Limits:
    """A generator's default limits with its `PROMPTPIX_{ID}_{FIELD}` variables applied."""
    base = DEFAULT_LIMITS.get(gen_id, Limits())
    prefix = f"PROMPTPIX_{gen_id.upper()}_"
    given = {
        f.name: env[prefix + f.name.upper()].strip()
        for f in msgspec.structs.fields(Limits)
        if env.get(prefix + f.name.upper(), "").strip()
    }
    if not given:
        return base
    values = {**msgspec.structs.asdict(base), **given}
    return _convert(values, Limits, lambda name: prefix + name.upper())


def _pick(cls: type[msgspec.Struct], env: Mapping[str, str]) -> dict[str, Any]:
    """The struct's own variables that are set, as msgspec's lax conversion reads them."""
    values: dict[str, Any] = {}
    for f in msgspec.structs.fields(cls):
        if f.encode_name == f.name:  # a section or the limits: not a variable
            continue
        raw = env.get(f.encode_name, "").strip()
        if not raw:
            continue
        if _is_sequence(f.type):
            values[f.encode_name] = [part.strip() for part in raw.split(",") if part.strip()]
        elif f.type is bool:
            values[f.encode_name] = _BOOLEAN.get(raw.lower(), raw)
        else:
            values[f.encode_name] = raw
    return values


def _is_sequence(tp: Any) -> bool:
    if get_origin(tp) is tuple:
        return True
    union = get_origin(tp) in (Union, UnionType)
    return union and any(get_origin(a) is tuple for a in get_args(tp))


S = TypeVar("S", bound=msgspec.Struct)


def _convert(
    values: dict[str, Any], cls: type[S], variable: Callable[[str], str] | None = None
) -> S:
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(_explain(str(exc), cls, variable)) from None


_WHERE = re.compile(r"\.(\w+)|\[(\d+)\]")
_EXPECTED = re.compile(r"^Expected `(\w+)`(?P<bound>(?: [<>]=? [-\d.e+]+)*)(?:, got `\w+`)?$")
_NOUNS = {"int": "a whole number", "float": "a number", "str": "text", "bool": "a boolean"}


def _explain(message: str, cls: type[msgspec.Struct], variable: Callable[[str], str] | None) -> str:
    """msgspec's message as `VARIABLE: what is wrong`, without the value it was given."""
    what, sep, where = message.partition(" - at `$")
    if not sep:  # a check of our own, which names its variable
        return message
    names, index = [], None
    for name, number in _WHERE.findall(where.rstrip("`")):
        if name:
            names.append(name)
        else:
            index = int(number)
    field_type: Any = None
    owner: Any = cls
    for name in names:
        if not (isinstance(owner, type) and issubclass(owner, msgspec.Struct)):
            break
        field_type = {f.encode_name: f.type for f in msgspec.structs.fields(owner)}.get(name)
        owner = field_type
    name = names[-1] if names else "?"
    label = variable(name) if variable else name
    entry = f"entry {index + 1} " if index is not None else ""
    if what.startswith("Invalid enum value"):
        return f"{label}: {entry}must be one of {', '.join(_choices(field_type))}"
    expected = _EXPECTED.match(what)
    if expected:
        kind = expected.group(1)
        if kind == "bool":
            return f"{label}: must be 1 or 0 (true/false, on/off, yes/no)"
        return f"{label}: {entry}must be {_NOUNS.get(kind, kind)}{expected.group('bound')}"
    return f"{label}: {entry}is not a usable value"


def _choices(tp: Any) -> list[str]:
    if get_origin(tp) is Literal:
        return [str(a) for a in get_args(tp)]
    return [c for arg in get_args(tp) for c in _choices(arg)]
