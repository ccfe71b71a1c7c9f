"""The one error → HTTP mapping: what any exception means to a client, and the ``/v1`` JSON of it.

``failure(exc)`` is the table: an ``otp.errors`` error carries its own status and code; a storage
failure (``REDIS_ERRORS``: a timeout, a lost connection, a failover) is a 503 to retry shortly;
Starlette's own 404/405 keep their status; anything else is a 500 whose details stay in the log.
``headers`` is the one rule for Retry-After and WWW-Authenticate. The renderings are views of a
``Failure``: ``/v1`` JSON here (``json_response``, ``HANDLERS``), Twilio's body in
``otp.web.verify_v2.errors`` (Twilio's codes, which live with the /v2 concept) and the dashboard's
HTML pages in ``otp.dashboard.error_pages``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.errors import OtpError
from otp.storage.errors import REDIS_ERRORS
from otp.web.body import utf8_safe
from otp.web.metrics import method_of, route_of

log = logging.getLogger("otp")

Cause = Literal["otp", "http", "storage", "internal"]

# The statuses that promise the client a retry: only they carry Retry-After.
RETRYABLE = (429, 503)
# Without a figure of its own, a 503 asks for a retry after a second: failovers take about that.
UNAVAILABLE_RETRY_AFTER = 1
HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}
STORAGE_MESSAGE = "storage is unavailable; retry shortly"


@dataclass(frozen=True)
class Failure:
    """An exception as a client sees it, before any rendering."""

    cause: Cause
    status: int
    code: str
    message: str
    field: str | None = None
    retry_after: int | None = None
    rule: str | None = None
    # Headers the exception asked for itself (Starlette's HTTPException carries them).
    extra_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # What more a refusal names (a spent budget: its scope and when it resets), for /v1's body.
    context: Mapping[str, str] = dataclasses.field(default_factory=dict)


# The details of an error that /v1 shows beside code and message.
SHOWN_DETAILS = ("scope", "resets_at")


def failure(exc: BaseException) -> Failure:
    if isinstance(exc, OtpError):
        rule = str(exc.details.get("rule", "")) or None
        context = {k: str(exc.details[k]) for k in SHOWN_DETAILS if k in exc.details}
        return Failure("otp", exc.status, exc.code, exc.message, exc.field, exc.retry_after, rule, context=context)
    if isinstance(exc, HTTPException):
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return Failure("http", exc.status_code, code, str(exc.detail), extra_headers=dict(exc.headers or {}))
    if isinstance(exc, REDIS_ERRORS):
        return Failure("storage", 503, "unavailable", STORAGE_MESSAGE)
    return Failure("internal", 500, "internal", "internal error")


def headers(status: int, retry_after: int | None, *, auth_scheme: str | None = None) -> dict[str, str]:
    """Retry-After and WWW-Authenticate for an answer of ``status``; ``auth_scheme`` is what the
    surface authenticates with (Bearer for /v1, Basic for /v2)."""
    out: dict[str, str] = {}
    if status in RETRYABLE and retry_after is not None:
        out["Retry-After"] = str(retry_after)
    elif status == 503:
        out["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    if status == 401 and auth_scheme:
        out["WWW-Authenticate"] = f'{auth_scheme} realm="otp"'
    return out


def note(request: Request, exc: BaseException, found: Failure, logger: logging.Logger) -> None:
    """Log what the client isn't told: storage failures by type, anything unexpected in full. The
    request is named by its route template and a known method, as the access line names it: the
    method and path a client sent could carry anything, a number included."""
    method, route = method_of(request.scope), route_of(request.scope)
    if found.cause == "storage":
        logger.warning("storage error on %s %s: %s", method, route, type(exc).__name__)
    elif found.cause == "internal":
        logger.exception("unhandled error on %s %s", method, route, exc_info=exc)


def error_body(
    code: str, message: str, field: str | None = None, retry_after: int | None = None, rule: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "field": field}
    if retry_after is not None:
        error["retry_after"] = retry_after
    if rule:
        error["rule"] = rule
    return {"error": error}


def json_response(found: Failure) -> JSONResponse:
    """The /v1 body ``{"error": {code, message, field, retry_after, rule}}``."""
    # Escaped if UTF-8 can't carry them (a lone surrogate), or rendering the answer would fail.
    field_name = utf8_safe(found.field) if found.field else found.field
    message = utf8_safe(found.message)
    if field_name:
        message = f"{field_name}: {message}"
    body = error_body(found.code, message, field_name, found.retry_after, found.rule)
    body["error"].update(found.context)
    return JSONResponse(
        body,
        status_code=found.status,
        headers={**found.extra_headers, **headers(found.status, found.retry_after, auth_scheme="Bearer")},
    )


async def handle(request: Request, exc: Exception) -> Response:
    found = failure(exc)
    note(request, exc, found, log)
    return json_response(found)


# Every class ``failure`` tells apart, for Starlette's exception handlers (which pick by class).
HANDLED: tuple[type[BaseException], ...] = (OtpError, HTTPException, *REDIS_ERRORS, Exception)
HANDLERS: dict[Any, Any] = dict.fromkeys(HANDLED, handle)
