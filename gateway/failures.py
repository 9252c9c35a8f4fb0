"""Lower-level failures as the public errors of SPEC §1, mapped here and only here."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import asyncpg

from promptpix.cache.control import ControlError
from promptpix.cache.store import StoreUnavailable
from promptpix.generators.base import AllGeneratorsFailed, Refused
from promptpix.transforms.errors import PoolFull, SourceTooLarge, UnreadableImage

from . import errors as err

# What the control store raises when its database is down, busy or cut off.
DATABASE_DOWN = (
    OSError,
    sqlite3.OperationalError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


log = logging.getLogger("promptpix.failures")


def answer_for(exc: BaseException) -> err.GatewayError:
    """`map_error`, logged: an unexpected failure as an error with its traceback; a known
    outage (a provider, the store, the database) as one warning line; a client's error not
    at all."""
    mapped = map_error(exc)
    if mapped.status >= 500:
        if mapped.code == err.GatewayError.code and type(exc) is not err.GatewayError:
            log.error("request failed: %r", exc, exc_info=exc)
        else:
            log.warning("%s %s: %s (%s)", mapped.status, mapped.code, mapped.message, exc)
    return mapped


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
    if isinstance(exc, ControlError):  # the control store's refusals know their answer
        mapped = err.GatewayError(exc.message, param=exc.param)
        mapped.status, mapped.code = exc.status, exc.code
        return mapped
    if isinstance(exc, DATABASE_DOWN):
        return err.DatabaseDown(
            "the database of projects and keys cannot be reached; try again shortly",
            retry_after=5,
        )
    return err.GatewayError("internal error")
