"""Sending an SMS: the `SmsSender` protocol, and the development console sender."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from otp.core.phone import mask_in_record

log = logging.getLogger("otp.sms")


@dataclass(frozen=True)
class SmsMessage:
    to: str
    body: str
    status_callback: str | None = None
    # The Messaging Service a /v2 service's MessagingConfiguration picked for this destination; ""
    # for the operator's sender. Senders without Messaging Services (the console) ignore it.
    messaging_service_sid: str = ""
    # The pool's sender the worker chose (OTP_TWILIO_FROM): a number or short code as From, a
    # Messaging Service sid as MessagingServiceSid; "" the sender's own default.
    sender: str = ""


@dataclass(frozen=True)
class Receipt:
    message_sid: str
    status: str
    segments: int | None = None
    price: str | None = None
    price_unit: str | None = None
    sender: str = ""  # the operator's From number or Messaging Service that sent it ("" unknown)


@dataclass(frozen=True)
class MessageState:
    """A sent message as the provider has it now: its delivery state and, once known, its price."""

    status: str
    error_code: int | None = None
    error_message: str | None = None
    price: str | None = None
    price_unit: str | None = None


@runtime_checkable
class MessageFetcher(Protocol):
    """A sender that can read a message's price too (Twilio fills it in after sending): the
    worker's poll uses it to reconcile the spend budgets (otp.core.budget)."""

    async def fetch_message(self, message_sid: str) -> MessageState: ...


class SendError(Exception):
    """A send that did not go out. ``transient`` ones are retried until the code expires; a
    timeout may have gone out after all, so every retry first looks for the earlier message."""

    def __init__(self, message: str, *, transient: bool, error_code: int | None = None, sender: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.error_code = error_code
        self.sender = sender


class SmsSender(Protocol):
    """Awaited on the worker's event loop: a call must not block it (no blocking I/O, no long CPU)."""

    name: str

    async def send(self, message: SmsMessage) -> Receipt: ...

    async def find_sent(self, message: SmsMessage, since: datetime) -> Receipt | None:
        """The same message, if an earlier try did go out (so a retry doesn't send it twice)."""
        ...

    async def fetch_status(self, message_sid: str) -> tuple[str, int | None, str | None]:
        """(status, error code, error message), for sends that never got a status callback."""
        ...

    async def aclose(self) -> None:
        """The worker is stopping: release connections (a later call may open them again)."""
        ...


class ConsoleSender:
    """Development only: prints the whole message, code included, to the log."""

    name = "console"

    async def send(self, message: SmsMessage) -> Receipt:
        log.warning(
            "DEVELOPMENT ONLY console SMS (no Twilio configured) to %s: %s", mask_in_record(message.to), message.body
        )
        return Receipt(message_sid="SM" + secrets.token_hex(16), status="delivered", segments=1)

    async def find_sent(self, message: SmsMessage, since: datetime) -> Receipt | None:
        return None

    async def fetch_status(self, message_sid: str) -> tuple[str, int | None, str | None]:
        return "delivered", None, None

    async def aclose(self) -> None:
        return None
