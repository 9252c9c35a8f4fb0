"""What a transform can fail with; the gateway maps these to HTTP answers."""

from __future__ import annotations


class TransformError(Exception):
    """An image could not be processed."""


class SourceTooLarge(TransformError):
    """The source has more pixels than the budget allows (checked before decoding)."""


class UnreadableImage(TransformError):
    """The bytes are not an image in an allowed format."""


class PoolFull(TransformError):
    """Every transform slot and queue place is taken."""


class UnsupportedFormat(TransformError):
    """The bytes are not in a format the gateway takes (told by their first bytes)."""
