"""Line types from Twilio Lookup (``OTP_LOOKUP``): what a start's number really is, where
``phonenumbers`` can't tell (most US numbers are ``fixed_line_or_mobile``: a mobile, a landline or
a VoIP line alike).

The core asks a `LineTypeSource` (the edge's `otp.edge.lookup.TwilioLookup`, through the official
SDK) and never imports twilio. Answers are cached per number under its keyed hash for
``cache_ttl`` (30 days: numbers change type rarely, and each Lookup is paid), as the type and the
carrier's name only. A Lookup that fails or takes longer than ``timeout`` falls back to
``phonenumbers``' type and says so (``source="fallback"`` and the reason, in the audit record);
the Verifier refuses instead when ``fail_closed``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from otp import audit_fields
from otp.clock import SYSTEM, Clock
from otp.core import metrics
from otp.core.keyring import Keyring
from otp.core.phone import LOOKUP_TYPES, Phone
from otp.errors import Unavailable
from otp.storage import line_types as cache
from otp.storage.store import Store

MODES = ("off", "line_type", "always")
FAIL_MODES = ("open", "closed")
# The phonenumbers types that say nothing about SMS: only these are looked up in ``line_type`` mode.
UNDECIDED_TYPES = frozenset({"fixed_line_or_mobile", "unknown"})
# A carrier name is the carrier's to choose: kept at a length that keeps the record small.
CARRIER_MAX = 64

# Where a start's line type came from (the audit record's ``lookup`` field).
PHONENUMBERS = "phonenumbers"  # Lookup not asked: phonenumbers decided (line_type mode)
LOOKED_UP = "lookup"  # Lookup answered now (paid)
CACHED = "cached"  # Lookup's earlier answer for this number
NO_DATA = "no_data"  # Lookup answered without a type (its error_code, paid): phonenumbers' type
FALLBACK = "fallback"  # Lookup failed or timed out: phonenumbers' type (fail open)
FAILED = "failed"  # Lookup failed or timed out and the start was refused (fail closed)


@dataclass(frozen=True)
class LookupConfig:
    """OTP_LOOKUP*: the shell builds it (its defaults, with their reasons, are in otp/settings.py)."""

    mode: str  # one of MODES
    fail_closed: bool
    timeout: float
    # What one line_type_intelligence Lookup costs, in the price table's currency.
    price: Decimal
    cache_ttl: float


@dataclass(frozen=True)
class LookupAnswer:
    """What Lookup said: its type (``landline``, ``nonFixedVoip`` …; None when it had none, with
    its ``error_code``) and the carrier's name."""

    line_type: str | None
    carrier: str = ""
    error_code: int | None = None


class LookupFailed(Exception):
    """Lookup gave no answer; ``reason`` is short and safe for the audit record (``timeout``,
    ``http_503``, ``unreachable``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LineTypeSource(Protocol):
    async def line_type(self, e164: str) -> LookupAnswer: ...


@dataclass(frozen=True)
class LineType:
    """A start's line type (otp's names, otp.core.phone) and where it came from."""

    number_type: str
    carrier: str = ""
    source: str = PHONENUMBERS
    error: str = ""  # why Lookup gave no answer
    price: Decimal | None = None  # what this start's Lookup cost; None when none was paid for

    @property
    def from_lookup(self) -> bool:
        return self.source in (LOOKED_UP, CACHED)

    def record(self) -> str:
        """``<type>|<carrier>`` for the verification's record when Lookup decided, else ""."""
        return f"{self.number_type}|{self.carrier}" if self.from_lookup else ""

    def audit(self, *, refused: bool = False) -> dict[str, str]:
        fields = {audit_fields.LOOKUP: FAILED if refused and self.source == FALLBACK else self.source}
        fields[audit_fields.LINE_TYPE] = self.number_type
        if self.error:
            fields[audit_fields.LOOKUP_ERROR] = self.error
        if self.price is not None:
            fields[audit_fields.LOOKUP_PRICE] = str(self.price)
        return fields


class LineTypes:
    def __init__(
        self, store: Store, keyring: Keyring, config: LookupConfig, source: LineTypeSource, *, clock: Clock = SYSTEM
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.config = config
        self.source = source
        self.clock = clock

    def wanted(self, phone: Phone) -> bool:
        mode = self.config.mode
        return mode == "always" or (mode == "line_type" and phone.number_type in UNDECIDED_TYPES)

    async def resolve(self, phone: Phone) -> LineType:
        """The number's line type: phonenumbers', Lookup's cached answer, or a fresh Lookup."""
        if not self.wanted(phone):
            return LineType(phone.number_type)
        number_hash = self.keyring.number_hash(phone.e164)
        now_ms = self.clock.now_ms()
        ttl_ms = int(self.config.cache_ttl * 1000)
        # A cache Redis can't read is no reason to refuse: Lookup itself still answers.
        try:
            found = await cache.read(self.store, number_hash, now_ms=now_ms, ttl_ms=ttl_ms)
        except Unavailable:
            found = None
        if found is not None:
            line = _line(phone, found.number_type, found.carrier, CACHED)
        else:
            line = await self._look_up(phone)
            if line.source in (LOOKED_UP, NO_DATA):
                stored = line.number_type if line.source == LOOKED_UP else ""
                try:
                    await cache.write(self.store, number_hash, stored, line.carrier, now_ms=now_ms, ttl_ms=ttl_ms)
                except Unavailable:
                    pass  # the next start pays for another Lookup: no reason to refuse this one
        metrics.LOOKUPS.labels(line.source).inc()
        return line

    async def _look_up(self, phone: Phone) -> LineType:
        try:
            answer = await asyncio.wait_for(self.source.line_type(phone.e164), self.config.timeout)
        except TimeoutError:
            return LineType(phone.number_type, source=FALLBACK, error="timeout")
        except LookupFailed as exc:
            return LineType(phone.number_type, source=FALLBACK, error=exc.reason)
        carrier = answer.carrier[:CARRIER_MAX]
        price = self.config.price
        mapped = LOOKUP_TYPES.get(answer.line_type or "")
        if mapped is None:
            # No type (Lookup's error_code), or one this table doesn't know yet: phonenumbers decides.
            error = f"lookup_error_{answer.error_code}" if answer.error_code else f"type_{answer.line_type or 'none'}"
            return LineType(phone.number_type, carrier, NO_DATA, error[:40], price)
        return LineType(mapped, carrier, LOOKED_UP, price=price)


def _line(phone: Phone, number_type: str, carrier: str, source: str) -> LineType:
    """A cached answer: "" is one Lookup had no type for (phonenumbers decides)."""
    if not number_type:
        return LineType(phone.number_type, carrier, NO_DATA)
    return LineType(number_type, carrier, source)
