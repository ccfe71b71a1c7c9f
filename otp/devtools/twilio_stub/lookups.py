"""Lookup v2 (``GET /v2/PhoneNumbers/{n}?Fields=line_type_intelligence``, lookups.twilio.com) in
Twilio's shape: a scripted answer per number (its type, carrier, error code), injected failures
and slow answers, and a count of the calls, so tests see what each start cost."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final

import phonenumbers

from otp.devtools.twilio_stub.wire import error_body

# Lookup's line_type_intelligence types (its documentation's list).
LINE_TYPES: Final = frozenset(
    {
        "landline",
        "mobile",
        "fixedVoip",
        "nonFixedVoip",
        "personal",
        "tollFree",
        "premium",
        "sharedCost",
        "uan",
        "voicemail",
        "pager",
        "unknown",
    }
)
DEFAULT_CARRIER: Final = "Stub Wireless"
# The mobile network code an answer carries for its type, as Lookup's do (US MCC 310/311/313).
_NETWORKS: Final = {"mobile": ("310", "260"), "nonFixedVoip": ("313", "981")}


@dataclass(frozen=True)
class LineAnswer:
    """What Lookup says about one number: ``line_type`` None with an ``error_code`` is its "no
    data" answer (60600: unprovisioned or out of coverage)."""

    line_type: str | None = "mobile"
    carrier: str | None = DEFAULT_CARRIER
    error_code: int | None = None

    def intelligence(self) -> dict[str, Any]:
        mcc, mnc = _NETWORKS.get(self.line_type or "", (None, None))
        return {
            "carrier_name": self.carrier,
            "error_code": self.error_code,
            "mobile_country_code": mcc,
            "mobile_network_code": mnc,
            "type": self.line_type,
        }


class Lookups:
    """The stand-in's Lookup state; `TwilioStub.lookups`. Unscripted numbers are mobiles."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._lock = threading.Lock()
        self._answers: dict[str, LineAnswer] = {}
        self._failures: list[int] = []
        self._delays: list[float] = []
        self._calls: list[str] = []

    # -- test controls -------------------------------------------------------------------------

    def answer(
        self,
        number: str,
        line_type: str | None,
        *,
        carrier: str | None = DEFAULT_CARRIER,
        error_code: int | None = None,
    ) -> None:
        """How Lookup answers for ``number`` from now on."""
        if line_type is not None and line_type not in LINE_TYPES:
            raise ValueError(f"unknown line type {line_type!r}; expected one of {sorted(LINE_TYPES)}")
        with self._lock:
            self._answers[number] = LineAnswer(line_type, carrier, error_code)

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next ``count`` Lookups answer ``status`` with a Twilio error body."""
        with self._lock:
            self._failures.extend([status] * count)

    def slow_next(self, count: int, seconds: float) -> None:
        """The next ``count`` Lookups answer only after ``seconds``."""
        with self._lock:
            self._delays.extend([seconds] * count)

    @property
    def calls(self) -> list[str]:
        """The numbers looked up, in order (failed and slow calls too)."""
        with self._lock:
            return list(self._calls)

    # -- what the HTTP handler asks ------------------------------------------------------------

    def handle(self, number: str, fields: str, url: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._calls.append(number)
            failure = self._failures.pop(0) if self._failures else None
            delay = self._delays.pop(0) if self._delays else 0.0
            scripted = self._answers.get(number, LineAnswer())
        if delay:
            self._stopping.wait(delay)
        if failure is not None:
            code = 20000 + failure if 400 <= failure < 600 else 20500
            return failure, error_body(code, failure)
        wanted = {f.strip() for f in fields.split(",") if f.strip()}
        return 200, document(number, scripted if "line_type_intelligence" in wanted else None, url)


def document(number: str, scripted: LineAnswer | None, url: str) -> dict[str, Any]:
    """The ``lookups.v2.phone_number`` resource; data packages not asked for are null."""
    try:
        parsed = phonenumbers.parse(number, None)
        valid = phonenumbers.is_valid_number(parsed)
    except phonenumbers.NumberParseException:
        parsed, valid = None, False
    return {
        "calling_country_code": str(parsed.country_code) if parsed else None,
        "country_code": phonenumbers.region_code_for_number(parsed) if parsed else None,
        "phone_number": number,
        "national_format": (
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL) if parsed else None
        ),
        "valid": valid,
        "validation_errors": [] if valid else ["NOT_A_NUMBER"],
        "caller_name": None,
        "sim_swap": None,
        "call_forwarding": None,
        "line_status": None,
        "line_type_intelligence": scripted.intelligence() if scripted is not None and valid else None,
        "identity_match": None,
        "reassigned_number": None,
        "sms_pumping_risk": None,
        "phone_number_quality_score": None,
        "pre_fill": None,
        "url": url,
    }
