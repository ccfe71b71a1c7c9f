"""The operator's sender pool (``OTP_TWILIO_FROM``): each sender's type, throughput and the countries
it may serve; which senders may carry a message; and the A2P 10DLC warning about the pool.

Twilio releases each sender's messages at a fixed rate (message segments per second, "MPS") and
queues the rest, where otp can neither see nor cancel them; a code that waits there expires. So
the worker paces every sender itself (otp.storage.pacing) and picks, per message, the allowed
sender whose queue frees up first.

Syntax: comma-separated entries ``ADDRESS[:TYPE[:MPS[:COUNTRIES]]]``, e.g.
``+14155550100:long_code,+18005550100:toll_free:3,12345:short_code:100:US/CA,MG…:messaging_service:50``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import phonenumbers

LONG_CODE: Final = "long_code"
TOLL_FREE: Final = "toll_free"
SHORT_CODE: Final = "short_code"
MESSAGING_SERVICE: Final = "messaging_service"

# Twilio's default throughput per type (segments/s). A Messaging Service's is the sum of its
# senders', which otp can't know: it defaults to one long code's, the safe side; name it.
DEFAULT_MPS: Final[dict[str, float]] = {LONG_CODE: 1.0, TOLL_FREE: 3.0, SHORT_CODE: 100.0, MESSAGING_SERVICE: 1.0}
MPS_RANGE: Final = (0.01, 100_000.0)
MAX_SENDERS: Final = 64  # one pacing call reads every candidate's bucket: keep it a few keys

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_SHORT_CODE = re.compile(r"\d{3,8}")
_MESSAGING_SERVICE = re.compile(r"MG[0-9a-fA-F]{32}")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class Sender:
    address: str  # E.164 number, short code digits, or a Messaging Service sid
    kind: str
    mps: float
    countries: frozenset[str] = frozenset()  # the destinations it may serve; empty: every one

    @property
    def is_messaging_service(self) -> bool:
        return self.kind == MESSAGING_SERVICE

    def serves(self, country: str) -> bool:
        return not self.countries or country in self.countries

    def interval_ms(self, segments: int) -> int:
        """How long this message occupies the sender: Twilio counts throughput in segments. Under
        a millisecond (above 1,000 MPS) is nothing: such a sender is not paced at all."""
        return round(1000 * max(1, segments) / self.mps)


@dataclass(frozen=True)
class SenderPool:
    senders: tuple[Sender, ...]
    # An expected wait longer than this is announced (metric, audit event); the message still goes
    # out when its turn comes, unless the code would have expired by then.
    max_wait: float = 30.0

    def for_country(self, country: str) -> tuple[Sender, ...]:
        return tuple(s for s in self.senders if s.serves(country))

    def find(self, address: str) -> Sender | None:
        return next((s for s in self.senders if s.address == address), None)


def _kind_of(address: str) -> str:
    """The type of an entry that names none (``OTP_TWILIO_FROM=+14155550100``, as before pools)."""
    if _MESSAGING_SERVICE.fullmatch(address):
        return MESSAGING_SERVICE
    if _SHORT_CODE.fullmatch(address):
        return SHORT_CODE
    try:
        number = phonenumbers.parse(address)
    except phonenumbers.NumberParseException:
        return LONG_CODE
    return TOLL_FREE if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.TOLL_FREE else LONG_CODE


def _address_problem(address: str, kind: str) -> str | None:
    if kind == MESSAGING_SERVICE and not _MESSAGING_SERVICE.fullmatch(address):
        return f"{address!r} is not a Messaging Service sid (MG and 32 hex digits)"
    if kind == SHORT_CODE and not _SHORT_CODE.fullmatch(address):
        return f"{address!r} is not a short code (3 to 8 digits)"
    if kind in (LONG_CODE, TOLL_FREE) and not _E164.fullmatch(address):
        return f"{address!r} is not an E.164 number (+ and 7 to 15 digits)"
    return None


def _mps(raw: str, kind: str, address: str) -> float:
    if not raw:
        return DEFAULT_MPS[kind]
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{address}: MPS {raw!r} is not a number") from None
    low, high = MPS_RANGE
    if not low <= value <= high:  # also refuses nan and inf
        raise ValueError(f"{address}: MPS {raw} is out of range ({low:g}..{high:g})")
    return value


def _countries(raw: str, address: str) -> frozenset[str]:
    codes = frozenset(c.strip().upper() for c in raw.split("/") if c.strip())
    bad = sorted(c for c in codes if not _COUNTRY.fullmatch(c))
    if bad:
        raise ValueError(f"{address}: {', '.join(bad)} are not two-letter ISO country codes (separate them with /)")
    return codes


def parse_entry(entry: str) -> Sender:
    parts = [p.strip() for p in entry.split(":")]
    if len(parts) > 4:
        raise ValueError(f"{entry!r} has more than ADDRESS:TYPE:MPS:COUNTRIES")
    address, kind, mps, countries = (parts + [""] * 4)[:4]
    if not address:
        raise ValueError(f"{entry!r} names no sender")
    kind = kind.lower() or _kind_of(address)
    if kind not in DEFAULT_MPS:
        raise ValueError(f"{address}: unknown type {kind!r}; known: {', '.join(DEFAULT_MPS)}")
    problem = _address_problem(address, kind)
    if problem:
        raise ValueError(problem)
    return Sender(address, kind, _mps(mps, kind, address), _countries(countries, address))


def parse(text: str) -> tuple[Sender, ...]:
    """Every sender of ``OTP_TWILIO_FROM``; a ValueError names every bad entry at once."""
    senders: list[Sender] = []
    problems: list[str] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            senders.append(parse_entry(entry))
        except ValueError as exc:
            problems.append(str(exc))
    addresses = [s.address for s in senders]
    duplicates = sorted({a for a in addresses if addresses.count(a) > 1})
    if duplicates:
        problems.append(f"{', '.join(duplicates)} listed more than once")
    if len(senders) > MAX_SENDERS:
        problems.append(f"{len(senders)} senders; at most {MAX_SENDERS} (a Messaging Service pools more)")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(senders)


def _us_local(sender: Sender) -> bool:
    if sender.kind != LONG_CODE:
        return False
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(sender.address)) == "US"
    except phonenumbers.NumberParseException:
        return False


def ten_dlc_warning(senders: Iterable[Sender], messaging_service_sid: str) -> str | None:
    """One line for the startup log when a US local number sends without a Messaging Service:
    US carriers filter (error 30034) SMS from long codes not registered for A2P 10DLC, and the
    registration (a brand and a campaign) is attached to a Messaging Service."""
    pool = tuple(senders)
    if messaging_service_sid or any(s.is_messaging_service for s in pool):
        return None
    local = [s.address for s in pool if _us_local(s)]
    if not local:
        return None
    return (
        f"US local number sender(s) {', '.join(local)} with no Messaging Service: US carriers require A2P 10DLC "
        "registration (a brand and campaign on a Messaging Service) and filter unregistered traffic (error 30034). "
        "Register, then set OTP_TWILIO_MESSAGING_SERVICE_SID or list the MG… sid in OTP_TWILIO_FROM"
    )
