"""Errors that know their HTTP status, public code and message; mapped once at the edge."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.extra = extra or {}
        self.headers = headers or {}  # sent with the answer (`WWW-Authenticate`, `Allow`...)

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.param is not None:
            err["param"] = self.param
        err.update(self.extra)
        return {"error": err}


class BadParameter(GatewayError):
    status = 400
    code = "invalid_parameter"


class UnknownParameter(BadParameter):
    code = "unknown_parameter"


class PromptTooLong(BadParameter):
    code = "prompt_too_long"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class UnknownProject(NotFound):
    code = "unknown_project"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str = "GET, HEAD, OPTIONS") -> None:
        super().__init__(message, headers={"allow": allow})  # the methods the route answers


class ContentRefused(GatewayError):
    status = 422
    code = "content_refused"


class ImageTooLarge(GatewayError):
    status = 422
    code = "source_too_large"


class BadOriginal(GatewayError):
    status = 502
    code = "unreadable_original"


class Busy(GatewayError):
    status = 429
    code = "busy"


class GeneratorsFailed(GatewayError):
    status = 503
    code = "generators_failed"


class StoreDown(GatewayError):
    status = 503
    code = "store_unavailable"


class GenerationTimeout(GatewayError):
    status = 504
    code = "generation_timeout"
