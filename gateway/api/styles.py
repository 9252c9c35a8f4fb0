"""`GET /v1/styles`: the styles a key's project may use, its default, and the native ratios:
what a model or a form needs to choose a style and a ratio."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from promptpix.generators.ratios import NATIVE_SIZES, ratio_text
from promptpix.generators.styles import BUILTIN_STYLES

from ..projects import Projects
from .routing import Call, Operation


class StyleOut(msgspec.Struct, kw_only=True):
    name: str
    description: str
    transparent: Annotated[
        bool, Meta(description="asks for a plain background, removed where the format has alpha")
    ]


class RatioOut(msgspec.Struct, kw_only=True):
    ratio: str
    width: int
    height: int


class StylesOut(msgspec.Struct, kw_only=True):
    styles: list[StyleOut]
    default: Annotated[str | None, Meta(description="the project's default style, if any")]
    aspect_ratios: Annotated[
        list[RatioOut], Meta(description="the native ratios, generated as they are")
    ]


STYLES = [
    StyleOut(name=s.name, description=s.note, transparent=s.transparent)
    for s in BUILTIN_STYLES.values()
]
RATIOS = [RatioOut(ratio=ratio_text(r), width=w, height=h) for r, (w, h) in NATIVE_SIZES.items()]


def operations(projects: Projects) -> list[Operation]:
    async def styles(call: Call) -> Any:
        assert call.principal.key is not None
        project = await projects.get(call.principal.key.project)
        return StylesOut(styles=STYLES, default=project.style or None, aspect_ratios=RATIOS)

    return [
        Operation(
            "GET",
            "/v1/styles",
            styles,
            "The styles the key's project may use, its default style, and the native ratios",
            answer=StylesOut,
            errors=(401,),
            tags=("images",),
        )
    ]
