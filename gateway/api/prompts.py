"""`POST /v1/prompts/validate`: what the gateway would do with a prompt (keep it, compact it,
or refuse it), by the same rules and the same optimizer as a generation, without generating."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from promptpix.generators.llm import TextLLM
from promptpix.generators.prompts import COMPACT_ABOVE, MAX_PROMPT_CHARS, validate_prompt

from ..params import _text
from .models import Body
from .routing import Call, Operation

Action = Literal["none", "compact", "reject"]


class PromptBody(Body):
    # No length bound here: a prompt too long is an answer (`reject`), not a bad body.
    prompt: Annotated[str, Meta(description="the prompt, as a live URL or a generation gives it")]


class PromptCheck(msgspec.Struct, kw_only=True):
    length: Annotated[int, Meta(description="characters after normalisation and trimming")]
    valid: bool
    action: Annotated[
        Action,
        Meta(
            description="`none`: sent as it is; `compact`: over compact_above characters, "
            "compacted before generation; `reject`: empty or over max_length"
        ),
    ]
    compacted: Annotated[
        str | None, Meta(description="with `compact`, the prompt that would be sent")
    ]
    reason: Annotated[
        str | None, Meta(description="with `reject`: `prompt_required` or `prompt_too_long`")
    ] = None
    optimizer: Annotated[
        str | None,
        Meta(description="with `compact`: `deterministic`, or the LLM that compacted"),
    ] = None
    max_length: int = MAX_PROMPT_CHARS
    compact_above: int = COMPACT_ABOVE


async def check(prompt: str, llm: TextLLM | None) -> PromptCheck:
    """The live URL's normalisation, then the generation path's own length rules and
    compaction (by the LLM when one is configured, as a generation would)."""
    found = await validate_prompt(_text(prompt), llm=llm)
    if not found.valid:
        return PromptCheck(
            length=found.length, valid=False, action="reject", compacted=None, reason=found.error
        )
    if not found.will_compact:
        return PromptCheck(length=found.length, valid=True, action="none", compacted=None)
    return PromptCheck(
        length=found.length,
        valid=True,
        action="compact",
        compacted=found.optimized,
        optimizer=found.optimizer,
    )


def operations(llm: TextLLM | None) -> list[Operation]:
    async def validate(call: Call) -> Any:
        body: PromptBody = call.body
        return await check(body.prompt, llm)

    return [
        Operation(
            "POST",
            "/v1/prompts/validate",
            validate,
            "Check a prompt: its length, and whether it would be sent as it is, compacted "
            "(with the compacted text) or refused, without generating",
            body=PromptBody,
            answer=PromptCheck,
            scope="generate",
            errors=(400, 401, 403, 413, 415),
            tags=("images",),
        )
    ]
