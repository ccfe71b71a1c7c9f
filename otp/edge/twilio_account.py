"""The account's own resources through the official `twilio` SDK, for `otp doctor`: the Account,
its IncomingPhoneNumbers and ShortCodes, and Messaging v1 Services (otp.core.twilio_checks'
`TwilioAccountSource`). ``OTP_TWILIO_API_URL`` redirects these calls as it does the Messages API
(`twilio_client`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException

from otp.core.twilio_checks import AUTH, REFUSED, UNREACHABLE, AccountInfo, OwnedNumber, ServiceInfo, TwilioCheckFailed
from otp.edge.twilio_sender import twilio_client

T = TypeVar("T")
LISTED = 20  # the filters match part of a number; a handful of matches is plenty to find the exact one


class TwilioAccount:
    def __init__(self, account_sid: str, auth_token: str, *, api_url: str = "", timeout: float = 10.0) -> None:
        self.account_sid = account_sid
        self.client = twilio_client(account_sid, auth_token, api_url=api_url, timeout=timeout, pool_size=2)

    def account(self) -> AccountInfo:
        found = _call(lambda: self.client.api.v2010.accounts(self.account_sid).fetch())
        return AccountInfo(sid=str(found.sid or self.account_sid), status=str(found.status), type=str(found.type))

    def numbers(self, e164: str) -> list[OwnedNumber]:
        listed = _call(lambda: self.client.incoming_phone_numbers.list(phone_number=e164, limit=LISTED))
        return [OwnedNumber(str(n.phone_number), _sms(n.capabilities)) for n in listed]

    def short_codes(self, code: str) -> list[str]:
        listed = _call(lambda: self.client.short_codes.list(short_code=code, limit=LISTED))
        return [str(c.short_code) for c in listed]

    def service(self, sid: str) -> ServiceInfo | None:
        try:
            found = self.client.messaging.v1.services(sid).fetch()
        except TwilioRestException as exc:
            if exc.status == 404:
                return None
            raise _problem(exc) from None
        except (TwilioException, requests.RequestException) as exc:
            raise _problem(exc) from None
        return ServiceInfo(sid=str(found.sid), friendly_name=str(found.friendly_name or ""))


def _sms(capabilities: Any) -> bool:
    return isinstance(capabilities, dict) and capabilities.get("sms") is True


def _call(fetch: Callable[[], T]) -> T:
    try:
        return fetch()
    except (TwilioException, requests.RequestException) as exc:
        raise _problem(exc) from None


def _answer(exc: TwilioException) -> tuple[int | None, int | None, str]:
    """(HTTP status, Twilio error code, message) of a refusal. A list whose page Twilio refuses
    raises the base TwilioException with the response instead of a TwilioRestException."""
    if isinstance(exc, TwilioRestException):
        return exc.status, exc.code, str(exc.msg)
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    try:
        body = json.loads(getattr(response, "text", "") or "{}")
    except ValueError:
        body = {}
    code = body.get("code") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    return status, code if isinstance(code, int) else None, str(message or (exc.args[0] if exc.args else ""))


def _problem(exc: TwilioException | requests.RequestException) -> TwilioCheckFailed:
    """Whose problem a failed call is: the credentials, the network, or Twilio's answer."""
    if isinstance(exc, requests.Timeout):
        return TwilioCheckFailed(UNREACHABLE, "Twilio did not answer in time")
    if isinstance(exc, requests.RequestException):
        return TwilioCheckFailed(UNREACHABLE, f"cannot reach Twilio: {type(exc).__name__}")
    status, code, message = _answer(exc)
    if status in (401, 403):
        return TwilioCheckFailed(AUTH, f"HTTP {status}, Twilio error {code}")
    return TwilioCheckFailed(REFUSED, f"Twilio answered HTTP {status}, error {code}: {message[:200]}")
