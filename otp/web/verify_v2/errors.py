"""Twilio's error codes, and the Twilio rendering of the one error → HTTP mapping.

Every /v2 answer, failures included, leaves in Twilio's body ``{code, message, more_info,
status}`` (via ``twilio_endpoint``), never the native /v1 body. What an exception means (its
status, its Retry-After) is ``otp.web.errors.failure``; this module adds Twilio's code for it
(``BY_CODE``, ``BY_STATUS``) and, where Twilio's contract answers a code with another status than
ours (a check on a finished verification is Twilio's 404, ours a 409), that status.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import rate_limits
from otp.core.templates import TEMPLATE_NOT_FOUND
from otp.errors import OtpError
from otp.web import errors
from otp.web.body import utf8_safe
from otp.web.errors import Failure

log = logging.getLogger("otp.twilio_compat")

Endpoint = Callable[[Request], Awaitable[Response]]

# Our field names → Twilio's, for errors raised below the adapter (the Verifier, otp.core.phone).
TWILIO_FIELDS = {
    "to": "To",
    "id": "VerificationSid",
    "code": "Code",
    "ip": "DeviceIp",
    "channel": "Channel",
    "locale": "Locale",
    "risk_check": "RiskCheck",
}
# An adapter-level refusal: the check came after the verification's last allowed attempt.
CHECKS_EXHAUSTED = "max_check_attempts_reached"
# CustomCode on a service without CustomCodeEnabled.
CUSTOM_CODE_NOT_ENABLED = "custom_code_not_enabled"
# A Safe List create for a number already on it.
ALREADY_SAFE_LISTED = "already_safe_listed"


@dataclass(frozen=True)
class TwilioError:
    status: int
    code: int
    title: str


BLOCKED = TwilioError(403, 60410, "Verification delivery attempt blocked (suspected SMS pumping)")
BY_CODE: Mapping[str, TwilioError] = {
    "max_sends_reached": TwilioError(429, 60203, "Max send attempts reached"),
    CHECKS_EXHAUSTED: TwilioError(429, 60202, "Max check attempts reached"),
    # Twilio's documented code for a feature the service hasn't enabled (its error 60204 names
    # Enable Custom Verification Code as the cause).
    CUSTOM_CODE_NOT_ENABLED: TwilioError(403, 60204, "Service does not support this feature"),
    "number_type_not_allowed": TwilioError(403, 60205, "SMS is not supported by landline phone number"),
    ALREADY_SAFE_LISTED: TwilioError(400, 60411, "Phone Number already exists"),
    rate_limits.TOO_MANY_RATE_LIMITS: TwilioError(400, 60207, "Max rate limits per service reached"),
    rate_limits.RATE_LIMIT_EXISTS: TwilioError(400, 60208, "Rate limit with that UniqueName already exists"),
    rate_limits.UNIQUE_NAME_INVALID: TwilioError(400, 60209, "UniqueName format is invalid"),
    rate_limits.TOO_MANY_BUCKETS: TwilioError(400, 60210, "Max Buckets per Rate limit reached"),
    rate_limits.BUCKET_INTERVAL_EXISTS: TwilioError(400, 60211, "Bucket with the given Interval already exists"),
    # A full bucket of a service Rate Limit: Twilio's 20429 (its 20429 page names these limits).
    "rate_limit_bucket": TwilioError(429, 20429, "Too Many Requests"),
    TEMPLATE_NOT_FOUND: TwilioError(400, 60228, "Template was not found"),
    "prefix_blocked": BLOCKED,
    "country_blocked": BLOCKED,
    "pumping_unverified_hourly": BLOCKED,
    "pumping_unverified_daily": BLOCKED,
    # The number replied STOP (otp.core.optouts). Verify documents no code of its own for it that
    # we could find; Twilio's Messaging code for the same case is 21610, so an SDK's catch of
    # that code (and its message) tells the caller what happened.
    "recipient_opted_out": TwilioError(403, 21610, "Attempt to send to unsubscribed recipient"),
    # Every pumping block is Twilio's 60410, as its Fraud Guard answers; only pumping_in_flight
    # (a moment's wait, not a block) stays the generic 20429.
    "range_blocked": BLOCKED,
    "ip_blocked": BLOCKED,
    "pumping_unproven_budget": BLOCKED,
    "country_not_allowed": TwilioError(403, 60605, "Verification delivery attempt blocked (geo permissions)"),
    "not_found": TwilioError(404, 20404, "The requested resource was not found"),
    "not_pending": TwilioError(404, 20404, "The requested resource was not found"),
    "already_approved": TwilioError(404, 20404, "The requested resource was not found"),
    "method_not_allowed": TwilioError(405, 20004, "Method not allowed"),
}
# Everything else by HTTP status: our other rate limits (number, IP, key, custom, cooldown, failed
# checks) are Twilio's generic 20429; any bad input is 60200 naming the parameter.
BY_STATUS: Mapping[int, TwilioError] = {
    400: TwilioError(400, 60200, "Invalid parameter"),
    401: TwilioError(401, 20003, "Authenticate"),
    403: TwilioError(403, 20403, "Forbidden"),
    404: TwilioError(404, 20404, "The requested resource was not found"),
    408: TwilioError(408, 60200, "Invalid parameter"),
    409: TwilioError(409, 20409, "Conflict"),
    413: TwilioError(413, 60200, "Invalid parameter"),
    415: TwilioError(415, 60200, "Invalid parameter"),
    429: TwilioError(429, 20429, "Too Many Requests"),
    503: TwilioError(503, 20503, "Service Unavailable"),
}
INTERNAL = TwilioError(500, 20500, "Internal Server Error")


def twilio_error(found: Failure) -> TwilioError:
    if found.cause == "internal":
        return INTERNAL
    return BY_CODE.get(found.code) or BY_STATUS.get(found.status) or TwilioError(found.status, 20500, "Error")


def _message(error: TwilioError, found: Failure) -> str:
    if found.cause == "internal":
        return error.title  # the details stay in the log
    if error.code == 60200:
        field = TWILIO_FIELDS.get(found.field or "", found.field)
        return f"Invalid parameter `{field}`: {found.message}" if field else f"Invalid parameter: {found.message}"
    return f"{error.title}: {found.message}" if found.message else error.title


def body(error: TwilioError, message: str) -> dict[str, Any]:
    return {
        "code": error.code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{error.code}",
        "status": error.status,
    }


def render(found: Failure) -> JSONResponse:
    error = twilio_error(found)
    headers = errors.headers(error.status, found.retry_after, auth_scheme="Basic")
    # Escaped if UTF-8 can't carry it (a lone surrogate in a field name), or rendering would fail.
    return JSONResponse(body(error, utf8_safe(_message(error, found))), status_code=error.status, headers=headers)


def error_response(exc: OtpError) -> JSONResponse:
    return render(errors.failure(exc))


def twilio_endpoint(handler: Endpoint) -> Endpoint:
    """Every /v2 answer, failures included, in Twilio's shape: nothing reaches the app's native
    error handlers."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            found = errors.failure(exc)
            errors.note(request, exc, found, log)
            return render(found)

    return endpoint
