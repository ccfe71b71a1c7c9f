"""What each refusal from otp means to the person signing in: a page title, a sentence, the HTTP
status of that page, and whether the sign-in can go on (the code page) or must start over.

otp's typed errors (otp.client) carry what decides it: the class (the HTTP status otp answered),
``field`` (the input at fault), ``retry_after`` (seconds to wait), ``code`` and ``rule`` (which
limit or fraud rule refused) and, for a check that did not approve, the verification's status."""

from __future__ import annotations

from dataclasses import dataclass

from otp.client import Conflict, Forbidden, InvalidRequest, NotFound, OtpError, RateLimited, WrongCode

UNAVAILABLE_WAIT = 30  # what we tell the user when otp gave no Retry-After
# otp's SMS-pumping rules are all named sms_pumping_<scope> (prefix, range, country, tenant, ...):
# a 429 from one is not "too many codes" the user asked for but a number otp won't text for now.
FRAUD_RULE_PREFIX = "sms_pumping_"
# ...except this one: too many sends to the destination at this very moment, gone in a few seconds.
FRAUD_TRANSIENT_CODES = frozenset({"pumping_in_flight"})
SECONDS_SHOWN_UP_TO = 90  # a longer wait is shown in minutes ("48 min", not "2880 s")


@dataclass(frozen=True)
class Refusal:
    status: int
    title: str
    message: str
    start_over: bool  # the pending sign-in is finished: back to the password form
    retry_after: int | None = None


def unavailable(error: OtpError | None = None) -> Refusal:
    wait = (error.retry_after if error else None) or UNAVAILABLE_WAIT
    return Refusal(
        503,
        "Sign-in is unavailable",
        f"We can't check codes right now. Please try again in {wait} seconds.",
        start_over=False,  # a pending sign-in stays pending: its code still works once otp answers
        retry_after=wait,
    )


def wait_words(seconds: int) -> str:
    if seconds <= SECONDS_SHOWN_UP_TO:
        return f"{seconds} s"
    return f"{-(-seconds // 60)} min"  # rounded up: never tell a user to come back too early


def wait_message(seconds: int | None) -> str:
    return f"Try again in {wait_words(seconds)}." if seconds else "Try again later."


def is_fraud_refusal(error: OtpError) -> bool:
    """A send a fraud rule refused (its 429 names the rule), bar the momentary one."""
    return (error.rule or "").startswith(FRAUD_RULE_PREFIX) and error.code not in FRAUD_TRANSIENT_CODES


def for_start(error: OtpError) -> Refusal:
    """Sending the code (sign-in or Resend) was refused."""
    if isinstance(error, RateLimited) and not is_fraud_refusal(error):
        return Refusal(
            429,
            "Too many codes",
            f"We sent codes to this phone too often. {wait_message(error.retry_after)}",
            start_over=True,
            retry_after=error.retry_after,
        )
    if (isinstance(error, InvalidRequest | Forbidden) and error.field == "to") or is_fraud_refusal(error):
        # A number otp can't use (400), one its allowed countries or number types refuse (403), or
        # one its fraud rules refuse for now (429 with an sms_pumping_ rule).
        return Refusal(
            403,
            "We can't text your phone",
            "We can't send a sign-in code to the phone number on your account. Please contact support.",
            start_over=True,
        )
    return unavailable(error)  # our key refused, otp down or failing over: nothing the user can fix


def for_status(status: str) -> Refusal:
    """The page for a verification that can no longer approve (otp's status for it)."""
    if status == "max_attempts_reached":
        return Refusal(
            403,
            "Too many wrong codes",
            "That was the last try for this code, so it no longer works. Sign in again to get a new one.",
            start_over=True,
        )
    return Refusal(  # expired, canceled, or gone from otp
        410, "The code has expired", "This code no longer works. Sign in again to get a new one.", start_over=True
    )


def for_check(error: OtpError) -> Refusal:
    """Checking the code was refused, or did not approve for good (a wrong code with attempts left
    is not a refusal: the code page says so)."""
    if isinstance(error, WrongCode):
        return for_status(error.verification_status)
    if isinstance(error, Conflict | NotFound):
        return for_status("expired")
    if isinstance(error, RateLimited):  # too many wrong codes for this phone within the hour
        return Refusal(
            429,
            "Too many tries",
            f"There were too many wrong codes for this phone. {wait_message(error.retry_after)}",
            start_over=False,
            retry_after=error.retry_after,
        )
    return unavailable(error)


def not_approved() -> Refusal:
    """otp answered "approved" with a token that does not verify: a misconfiguration (OTP_ISSUER,
    the wrong otp) or someone in between; never sign in on it."""
    return Refusal(502, "Sign-in failed", "We couldn't confirm your code. Please sign in again.", start_over=True)
