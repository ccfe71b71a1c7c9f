"""What the client raises: one ``OtpError`` per kind of answer, each carrying otp's error body.

otp answers a refusal with ``{"error": {"code", "message", "field", "retry_after", "rule", …}}`` and,
for 429 and 503, a ``Retry-After`` header (otp.web.errors); ``from_answer`` turns that into the
class for its status, so a caller catches what it can act on: ``RateLimited`` (wait
``retry_after`` seconds), ``InvalidRequest`` (fix ``field``), ``Unavailable`` (retry shortly).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from otp.audit_fields import Event
from otp.web.models import CheckResult, Error, ErrorDetail


class OtpError(Exception):
    """otp refused the call, or could not be reached. ``status`` is the HTTP status (None when no
    answer came), ``code`` otp's stable error code, ``field`` the input at fault, ``retry_after``
    the seconds to wait before trying again, ``rule`` the limit or fraud rule that refused it, and
    ``detail`` the whole error body as otp sent it (None when the answer was not otp's JSON)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        code: str,
        field: str | None = None,
        retry_after: int | None = None,
        detail: ErrorDetail | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.retry_after = retry_after
        self.detail = detail

    @property
    def rule(self) -> str | None:
        return self.detail.rule if self.detail else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, field={self.field!r})"


class InvalidRequest(OtpError):
    """400, 405, 408, 413, 415, 422: the request was wrong; ``field`` names the input."""


class Unauthorized(OtpError):
    """401: no API key, or one otp doesn't know (revoked)."""


class Forbidden(OtpError):
    """403: the key may not do this (an admin call with a tenant key), or a fraud rule refused the
    number (``field`` "to", ``rule`` names it)."""


class NotFound(OtpError):
    """404: no such verification, safe-list entry, opt-out, key or webhook (``field`` says which)."""


class Conflict(OtpError):
    """409: the verification is no longer pending (``already_approved``, canceled, expired)."""


class RateLimited(OtpError):
    """429: a limit refused the call; try again after ``retry_after`` seconds."""


class Unavailable(OtpError):
    """503 (otp's storage is failing over, or the connection cap was reached), a gateway error, or
    no answer at all (``status`` None: refused connection, timeout). Retry after ``retry_after``
    seconds when given."""


class WrongCode(OtpError):
    """A check that did not approve (otp answers it 200): the code was wrong, or the verification
    is past checking. ``code`` is ``check_failed`` while ``verification_status`` is still pending,
    else that status (``max_attempts_reached``, ``expired``, ``canceled``); ``result`` is otp's answer."""

    def __init__(self, result: CheckResult) -> None:
        pending = result.status == "pending"
        left = result.attempts_left
        message = (
            f"wrong code, {left} attempt{'' if left == 1 else 's'} left"
            if pending
            else f"the verification is {result.status}"
        )
        super().__init__(message, status=200, code=Event.CHECK_FAILED.value if pending else result.status, field="code")
        self.result = result
        self.attempts_left = result.attempts_left
        self.verification_status = result.status


_BY_STATUS: dict[int, type[OtpError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: InvalidRequest,
    408: InvalidRequest,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}
# A status otp has no code of its own for (a proxy's 502, uvicorn's plain-text 503).
_FALLBACK_CODES = {429: "rate_limited", 502: "unavailable", 503: "unavailable", 504: "unavailable"}


def _retry_after(value: str | None) -> int | None:
    """The Retry-After header in seconds (otp sends seconds; a date from some proxy is ignored)."""
    return int(value) if value is not None and value.strip().isdigit() else None


def from_answer(status: int, headers: Mapping[str, str], body: bytes) -> OtpError:
    """The error for a non-2xx answer: otp's JSON error body, or the status alone when the body is
    something else (a reverse proxy's HTML page)."""
    kind = _BY_STATUS.get(status, OtpError)
    header_wait = _retry_after(headers.get("retry-after"))
    try:
        detail = msgspec.json.decode(body, type=Error).error
    except msgspec.DecodeError:  # ValidationError is a DecodeError too
        text = body.decode("utf-8", "replace").strip()[:200]
        code = _FALLBACK_CODES.get(status, "http_error")
        return kind(
            f"HTTP {status}: {text}" if text else f"HTTP {status}", status=status, code=code, retry_after=header_wait
        )
    wait = detail.retry_after if detail.retry_after is not None else header_wait
    return kind(detail.message, status=status, code=detail.code, field=detail.field, retry_after=wait, detail=detail)
