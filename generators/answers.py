"""Whether a generator's answer is a usable image, read from its header with no pixel decode:
an image in an allowed format, within the pixel budget."""

from __future__ import annotations

from promptpix.transforms.source import Header, header

from .base import GeneratedImage


def check(image: GeneratedImage, max_pixels: int) -> Header:
    """The answer's header; raises `UnreadableImage` or `SourceTooLarge` (transforms.errors)."""
    return header(image.data, max_pixels)
