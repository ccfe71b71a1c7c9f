"""The account's own resources, as `otp doctor` reads them: the Account (its status and type), the
phone numbers and short codes it owns, and its Messaging Services, in Twilio's shapes
(twilio-oai ``api.v2010.account``, ``api.v2010.account.incoming_phone_number``,
``api.v2010.account.short_code``; Messaging v1's Service as the SDK reads it).

The account owns +15005550006 by default (``wire.SERVICE_SENDER``, Twilio's magic test number): the
``OTP_TWILIO_FROM`` the tests and demos send with. Tests add or change numbers, short codes and
services, and suspend or close the account, through `TwilioStub.account`.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from otp.devtools.twilio_stub.wire import API_VERSION, SERVICE_SENDER, now, rfc2822

STATUSES: Final = ("active", "suspended", "closed")  # account_enum_status
TYPES: Final = ("Trial", "Full")  # account_enum_type
CAPABILITIES: Final = ("voice", "sms", "mms", "fax")
DEFAULT_CAPABILITIES: Final = frozenset({"voice", "sms", "mms"})
DEFAULT_NUMBER: Final = SERVICE_SENDER


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class OwnedNumber:
    phone_number: str
    capabilities: frozenset[str]
    sid: str = field(default_factory=lambda: _sid("PN"))


class Account:
    """The stand-in's account state; `TwilioStub.account`. Filters match part of a number or
    code, as Twilio's do (``PhoneNumber=555`` lists every number with 555 in it)."""

    def __init__(self, account_sid: str) -> None:
        self.sid = account_sid
        self._lock = threading.Lock()
        self._status = "active"
        self._type = "Full"
        self._created = now()
        self._numbers: dict[str, OwnedNumber] = {DEFAULT_NUMBER: OwnedNumber(DEFAULT_NUMBER, DEFAULT_CAPABILITIES)}
        self._short_codes: dict[str, str] = {}  # code → SC sid
        self._services: dict[str, str] = {}  # MG sid → friendly name

    # -- test controls -------------------------------------------------------------------------

    def set_status(self, status: str, account_type: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown account status {status!r}; expected one of {STATUSES}")
        if account_type is not None and account_type not in TYPES:
            raise ValueError(f"unknown account type {account_type!r}; expected one of {TYPES}")
        with self._lock:
            self._status = status
            self._type = account_type or self._type

    def add_number(self, e164: str, capabilities: Iterable[str] = DEFAULT_CAPABILITIES) -> None:
        """The account owns ``e164`` with these capabilities (replacing what it had for it)."""
        wanted = frozenset(capabilities)
        unknown = sorted(wanted - set(CAPABILITIES))
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; expected some of {CAPABILITIES}")
        with self._lock:
            self._numbers[e164] = OwnedNumber(e164, wanted)

    def remove_number(self, e164: str) -> None:
        with self._lock:
            self._numbers.pop(e164, None)

    def add_short_code(self, code: str) -> None:
        with self._lock:
            self._short_codes.setdefault(code, _sid("SC"))

    def add_messaging_service(self, sid: str, friendly_name: str = "Stub service") -> None:
        with self._lock:
            self._services[sid] = friendly_name

    # -- what the HTTP handler asks ------------------------------------------------------------

    def _uri(self, tail: str = "") -> str:
        return f"/{API_VERSION}/Accounts/{self.sid}{tail}"

    def document(self, auth_token: str) -> dict[str, Any]:
        """``api.v2010.account`` (Twilio's answer carries the auth token too)."""
        names = {"incoming_phone_numbers": "/IncomingPhoneNumbers", "messages": "/Messages"}
        names["short_codes"] = "/SMS/ShortCodes"
        with self._lock:
            status, kind = self._status, self._type
        return {
            "auth_token": auth_token,
            "date_created": rfc2822(self._created),
            "date_updated": rfc2822(self._created),
            "friendly_name": "Stub account",
            "owner_account_sid": self.sid,
            "sid": self.sid,
            "status": status,
            "subresource_uris": {name: self._uri(tail + ".json") for name, tail in names.items()},
            "type": kind,
            "uri": self._uri(".json"),
        }

    def numbers_page(self, phone_number: str, query: str) -> dict[str, Any]:
        """The IncomingPhoneNumbers list, filtered by ``PhoneNumber``, in one page."""
        with self._lock:
            found = [n for n in self._numbers.values() if phone_number in n.phone_number]
        return _page(
            "incoming_phone_numbers", [self._number(n) for n in found], self._uri("/IncomingPhoneNumbers.json"), query
        )

    def short_codes_page(self, short_code: str, query: str) -> dict[str, Any]:
        with self._lock:
            found = [(code, sid) for code, sid in self._short_codes.items() if short_code in code]
        documents = [self._short_code(code, sid) for code, sid in found]
        return _page("short_codes", documents, self._uri("/SMS/ShortCodes.json"), query)

    def service(self, sid: str) -> dict[str, Any] | None:
        """Messaging v1's Service, or None (404) for one the account does not have."""
        with self._lock:
            name = self._services.get(sid)
        if name is None:
            return None
        url = f"https://messaging.twilio.com/v1/Services/{sid}"
        return {
            "account_sid": self.sid,
            "area_code_geomatch": True,
            "date_created": _iso(self._created),
            "date_updated": _iso(self._created),
            "fallback_method": "POST",
            "fallback_to_long_code": True,
            "fallback_url": None,
            "friendly_name": name,
            "inbound_method": "POST",
            "inbound_request_url": None,
            "links": {
                "phone_numbers": f"{url}/PhoneNumbers",
                "short_codes": f"{url}/ShortCodes",
                "alpha_senders": f"{url}/AlphaSenders",
            },
            "mms_converter": True,
            "scan_message_content": "inherit",
            "sid": sid,
            "smart_encoding": True,
            "status_callback": None,
            "sticky_sender": True,
            "synchronous_validation": True,
            "url": url,
            "us_app_to_person_registered": False,
            "use_inbound_webhook_on_number": False,
            "usecase": "undeclared",
            "validity_period": 14400,
        }

    def _number(self, number: OwnedNumber) -> dict[str, Any]:
        created = rfc2822(self._created)
        return {
            "account_sid": self.sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "capabilities": {name: name in number.capabilities for name in CAPABILITIES},
            "date_created": created,
            "date_updated": created,
            "friendly_name": number.phone_number,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": number.phone_number,
            "sid": number.sid,
            "sms_application_sid": None,
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": "",
            "status_callback": "",
            "status_callback_method": "POST",
            "trunk_sid": None,
            "uri": self._uri(f"/IncomingPhoneNumbers/{number.sid}.json"),
            "voice_receive_mode": "voice",
            "voice_application_sid": None,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": "POST",
            "voice_url": None,
            "emergency_status": "Inactive",
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "bundle_sid": None,
            "status": "in-use",
            "type": "local",
        }

    def _short_code(self, code: str, sid: str) -> dict[str, Any]:
        created = rfc2822(self._created)
        return {
            "account_sid": self.sid,
            "api_version": API_VERSION,
            "date_created": created,
            "date_updated": created,
            "friendly_name": code,
            "short_code": code,
            "sid": sid,
            "sms_fallback_method": "POST",
            "sms_fallback_url": None,
            "sms_method": "POST",
            "sms_url": None,
            "uri": self._uri(f"/SMS/ShortCodes/{sid}.json"),
        }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _page(key: str, items: list[dict[str, Any]], uri: str, query: str) -> dict[str, Any]:
    """A 2010-04-01 list page holding everything: no next page."""
    full = f"{uri}?{query}" if query else uri
    return {
        key: items,
        "end": max(0, len(items) - 1),
        "first_page_uri": full,
        "next_page_uri": None,
        "page": 0,
        "page_size": max(50, len(items)),
        "previous_page_uri": None,
        "start": 0,
        "uri": full,
    }
