"""Prompt work before generation: compaction of long prompts, style templates, negatives.

Offline everything is deterministic: long prompts are compacted by dropping repeated
sentences and cutting at a sentence edge, and enhancement is the style's template. With a
text LLM (`generators.llm`), compaction and enhancement ask it first, within a short
timeout, and fall back to the deterministic work when it does not answer, answers nothing,
or answers too much.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import asdict, dataclass, field

from .llm import LLMError, TextLLM
from .styles import BUILTIN_STYLES, apply_style

log = logging.getLogger("promptpix.prompts")

COMPACT_ABOVE = 3_000  # prompts longer than this are compacted before generation
MAX_PROMPT_CHARS = 10_000  # longer prompts are refused (400 prompt_too_long)
DETERMINISTIC = "deterministic"
TEMPLATE = "template"
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)\n?```$", re.S)
_PREAMBLE = re.compile(
    r"^(?:(?:here is|here's)[^:\n]{0,60}:|(?:the\s+)?(?:optimi[sz]ed|rewritten|compact(?:ed)?|"
    r"enhanced|improved|shortened)?\s*prompt\s*:)\s*",
    re.I,
)

COMPACT_SYSTEM = (
    "You shorten prompts for an image generator. Rewrite the user's prompt in at most "
    "{limit} characters. Keep every subject, object, attribute, colour, count, style, "
    "composition, lighting and text to be drawn; drop repetition, filler and instructions "
    "that do not change the picture. Keep the prompt's language. Answer with the rewritten "
    "prompt only: no preamble, no quotes, no notes."
)
ENHANCE_SYSTEM = (
    "You improve prompts for an image generator. Rewrite the user's prompt as one vivid, "
    "concrete description of the picture: subject, setting, composition, lighting, colours "
    "and mood, in at most {limit} characters. Keep the user's intent, every element they "
    "named, and their language; invent nothing that contradicts them. {style}Answer with "
    "the rewritten prompt only: no preamble, no quotes, no notes."
)
ENHANCE_LIMIT = 1_200  # an enhanced prompt longer than this is not used


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    given: str  # what the user sent (the key is computed from this)
    sent: str  # what the generator receives
    compacted: bool
    enhanced: bool
    optimizer: str = ""  # who compacted: "deterministic", "ollama:MODEL", "gemini:MODEL", or ""
    enhancer: str = ""  # who enhanced: "template", "ollama:MODEL", "gemini:MODEL", or ""
    optimized: str = ""  # the prompt after compaction, before enhancement and style
    fallbacks: dict[str, str] = field(default_factory=dict)  # step -> why the LLM was not used
    timings_ms: dict[str, float] = field(default_factory=dict)  # "compact", "enhance"


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The outcome of one LLM-assisted step."""

    text: str
    source: str  # "ollama:MODEL" / "gemini:MODEL", or the fallback's name
    fallback_reason: str  # empty when the LLM's answer was used
    elapsed_ms: float


def compact(prompt: str, limit: int = COMPACT_ABOVE) -> str:
    """Deterministic compaction: drop repeated sentences, then cut at a sentence or word edge."""
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in _SENTENCE.split(prompt):
        norm = " ".join(sentence.lower().split())
        if norm and norm not in seen:
            seen.add(norm)
            kept.append(sentence.strip())
    out = ""
    for sentence in kept:
        candidate = f"{out} {sentence}".strip()
        if len(candidate) > limit:
            break
        out = candidate
    if not out:  # one enormous sentence: cut at a word boundary
        out = prompt[:limit].rsplit(" ", 1)[0] or prompt[:limit]
    return out


def clean_answer(text: str) -> str:
    """An LLM's answer without code fences, a leading label or wrapping quotes."""
    out = text.strip()
    fenced = _FENCE.match(out)
    if fenced:
        out = fenced.group(1).strip()
    out = _PREAMBLE.sub("", out, count=1).strip()
    for quote in ('"', "'", "\u201c\u201d", "`"):
        first, last = quote[0], quote[-1]
        if len(out) >= 2 and out[0] == first and out[-1] == last:
            out = out[1:-1].strip()
    return out


async def _ask(llm: TextLLM, prompt: str, system: str, timeout: float) -> tuple[str, str, str]:
    """(answer, source, failure reason): exactly one of answer and reason is empty."""
    try:
        async with asyncio.timeout(timeout):
            answer = await llm.complete(prompt, system=system)
    except TimeoutError:
        return "", llm.name, f"no answer within {timeout:g} s"
    except LLMError as exc:
        return "", llm.name, str(exc)
    text = clean_answer(answer.text)
    return text, answer.source, "" if text else "empty answer"


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def compact_with_llm(
    prompt: str, llm: TextLLM | None, *, limit: int = COMPACT_ABOVE, timeout: float | None = None
) -> Rewrite:
    """Compaction by the LLM, or by `compact` when it fails, is slow, or answers badly."""
    started = time.perf_counter()
    reason = ""
    if llm is not None:
        system = COMPACT_SYSTEM.format(limit=limit)
        text, source, reason = await _ask(llm, prompt, system, timeout or llm.timeout_s)
        if text and len(text) > limit:
            reason = f"answer too long ({len(text)} > {limit} characters)"
        elif text and len(text) < min(limit, len(prompt)) // 50:
            reason = f"answer too short ({len(text)} characters)"
        elif text:
            return Rewrite(text, source, "", _elapsed_ms(started))
        log.info("prompt compaction falls back to %s: %s", DETERMINISTIC, reason)
    return Rewrite(compact(prompt, limit), DETERMINISTIC, reason, _elapsed_ms(started))


