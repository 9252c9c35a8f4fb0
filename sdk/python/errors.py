"""The one exception the client raises: the API's JSON error, or a gateway that could not be
reached, with the status, the error code and `Retry-After`."""

from __future__ import annotations

import email.utils
import time
from typing import Any


class PromptpixError(Exception):
    """A failed call. `status` is the HTTP status (0 when no answer came), `code` the API's
    error code (`quota_exceeded`, `content_refused`, ...; `http_NNN` when the answer had
    none), `param` the parameter at fault, `retry_after` the seconds `Retry-After` asked."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.body = body

    def __repr__(self) -> str:
        return f"PromptpixError(status={self.status}, code={self.code!r}, message={self.message!r})"


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date counted from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from(status: int, headers: Any, payload: Any, text: str) -> PromptpixError:
    """The exception for a failed answer, from its JSON `{"error": {...}}` when it has one."""
    retry = retry_after_seconds(headers.get("retry-after"))
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return PromptpixError(
            status,
            str(error.get("code") or f"http_{status}"),
            str(error.get("message") or ""),
            param=error.get("param") if isinstance(error.get("param"), str) else None,
            retry_after=retry,
            body=payload,
        )
    return PromptpixError(
        status, f"http_{status}", text[:300] or f"HTTP {status}", retry_after=retry, body=payload
    )
