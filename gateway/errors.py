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


class InvalidBody(BadParameter):
    code = "invalid_body"


class UnknownField(BadParameter):
    code = "unknown_field"


class BodyTooLarge(GatewayError):
    status = 413
    code = "body_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


# An upload (SPEC §2 "Assets"): refused from its header, before any decode.
class UploadTooLarge(BodyTooLarge):
    code = "upload_too_large"  # more bytes than PROMPTPIX_MAX_UPLOAD_MB


class UploadTooManyPixels(GatewayError):
    status = 413
    code = "image_too_large"  # its header declares more pixels than the budget


class UnsupportedImage(UnsupportedMediaType):
    code = "unsupported_image_type"  # not JPEG, PNG, WebP, AVIF, HEIF or GIF


class InvalidImage(BadParameter):
    code = "invalid_image"  # says it is a supported format, and is not a readable one


class UnknownParameter(BadParameter):
    code = "unknown_parameter"


class PromptTooLong(BadParameter):
    code = "prompt_too_long"


class Unauthorized(GatewayError):
    """No key, or one nobody knows (SPEC §2)."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"www-authenticate": 'Bearer realm="promptpix"'})


class Forbidden(GatewayError):
    """A key of another project or without the scope, or no admin token (SPEC §2)."""

    status = 403
    code = "forbidden"


class SignatureRequired(Forbidden):
    code = "signature_required"


class SignatureInvalid(Forbidden):
    code = "signature_invalid"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class UnknownProject(NotFound):
    code = "unknown_project"


class UnknownAsset(NotFound):
    code = "unknown_asset"


class UnknownGeneration(NotFound):
    code = "unknown_generation"


class UnknownFlow(NotFound):
    code = "unknown_flow"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str = "GET, HEAD, OPTIONS") -> None:
        super().__init__(message, headers={"allow": allow})  # the methods the route answers


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class ContentRefused(GatewayError):
    status = 422
    code = "content_refused"


class ReferencesUnsupported(GatewayError):
    """Reference images were given, and no generator the request may use takes images."""

    status = 422
    code = "references_unsupported"


class ImageTooLarge(GatewayError):
    status = 422
    code = "source_too_large"


class BadOriginal(GatewayError):
    status = 502
    code = "unreadable_original"


class Busy(GatewayError):
    status = 429
    code = "busy"


class TooMany(GatewayError):
    """429 with `Retry-After` and the IETF httpapi draft's `RateLimit-Policy`/`RateLimit`."""

    status = 429

    def __init__(
        self, message: str, *, retry_after: int, policy: str, quota: int, window_s: int, left: int
    ) -> None:
        super().__init__(
            message,
            retry_after=max(1, retry_after),
            headers={
                "ratelimit-policy": f'"{policy}";q={quota};w={window_s}',
                "ratelimit": f'"{policy}";r={left};t={max(1, retry_after)}',
            },
        )


class QuotaExceeded(TooMany):
    code = "quota_exceeded"


class BudgetExceeded(TooMany):
    code = "budget_exceeded"


class RateLimited(TooMany):
    code = "rate_limited"


class GeneratorsFailed(GatewayError):
    status = 503
    code = "generators_failed"


class StoreDown(GatewayError):
    status = 503
    code = "store_unavailable"


class DatabaseDown(GatewayError):
    """The database of projects, keys and counters cannot be reached: nothing that needs it
    is done (a generation that must be counted is not started), and it is said so."""

    status = 503
    code = "database_unavailable"


class GenerationTimeout(GatewayError):
    status = 504
    code = "generation_timeout"
