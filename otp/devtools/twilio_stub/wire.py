"""The 2010-04-01 API's documents: the Message resource, as the stub holds and serves it, and
Twilio's error body."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any, Final

from otp.core.messages import segments
from otp.delivery import RANK

API_VERSION: Final = "2010-04-01"
# Twilio assigns a sender from the Messaging Service's pool; this is its magic always-valid test number.
SERVICE_SENDER: Final = "+15005550006"
PRICE_PER_SEGMENT: Final = 0.0079

ERROR_MESSAGES: Final[dict[int, str]] = {
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21604: "A 'To' phone number is required.",
    21609: "Invalid StatusCallback url",
    21610: "Attempt to send to unsubscribed recipient",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}


def count_segments(body: str) -> int:
    return segments(body)


def error_body(code: int, status: int, message: str | None = None) -> dict[str, Any]:
    """Twilio's legacy error document; the SDK turns it into a `TwilioRestException`."""
    return {
        "code": code,
        "message": message or ERROR_MESSAGES.get(code, HTTPStatus(status).phrase),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment.astimezone(UTC))


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class StubMessage:
    """One accepted message as the stub holds it; `messages` hands out copies."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    status: str
    error_code: int | None
    error_message: str | None
    date_created: datetime
    num_segments: int
    price: str | None
    date_updated: datetime | None = None
    date_sent: datetime | None = None
    outcome: str = "delivered"
    # When the create arrived (unix seconds, from the stub's clock: a test's injected one), so a
    # test can check how the worker spaced each sender's messages.
    received_at: float = 0.0
    # What the account is billed per segment (TwilioStub.price sets it per recipient).
    price_per_segment: float = PRICE_PER_SEGMENT

    def advance(self, status: str, error_code: int | None) -> None:
        """Moves to ``status``, never back: Twilio's record does not rewind when callbacks that
        the stub posts out of order arrive (the ranks are otp's, which follow Twilio's)."""
        if RANK.get(status, 0) < RANK.get(self.status, 0):
            return
        moment = now()
        self.status = status
        self.date_updated = moment
        self.error_code = error_code
        self.error_message = None if error_code is None else ERROR_MESSAGES.get(error_code, f"Error {error_code}")
        if status in {"sent", "delivered", "undelivered"}:
            self.date_sent = self.date_sent or moment
        if status in {"delivered", "undelivered"}:
            self.price = f"-{self.price_per_segment * self.num_segments:.5f}"

    def resource(self, *, fresh: bool = False) -> dict[str, Any]:
        """The `api.v2010.account.message` JSON document.  ``fresh`` is the create answer: a
        Messaging Service message has no sender and no segment count until it is dispatched."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        pending_service = fresh and self.messaging_service_sid is not None
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated or self.date_created),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": None if pending_service else self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": "0" if pending_service else str(self.num_segments),
            "price": self.price,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }
