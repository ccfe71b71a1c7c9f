"""Status callbacks as Twilio posts them: signed with the auth token, never following a redirect,
each answer (or the failure to get one) recorded for the tests to read."""

from __future__ import annotations

import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Final

from twilio.request_validator import RequestValidator

from otp.devtools.twilio_stub.plans import Step
from otp.devtools.twilio_stub.wire import API_VERSION, SERVICE_SENDER, StubMessage

CALLBACK_TIMEOUT: Final = 5.0

Sent = tuple[str, dict[str, str], int]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Twilio does not follow redirects from a callback URL; the 3xx is recorded as the answer.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def valid_callback(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def callback_params(message: StubMessage, step: Step) -> dict[str, str]:
    params = {
        "AccountSid": message.account_sid,
        "ApiVersion": API_VERSION,
        "From": message.from_ or SERVICE_SENDER,
        "MessageSid": message.sid,
        "MessageStatus": step.status,
        "SmsSid": message.sid,
        "SmsStatus": step.status,
        "To": message.to,
    }
    if message.messaging_service_sid is not None:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if step.error_code is not None:
        params["ErrorCode"] = str(step.error_code)
    return params


class Callbacks:
    """Posts the callbacks of one account and keeps what each got back."""

    def __init__(self, auth_token: str, lock: threading.Lock, say: Callable[[str], None]) -> None:
        self._validator = RequestValidator(auth_token)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._changed = threading.Condition(lock)
        self._sent: list[Sent] = []
        self._say = say

    def announce(self, message: StubMessage, step: Step) -> None:
        """Posts ``step`` of ``message`` to its callback URL, as many times as the step says."""
        if message.status_callback is None or step.posts == 0:
            return
        params = callback_params(message, step)
        # A duplicate is Twilio retrying one event: same body, same signature, same idempotency token.
        token = f"{secrets.token_hex(16)}-{message.sid}"
        for _ in range(step.posts):
            self._post(message.status_callback, params, token)

    def _post(self, url: str, params: dict[str, str], token: str) -> None:
        signature: str = self._validator.compute_signature(url, params)
        # The scheme was checked to be http(s) when the message was created (valid_callback).
        request = urllib.request.Request(  # noqa: S310
            url,
            data=urllib.parse.urlencode(params).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                "I-Twilio-Idempotency-Token": token,
                "User-Agent": "TwilioProxy/1.1",
            },
        )
        try:
            with self._opener.open(request, timeout=CALLBACK_TIMEOUT) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError):
            status = 0  # refused, timed out, or not a URL urllib can open: recorded, never raised
        self._say(f"  callback {params['MessageStatus']} {params['MessageSid']} -> {url} [{status}]")
        with self._changed:
            self._sent.append((url, dict(params), status))
            self._changed.notify_all()

    def sent(self) -> list[Sent]:
        """Copies of what was posted; the caller holds the lock."""
        return [(url, dict(params), status) for url, params, status in self._sent]

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._sent) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    statuses = [params.get("MessageStatus") for _, params, _ in self._sent]
                    raise TimeoutError(f"{len(self._sent)} of {count} callbacks after {timeout}s: {statuses}")
                self._changed.wait(left)
