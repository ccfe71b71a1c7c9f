"""One error hierarchy; `otp.web.errors` maps it to HTTP in one place (JSON; /v2 and HTML render through it).

``CODES`` is the list of every ``code`` a client can be answered with, and its HTTP status: the
OpenAPI document's error schema is drawn from it, and tests/test_error_codes.py checks it against
every raiser in otp (a code raised but not listed, or listed but never raised, fails).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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


class MethodNotAllowed(OtpError):
    status = 405
    code = "method_not_allowed"


class RateLimited(OtpError):
    status = 429
    code = "rate_limited"


class Unavailable(OtpError):
    status = 503
    code = "unavailable"


@dataclass(frozen=True)
class ErrorCode:
    """A ``code`` of the error body: the status it comes with, and what it means to a client."""

    status: int
    meaning: str
    kind: str = "error"


# What a client sees of a code: an error answer of /v1 (its ``code``) and of /v2 (Twilio's code for
# it, otp.web.verify_v2.errors); one of /v2 only (raised by the /v2 adapter's rules); or no error
# at all, the ``reason`` of a 200 from POST /v1/tokens/verify.
ERROR, V2_ONLY, TOKEN_REASON = "error", "v2", "token"


def _codes(status: int, meanings: Mapping[str, str], kind: str = ERROR) -> dict[str, ErrorCode]:
    return {code: ErrorCode(status, meaning, kind) for code, meaning in meanings.items()}


# By status (each status's /v2-only codes after its others), then roughly by how often a client meets them.
# The refusals of the send rules are worded for the end user in otp.core.refusals.REFUSAL_MESSAGES;
# these say what the code is.
CODES: Mapping[str, ErrorCode] = {
    **_codes(
        400,
        {
            "invalid_parameter": "a field's value is refused; `field` names it",
            "missing_field": "a required field is absent or blank",
            "unknown_field": "a JSON body names a field the operation doesn't take",
            "wrong_type": "a JSON field has the wrong type (a number for a string, ...)",
            "malformed_json": "the body is not valid JSON (or nests too deeply, repeats a key, holds a lone surrogate)",
            "unsupported_channel": "a channel other than sms",
            "http_error": "another HTTP-level refusal of the framework (otp's own refusals carry their codes)",
        },
    ),
    **_codes(
        400,
        {
            "template_not_found": "no such template (TemplateSid)",
            "unique_name_invalid": "a Rate Limit's UniqueName has the wrong format",
            "rate_limit_exists": "a Rate Limit with that UniqueName exists in the service",
            "too_many_rate_limits": "the service has all the Rate Limits it may have",
            "too_many_buckets": "the Rate Limit has all the Buckets it may have",
            "bucket_interval_exists": "the Rate Limit has a Bucket with that Interval",
            "already_safe_listed": "the number is already on the Safe List",
        },
        V2_ONLY,
    ),
    **_codes(
        400,
        {
            "token_invalid": "not a token otp signed, or one another API key earned (admin keys verify any)",
            "token_expired": "the token is older than max_age",
            "token_used": "the token was consumed already",
        },
        TOKEN_REASON,
    ),
    **_codes(401, {"unauthorized": "no credentials, malformed ones, or an unknown or revoked key"}),
    **_codes(
        403,
        {
            "forbidden": "the key may not do this (not an admin key, or an account's limit of services)",
            "country_not_allowed": "SMS to the number's country is not enabled (OTP_ALLOWED_COUNTRIES)",
            "number_type_not_allowed": "the number's line type can't receive codes (a landline, a non-geographic one)",
            "recipient_opted_out": "the number replied STOP; an admin clears it after it texts START",
            "bad_signature": "a Twilio callback without a valid X-Twilio-Signature",
        },
    ),
    **_codes(403, {"custom_code_not_enabled": "CustomCode on a service without CustomCodeEnabled"}, V2_ONLY),
    **_codes(
        404,
        {
            "not_found": "no such resource (unknown, another key's, or past its retention)",
            "metrics_disabled": "/metrics while OTP_METRICS_TOKEN is unset",
        },
    ),
    **_codes(405, {"method_not_allowed": "the path exists, not with this method"}),
    **_codes(408, {"request_timeout": "the request body did not arrive in time"}),
    **_codes(
        409,
        {
            "not_pending": "the verification is no longer pending (approved, canceled, expired or out of attempts)",
            "already_approved": "the verification was already approved: a code approves once",
        },
    ),
    **_codes(409, {"conflict": "the resource exists already (a MessagingConfiguration for that country)"}, V2_ONLY),
    **_codes(413, {"payload_too_large": "the body is over 16 KiB"}),
    **_codes(415, {"unsupported_media_type": "the body's Content-Type is not the operation's"}),
    **_codes(
        429,
        {
            "rate_limited": "a limit of the number shared by every tenant; retry after `retry_after` seconds",
            "resend_too_soon": "a code was just sent to this number (OTP_RESEND_COOLDOWN)",
            "max_sends_reached": "the verification has had all its sends; it must expire first",
            "number_hourly_limit": "the number's sends this hour are used up",
            "number_daily_limit": "the number's sends today are used up",
            "ip_hourly_limit": "the `ip`'s sends this hour are used up",
            "key_minute_limit": "the API key's sends this minute are used up",
            "too_many_checks": "the API key's checks this minute are used up",
            "too_many_failed_checks": "too many wrong codes for this number; wait `retry_after` seconds",
            "budget_exhausted": "a daily SMS budget is spent; `scope` names it, `resets_at` says when it resets",
            "prefix_blocked": "SMS pumping suspected: the number's prefix is blocked for a while",
            "range_blocked": "SMS pumping suspected: the number's wider range is blocked for a while",
            "ip_blocked": "SMS pumping suspected: the `ip` is blocked for a while",
            "country_blocked": "SMS pumping suspected: the number's country is blocked for a while",
            "pumping_unverified_hourly": "too many unconfirmed codes to the destination this hour (SMS pumping)",
            "pumping_unverified_daily": "too many unconfirmed codes to the destination today (SMS pumping)",
            "pumping_in_flight": "too many codes to this destination are being sent right now; retry in a moment",
            "pumping_unproven_budget": "the day's budget of unconfirmed codes to new destinations is spent",
        },
    ),
    **_codes(
        429,
        {
            "custom_limit": "a RateLimits value's sends this hour are used up",
            "rate_limit_bucket": "a Bucket of one of the service's Rate Limits is full",
            "max_check_attempts_reached": "the verification has had all its check attempts",
        },
        V2_ONLY,
    ),
    **_codes(500, {"internal": "a bug: the details are in otp's log, never in the answer"}),
    **_codes(
        503,
        {
            "unavailable": "Redis is unreachable or failing over; retry after `retry_after` seconds",
            "lookup_unavailable": "Twilio Lookup gave no answer and OTP_LOOKUP_FAIL=closed; retry shortly",
        },
    ),
}
