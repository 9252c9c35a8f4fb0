"""The built-in style presets: a prompt template each, and whether it wants a plain background."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Style:
    name: str
    template: str  # "{prompt}" is replaced by the user's prompt
    transparent: bool  # asks for a plain background, removed to transparency
    note: str = ""  # what it looks like, in a few words, for people and models choosing one


BUILTIN_STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            "spot_illustration",
            "A spot illustration of {prompt}. Clean editorial illustration, soft shading, "
            "limited palette, isolated subject with generous white space.",
            False,
            "editorial illustration, isolated subject, white space",
        ),
        Style(
            "minimalist_vector_art",
            "Minimalist flat vector art of {prompt}. Simple geometric shapes, bold flat colours, "
            "no gradients, no text, on a plain solid white background.",
            True,
            "flat vector shapes; plain background removed (transparent)",
        ),
        Style(
            "symbolic_representation",
            "A symbolic, abstract representation of {prompt}. One clear central symbol, "
            "strong silhouette, on a plain solid white background.",
            True,
            "one abstract symbol; plain background removed (transparent)",
        ),
        Style(
            "photorealistic",
            "A photorealistic photograph of {prompt}. Natural light, realistic textures, "
            "shallow depth of field, shot on a full-frame camera.",
            False,
            "a natural-light photograph",
        ),
        Style(
            "icon",
            "An app icon of {prompt}. Centered single glyph, crisp edges, simple shapes, "
            "readable at small sizes, on a plain solid white background.",
            True,
            "an app-icon glyph; plain background removed (transparent)",
        ),
        Style(
            "logo",
            "A logo for {prompt}. Distinctive mark, vector style, balanced negative space, "
            "no photographic detail, on a plain solid white background.",
            True,
            "a logo mark; plain background removed (transparent)",
        ),
    )
}


def is_transparent(style: str) -> bool:
    """The style asks for a plain background, which is removed wherever the format has alpha."""
    preset = BUILTIN_STYLES.get(style)
    return preset is not None and preset.transparent


def apply_style(prompt: str, style: str) -> str:
    """The style's template filled with the prompt (no style: the prompt unchanged)."""
    preset = BUILTIN_STYLES.get(style)
    return preset.template.replace("{prompt}", prompt) if preset else prompt