def _style_hint(style: str) -> str:
    preset = BUILTIN_STYLES.get(style)
    if preset is None:
        return ""
    # The template is applied afterwards: the rewrite should suit it, not repeat it.
    shape = preset.template.replace("{prompt}", "<the subject>")
    return (
        f"The picture will be made in this style, which is added after your text: "
        f"{shape!r}. Describe the subject so that it suits that style, without repeating it. "
    )


async def enhance_with_llm(
    prompt: str, style: str, llm: TextLLM | None, *, timeout: float | None = None
) -> Rewrite:
    """The prompt rewritten for the style by the LLM; on failure, the prompt unchanged."""
    started = time.perf_counter()
    reason = ""
    if llm is not None:
        limit = max(ENHANCE_LIMIT, len(prompt) + 200)
        limit = min(limit, COMPACT_ABOVE)
        system = ENHANCE_SYSTEM.format(limit=limit, style=_style_hint(style))
        text, source, reason = await _ask(llm, prompt, system, timeout or llm.timeout_s)
        if text and len(text) > limit:
            reason = f"answer too long ({len(text)} > {limit} characters)"
        elif text:
            return Rewrite(text, source, "", _elapsed_ms(started))
        log.info("prompt enhancement falls back to the style template: %s", reason)
    return Rewrite(prompt, TEMPLATE, reason, _elapsed_ms(started))


async def prepare(
    prompt: str,
    *,
    style: str,
    negative: str,
    enhance: bool,
    takes_negative: bool,
    llm: TextLLM | None = None,
    timeout: float | None = None,
) -> PreparedPrompt:
    """What is sent to the generator. With an LLM, long prompts are compacted by it and, with
    `enhance`, it rewrites the prompt for the style (the style's template is applied to its
    answer); each step waits at most `timeout` seconds (default: the LLM's own) before the
    deterministic work is used instead. Without an LLM the work is deterministic.
    """
    text = prompt
    fallbacks: dict[str, str] = {}
    timings: dict[str, float] = {}
    optimizer = ""
    compacted = len(text) > COMPACT_ABOVE
    if compacted:
        step = await compact_with_llm(text, llm, timeout=timeout)
        text, optimizer = step.text, step.source
        timings["compact"] = step.elapsed_ms
        if step.fallback_reason:
            fallbacks["compact"] = step.fallback_reason
    optimized = text
    enhancer = ""
    if enhance and llm is not None:
        step = await enhance_with_llm(text, style, llm, timeout=timeout)
        timings["enhance"] = step.elapsed_ms
        if step.fallback_reason:
            fallbacks["enhance"] = step.fallback_reason
        else:
            text, enhancer = step.text, step.source
    if enhance or style:
        styled = apply_style(text, style)
        if styled != text and not enhancer:
            enhancer = TEMPLATE
        text = styled
    if negative and not takes_negative:
        text = f"{text} Avoid: {negative}."
    return PreparedPrompt(
        given=prompt,
        sent=text,
        compacted=compacted,
        enhanced=bool(enhancer),
        optimizer=optimizer,
        enhancer=enhancer,
        optimized=optimized,
        fallbacks=fallbacks,
        timings_ms=timings,
    )


@dataclass(frozen=True, slots=True)
class PromptValidation:
    """What `POST /v1/prompts/validate` answers."""

    valid: bool
    error: str | None  # "prompt_required" or "prompt_too_long" when not valid
    length: int  # characters after trimming
    max_length: int
    compact_above: int
    too_long: bool
    will_compact: bool
    optimized: str | None  # the prompt after compaction (itself when short); None if invalid
    optimized_length: int | None
    optimizer: str  # "none", "deterministic", "ollama:MODEL" or "gemini:MODEL"
    fallback_reason: str  # why an LLM's compaction was not used
    sent: str | None  # what a generator would receive (style, enhancement, negative applied)
    enhancer: str
    timings_ms: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


async def validate_prompt(
    prompt: str,
    *,
    llm: TextLLM | None = None,
    style: str = "",
    negative: str = "",
    enhance: bool = False,
    takes_negative: bool = False,
    timeout: float | None = None,
) -> PromptValidation:
    """Length checks and the optimizer's result for a prompt, without generating."""
    started = time.perf_counter()
    text = prompt.strip()
    length = len(text)
    too_long = length > MAX_PROMPT_CHARS
    error = "prompt_required" if not text else "prompt_too_long" if too_long else None
    if error is not None:
        return PromptValidation(
            valid=False,
            error=error,
            length=length,
            max_length=MAX_PROMPT_CHARS,
            compact_above=COMPACT_ABOVE,
            too_long=too_long,
            will_compact=False,
            optimized=None,
            optimized_length=None,
            optimizer="none",
            fallback_reason="",
            sent=None,
            enhancer="",
            timings_ms={"total": _elapsed_ms(started)},
        )
    prepared = await prepare(
        text,
        style=style,
        negative=negative,
        enhance=enhance,
        takes_negative=takes_negative,
        llm=llm,
        timeout=timeout,
    )
    return PromptValidation(
        valid=True,
        error=None,
        length=length,
        max_length=MAX_PROMPT_CHARS,
        compact_above=COMPACT_ABOVE,
        too_long=False,
        will_compact=prepared.compacted,
        optimized=prepared.optimized,
        optimized_length=len(prepared.optimized),
        optimizer=prepared.optimizer or "none",
        fallback_reason=prepared.fallbacks.get("compact", ""),
        sent=prepared.sent,
        enhancer=prepared.enhancer,
        timings_ms={**prepared.timings_ms, "total": _elapsed_ms(started)},
    )
