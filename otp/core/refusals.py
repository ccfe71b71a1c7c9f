"""What a refused start or check tells the caller: the message, the code, the field it counts by.

Kept apart from the use cases so /v1 and /v2 word each refusal once (the /v2 codes map from these
reasons in ``otp.web.verify_v2.errors``).
"""

from __future__ import annotations

from otp.core.policy import Decision
from otp.errors import Conflict, Forbidden, RateLimited, Unavailable

# The retry a tenant is told when the number's shared limits refuse it because of another tenant's
# sends: a fixed value, so it says nothing about when those sends were.
SHARED_LIMIT_RETRY = 60
# The retry a start refused for want of a Lookup answer (OTP_LOOKUP_FAIL=closed) is told.
LOOKUP_RETRY = 5

REFUSAL_MESSAGES = {
    "country_not_allowed": "SMS to this country is not enabled (OTP_ALLOWED_COUNTRIES)",
    "number_type_not_allowed": "this kind of number can't receive verification codes",
    "max_sends_reached": "this verification has had all its sends; cancel it and start another, or let it expire",
    "number_daily_limit": "too many codes sent to this number in the last 24 hours",
    "number_hourly_limit": "too many codes sent to this number this hour",
    "resend_too_soon": "a code was just sent to this number; wait before asking for another",
    "ip_hourly_limit": "too many codes requested from this IP address",
    "key_minute_limit": "too many codes requested with this API key this minute",
    "prefix_blocked": "SMS to this number range is blocked for now (suspected SMS pumping)",
    "range_blocked": "SMS to this wider number range is blocked for now (suspected SMS pumping)",
    "ip_blocked": "SMS requested from this IP address is blocked for now (suspected SMS pumping)",
    "country_blocked": "SMS to this country is blocked for now (suspected SMS pumping)",
    "pumping_unverified_hourly": "too many unused codes to this destination this hour (suspected SMS pumping)",
    "pumping_unverified_daily": "too many unused codes to this destination today (suspected SMS pumping)",
    "pumping_in_flight": "too many codes to this destination are being sent right now; try again in a moment",
    # A new tenant meets this one first (README: the cost of a fresh deployment), so it says what grows it.
    "pumping_unproven_budget": (
        "today's budget of unconfirmed codes to new destinations in this country, or in all, is spent"
        " (suspected SMS pumping); each code your users confirm adds to it"
    ),
    "custom_limit": "too many codes for one of this request's RateLimits values this hour",
    "lookup_unavailable": "the number's line type can't be looked up right now (Twilio Lookup); retry shortly",
    "rate_limit_bucket": "a bucket of one of this service's Rate Limits is full for this request's RateLimits value",
}


def already_approved() -> Conflict:
    # Not a 200 with status "approved": a client testing the status alone would let any code in.
    return Conflict("this verification was already approved; a code approves once", code="already_approved", field="id")


def refusal_message(decision: Decision) -> str:
    return REFUSAL_MESSAGES.get(decision.reason, decision.reason.replace("_", " "))


def not_permitted(decision: Decision) -> Forbidden:
    """A permission refusal (country, number type): 403, whatever the rate limits say."""
    return Forbidden(refusal_message(decision), code=decision.reason, field="to", details={"rule": decision.rule})


LOOKUP_REFUSAL = Decision(False, "line_type_lookup", "lookup_unavailable", LOOKUP_RETRY)


def lookup_unavailable() -> Unavailable:
    """OTP_LOOKUP_FAIL=closed and Lookup gave no answer: a 503 to retry, naming the number."""
    return Unavailable(
        refusal_message(LOOKUP_REFUSAL),
        code=LOOKUP_REFUSAL.reason,
        field="to",
        retry_after=LOOKUP_RETRY,
        details={"rule": LOOKUP_REFUSAL.rule},
    )


# The request field a limit counts by: a refusal names it.
LIMIT_FIELDS = {
    "ip_sends": "ip",
    "key_sends": "Authorization",
    "custom_rate_limit": "RateLimits",
    "service_rate_limit": "RateLimits",
}


def rate_limited(decision: Decision) -> RateLimited:
    return RateLimited(
        refusal_message(decision),
        code=decision.reason,
        field=LIMIT_FIELDS.get(decision.rule, "to"),
        retry_after=decision.retry_after,
        details={"rule": decision.rule},
    )


def retry_seconds(retry_ms: int) -> int:
    """A wait in ms as the whole seconds of Retry-After, never 0."""
    return max(1, -(-retry_ms // 1000))


def too_many_checks(retry_ms: int) -> RateLimited:
    return RateLimited(
        "too many checks with this API key this minute; slow down",
        code="too_many_checks",
        field="Authorization",
        retry_after=retry_seconds(retry_ms),
        details={"rule": "key_checks"},
    )


def too_many_failed_checks(retry_ms: int) -> RateLimited:
    return RateLimited(
        "too many failed checks for this number; wait before trying again",
        code="too_many_failed_checks",
        field="code",
        retry_after=retry_seconds(retry_ms),
        details={"rule": "number_failed_checks"},
    )


def shared_number_limit(retry_ms: int) -> RateLimited:
    # The phone's own limit, shared by every tenant, and another tenant's sends are behind it:
    # say no without saying what they did.
    return RateLimited(
        "too many codes were sent to this number recently; try again later",
        code="rate_limited",
        field="to",
        retry_after=retry_seconds(retry_ms),
    )
