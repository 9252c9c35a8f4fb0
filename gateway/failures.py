"""Lower-level failures as the public errors of SPEC §1, mapped here and only here."""

from __future__ import annotations

import asyncio

from promptpix.cache.store import StoreUnavailable
from promptpix.generators.base import AllGeneratorsFailed, Refused
from promptpix.transforms.errors import PoolFull, SourceTooLarge, UnreadableImage

from . import errors as err


def map_error(exc: BaseException) -> err.GatewayError:
    if isinstance(exc, err.GatewayError):
        return exc
    if isinstance(exc, Refused):
        return err.ContentRefused("the generator declined this prompt")
    if isinstance(exc, AllGeneratorsFailed):
        return err.GeneratorsFailed(
            "every generator failed",
            retry_after=30,
            extra={"generators_attempted": exc.attempted},
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return err.GenerationTimeout(
            "the image is taking longer than this request may wait; it is still being made "
            "and will be stored: try again shortly",
            retry_after=5,
        )
    if isinstance(exc, StoreUnavailable):
        return err.StoreDown("the image store cannot be read; try again shortly", retry_after=5)
    if isinstance(exc, PoolFull):
        return err.Busy("too many images are being processed; try again", retry_after=1)
    if isinstance(exc, SourceTooLarge):
        return err.ImageTooLarge(str(exc))
    if isinstance(exc, UnreadableImage):
        return err.BadOriginal("the stored original could not be read")
    return err.GatewayError("internal error")
