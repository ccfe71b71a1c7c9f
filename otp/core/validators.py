"""Shared field rules for client input, each with one home: whole numbers (query strings, forms,
headers, paths), language tags, codes, IP addresses, the risk-check switch, country codes,
number prefixes and safe-list entries. /v1, /v2, the admin and audit endpoints, the dashboard and
the command line call these, each naming its own field (``locale`` or ``Locale``), so a rule and
its message change in one place.
Patterns are matched whole (``fullmatch``, or ``\\Z``): ``$`` would let a trailing newline through.

``int()`` is the wrong parser for client text: it accepts ``" 12 "``, ``"+12"``, ``"1_2"`` and
non-ASCII digits (``"١٢"``), and past 4,300 digits it raises ``ValueError: Exceeds the limit``
(CPython's guard against quadratic conversion), which escaped as a 500. Here the text is checked
first, as plain ASCII digits, and its length is bounded before any conversion.
"""

from __future__ import annotations

import re
from typing import Final

from otp.core import phone
from otp.core.ipaddr import parse_ip
from otp.errors import InvalidInput

# Longer than any number this service takes (the largest is a 20-digit Content-Length).
MAX_DIGITS = 20


def digits(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """The value of ``text`` when it is only ASCII digits, at most ``max_digits`` of them once
    leading zeros are dropped; otherwise None. Never raises."""
    if not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0") or "0"
    return int(significant) if len(significant) <= max_digits else None


def whole_number(text: str, *, field: str, low: int, high: int) -> int:
    """``text`` as an integer in ``low..high`` (a leading ``-`` only when ``low`` is negative), or
    InvalidInput naming ``field``."""
    negative = text.startswith("-") and low < 0
    value = digits(text[1:] if negative else text)
    if value is not None and negative:
        value = -value
    if value is None or not low <= value <= high:
        raise InvalidInput(f"must be a whole number from {low} to {high}", field=field)
    return value


LOCALE: Final = re.compile(r"[a-z]{2}(-[A-Za-z]{2,4})?")
CODE: Final = re.compile(r"[0-9]{4,10}")
COUNTRY: Final = re.compile(r"[A-Za-z]{2}")
# An E.164 number or the start of one; \Z so that ``.match`` (used by the dashboard) is whole too.
NUMBER_PREFIX: Final = re.compile(r"\+[1-9][0-9]{0,14}\Z")
RISK_CHECKS: Final = ("enable", "disable")


def locale(raw: str, field: str) -> str:
    """A language tag like ``en`` or ``pt-BR``; empty means the default and passes."""
    if raw and not LOCALE.fullmatch(raw):
        raise InvalidInput("must be a language tag like en or pt-BR", field=field)
    return raw


def code(raw: str, field: str) -> str:
    if not CODE.fullmatch(raw):
        raise InvalidInput("must be 4 to 10 digits", field=field)
    return raw


def ip(raw: str, field: str) -> str:
    """The canonical text of an end user's address (see ``ipaddr.parse_ip``)."""
    return parse_ip(raw, field=field)


def risk_check(raw: str, field: str) -> bool:
    """Whether the fraud checks run. Who may turn them off is the caller's rule (its message names
    the caller's kind of account)."""
    if raw not in RISK_CHECKS:
        raise InvalidInput("must be enable or disable", field=field)
    return raw == "enable"


def country(raw: str, field: str) -> str:
    """A two-letter ISO country code, upper-cased. Checked before upper-casing: ``"ß".upper()`` is
    ``"SS"``."""
    if not COUNTRY.fullmatch(raw):
        raise InvalidInput("must be a two-letter ISO country code", field=field)
    return raw.upper()


def number_prefix(raw: str, field: str, *, what: str = "a number prefix like +1415555") -> str:
    """An E.164 number or a prefix of one; ``what`` words the refusal for the field's use."""
    if not NUMBER_PREFIX.match(raw):
        raise InvalidInput(f"must be {what}", field=field)
    return raw


# What a safe-list entry exempts a number from (README, "Admin endpoints"): said when refusing one
# that would exempt whole countries.
SAFE_LIST_EXEMPTS = "the fraud rules (pumping, send limits and cooldowns, country and number-type permissions)"
_LISTED_CODES = 6  # calling codes named in that refusal, then "…"
_LISTED_REGIONS = 4  # regions named per code, then "…"
SAFE_ENTRY_FORMAT = "an E.164 number or a prefix of one, like +1501712"


def safe_entry(
    raw: str,
    field: str,
    *,
    whole_country: bool = False,
    default_region: str | None = None,
    confirm: str = "confirm it",
) -> str:
    """A safe-list entry, for /v1/safelist, the dashboard and ``otp safelist``: an E.164 number or
    a prefix of one. With ``default_region``, a number written any other way (national
    ``5017122661``, ``(501) 712-2661``, ``+1 501 712 2661``) is read as ``otp audit --number``
    reads it (``phone.parse``) and becomes its E.164 form.

    An entry that covers a whole country calling code (``+44``, ``+1``, or ``+4``: every +4x
    country) would exempt every number there from the fraud rules, so it is refused unless
    ``whole_country`` says that is meant; so is one that covers a whole range of a country that
    shares its calling code (``+1876``: Jamaica; ``+18``: Jamaica, the Dominican Republic…;
    ``+77``: Kazakhstan; ``+3906698``: the Vatican; ``otp.core.phone.ranges_within``). The
    refusal names the entry, what it covers, and how to say so (``confirm``: ``pass --country``,
    ``send "country": true``)."""
    entry = raw
    if not NUMBER_PREFIX.match(raw):
        if default_region is None:
            raise InvalidInput(f"must be {SAFE_ENTRY_FORMAT}", field=field)
        try:
            entry = phone.parse(raw, default_region=default_region, field=field).e164
        except InvalidInput:
            raise InvalidInput(
                f"must be {SAFE_ENTRY_FORMAT}, or a whole number in national format ({default_region})", field=field
            ) from None
    covered = phone.calling_codes_within(entry)
    ranges = {} if covered else phone.ranges_within(entry)
    if (covered or ranges) and not whole_country:
        what = _countries(entry, covered) if covered else _ranges(ranges)
        raise InvalidInput(
            f"{what}: it would exempt every number there from {SAFE_LIST_EXEMPTS}; {confirm} if that is what you mean",
            field=field,
        )
    return entry


def _countries(entry: str, covered: dict[int, tuple[str, ...]]) -> str:
    """``is the country calling code of GB, GG, IM, JE`` or ``covers the country calling codes +40
    (RO), +41 (CH), …``, said of ``entry`` (which ``covered`` came from)."""

    def regions(names: tuple[str, ...]) -> str:
        shown = ["non-geographic" if name == "001" else name for name in names[:_LISTED_REGIONS]]
        return ", ".join(shown) + (f", … ({len(names)} regions)" if len(names) > _LISTED_REGIONS else "")

    names = covered.get(int(entry[1:]))
    if names and len(covered) == 1:
        if names == ("001",):
            return "is a whole non-geographic calling code"
        return f"is the country calling code of {regions(names)}"
    codes = [f"+{code} ({regions(names)})" for code, names in list(covered.items())[:_LISTED_CODES]]
    more = f", … ({len(covered)} in all)" if len(covered) > _LISTED_CODES else ""
    return f"covers the country calling codes {', '.join(codes)}{more}"


def _ranges(ranges: dict[str, tuple[str, ...]]) -> str:
    """``covers the whole number range of JM (+1876)``, or of several countries."""
    shown = [f"{region} ({', '.join(prefixes)})" for region, prefixes in list(ranges.items())[:_LISTED_CODES]]
    more = f", … ({len(ranges)} countries)" if len(ranges) > _LISTED_CODES else ""
    return f"covers the whole number range of {', '.join(shown)}{more}"


# ASCII: \d would take "٣h" or "５d" (and float() converts them), \s any Unicode space.
_DURATION = re.compile(r"\s*(\d{1,9}(?:\.\d{1,6})?)\s*(ms|s|m|h|d)?\s*", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str) -> float:
    """Seconds from ``"600"``, ``"10m"``, ``"24h"``, ``"250ms"``."""
    match = _DURATION.fullmatch(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 600, 10m, 24h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
