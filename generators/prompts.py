"""Prompt work before generation: compaction of long prompts, style templates, negatives."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .styles import apply_style

COMPACT_ABOVE = 3_000  # prompts longer than this are compacted before generation
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    given: str  # what the user sent (the key is computed from this)
    sent: str  # what the generator receives
    compacted: bool
    enhanced: bool


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


def prepare(
    prompt: str, *, style: str, negative: str, enhance: bool, takes_negative: bool
) -> PreparedPrompt:
    text = prompt
    compacted = len(text) > COMPACT_ABOVE
    if compacted:
        text = compact(text)
    enhanced = False
    if enhance or style:
        styled = apply_style(text, style)
        enhanced = styled != text
        text = styled
    if negative and not takes_negative:
        text = f"{text} Avoid: {negative}."
    return PreparedPrompt(given=prompt, sent=text, compacted=compacted, enhanced=enhanced)
