"""One error hierarchy; `otp.web.errors` maps it to HTTP in one place (JSON; /v2 and HTML render through it)."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad configuration, reported at startup naming the variable."""


class OtpError(Exception):
    """An error a client caused or must see: carries the HTTP status and a stable code."""

    status = 400
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.details = details or {}


class InvalidInput(OtpError):
    status = 400
    code = "invalid_parameter"


class Unauthorized(OtpError):
    status = 401
    code = "unauthorized"


class Forbidden(OtpError):
    status = 403
    code = "forbidden"


class NotFound(OtpError):
    status = 404
    code = "not_found"


class Conflict(OtpError):
    status = 409
    code = "conflict"


class RequestTimeout(OtpError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(OtpError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(OtpError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(OtpError):
    status = 429
    code = "rate_limited"


class Unavailable(OtpError):
    status = 503
    code = "unavailable"
