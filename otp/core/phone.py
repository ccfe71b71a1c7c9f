"""Phone numbers: parsed and validated with `phonenumbers`, always E.164 inside, masked outside."""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from otp.errors import InvalidInput

TYPE_NAMES = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
# Numbers of no country (+870 Inmarsat, +881 satellite, +882/+883 international networks):
# refused by default like premium rate, since they are a favourite of SMS pumping. Not a
# phonenumbers type: a name in this list that an empty ``Phone.country`` stands for.
NON_GEOGRAPHIC = "non_geographic"
# Twilio Lookup's line types (``line_type_intelligence.type``, OTP_LOOKUP) as ours: the one table.
# Lookup splits phonenumbers' ``voip`` in two: a fixed VoIP line is tied to a service address (a
# cable or business phone line, the landline's successor), a non-fixed one is an app number
# (Google Voice, TextNow) that anyone gets in seconds.
FIXED_VOIP = "fixed_voip"
NON_FIXED_VOIP = "non_fixed_voip"
LOOKUP_TYPES = {
    "landline": "fixed_line",
    "mobile": "mobile",
    "fixedVoip": FIXED_VOIP,
    "nonFixedVoip": NON_FIXED_VOIP,
    "premium": "premium_rate",
    "sharedCost": "shared_cost",
    "uan": "uan",
    "voicemail": "voicemail",
    "pager": "pager",
    "tollFree": "toll_free",
    "personal": "personal_number",
    "unknown": "unknown",
}
# A type a broader name also refuses: ``voip`` in OTP_BLOCKED_NUMBER_TYPES refuses both of Lookup's.
TYPE_FAMILY = {FIXED_VOIP: "voip", NON_FIXED_VOIP: "voip"}
# The names OTP_BLOCKED_NUMBER_TYPES may hold.
NUMBER_TYPES = frozenset(TYPE_NAMES.values()) | frozenset(LOOKUP_TYPES.values()) | {NON_GEOGRAPHIC}
# Refused by default: what can't take an SMS (fixed lines, Twilio Verify's 60205, and fixed VoIP,
# which Lookup tells apart from them only by technology: an SMS to either is paid for and lands as
# 30006), and what SMS pumping is paid by (premium rate, shared cost, UAN, personal and
# non-geographic numbers; pagers and voicemail reach no person). Not non-fixed VoIP: fraud likes
# app numbers for fake sign-ups, but they are many real users' only number, and pumping earns
# nothing on them (no termination revenue is shared); an operator fighting fake accounts adds
# ``non_fixed_voip`` (or ``voip``, which also refuses phonenumbers' own VoIP ranges).
DEFAULT_BLOCKED_TYPES = frozenset(
    {
        "premium_rate",
        "shared_cost",
        "uan",
        "voicemail",
        "pager",
        "personal_number",
        "fixed_line",
        FIXED_VOIP,
        NON_GEOGRAPHIC,
    }
)
# Every country (ISO 3166 alpha-2) that has phone numbers, as phonenumbers knows them (~245).
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)
# Twilio Lookup's carrier type for ours, where it has one (the /v2 ``lookup`` field: Verify's
# ``carrier.type`` speaks Lookup v1's three types).
CARRIER_TYPES = {
    "mobile": "mobile",
    "fixed_line": "landline",
    "voip": "voip",
    FIXED_VOIP: "voip",
    NON_FIXED_VOIP: "voip",
}


@dataclass(frozen=True)
class Phone:
    e164: str
    country: str  # ISO 3166 alpha-2, "" when the number belongs to no single country
    calling_code: int
    national: str
    number_type: str

    @property
    def prefix(self) -> str:
        """Destination prefix for fraud counting: calling code plus the national number without its
        last 4 digits."""
        return f"+{self.calling_code}{self.national[:-4]}"


MASK = "*******"
HIDDEN_DIGITS = 3  # of a national number, at least, in every mask


def mask(e164: str, visible: int = 4) -> str:
    """``+15017122661`` → ``+1*******2661``: enough for a tenant to tell its users' numbers
    apart, not to dial. The mask has a fixed width so it doesn't reveal the number's length, and
    hides at least HIDDEN_DIGITS of the national number (a 4-digit one, Tokelau's or Niue's, would
    otherwise be shown whole)."""
    if len(e164) < 8:
        return MASK
    code = calling_code(e164)
    shown = max(0, min(visible, len(e164) - 1 - len(code) - HIDDEN_DIGITS))
    return f"+{code}{'*' * (len(MASK) + 4 - shown)}{e164[len(e164) - shown :]}"


def calling_code(e164: str) -> str:
    """The country calling code an E.164 number starts with (its first digit when none is
    known). Calling codes are prefix-free and at most 3 digits: a lookup, not a parse, since
    every response and audit record masks a number (a parse cost 12 µs, the lookup 0.7 µs)."""
    for length in (1, 2, 3):
        code = e164[1 : 1 + length]
        # ASCII digits only: "²".isdigit() holds, and int("²") raises.
        if (
            code.isascii()
            and code.isdigit()
            and code[0] != "0"
            and int(code) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
        ):
            return code
    return e164[1:2]


def mask_in_record(e164: str) -> str:
    """``+15017122661`` → ``+1*********61``, for audit records and log lines: the security team
    also sees destination prefixes (the number without its last 4 digits, on the dashboard), and
    those beside the last 4 would spell the number; beside the last 2 they leave 100 candidates."""
    return mask(e164, visible=2)


# A plus (also URL-encoded, or fullwidth) and 8 to 15 digits, as people type them: spaces, ( ) . -
# and the other punctuation phonenumbers reads as separators between them, and any decimal digits
# (fullwidth ones too).
_SEPARATORS = " ().\\-\\[\\]~\u00a0\u00ad\u200b\u2060\u2010-\u2015\u2212\u2053\u223c\u3000\u30fc\uff0d"
_NUMBER_IN_TEXT = re.compile(f"(?:\\+|%2[Bb]|\uff0b|\ufe62)((?:\\d[{_SEPARATORS}]*){{7,14}}\\d)")


def mask_numbers(text: str, *known: str) -> str:
    """Every E.164-looking number in free text (also URL-encoded), masked like ``mask``:
    ``+1 (501) 712-2661`` → ``+1*******2661``; and each of the ``known`` E.164 numbers also where
    the text writes it without its plus (``15017122661``, ``(501) 712-2661``), as Twilio's error
    texts about a message's ``To`` may."""

    def masked(match: re.Match[str]) -> str:
        return mask("+" + "".join(str(int(c)) for c in match.group(1) if c.isdecimal()))

    text = _NUMBER_IN_TEXT.sub(masked, text)
    for e164 in known:
        if not e164.startswith("+") or not e164[1:].isdigit():
            continue
        try:
            national = phonenumbers.national_significant_number(phonenumbers.parse(e164))
        except NumberParseException:
            national = ""
        for digits in sorted({e164[1:], national} - {""}, key=len, reverse=True):
            # Anywhere, even inside a longer run of digits (a trunk 0 before it): masking too much
            # is harmless here, one number too few is not.
            text = re.sub(f"[{_SEPARATORS}]*".join(digits), mask(e164), text)
    return text


def parse_e164(e164: str) -> Phone:
    """A number we stored ourselves, so already valid E.164."""
    return parse(e164, default_region="US")


def parse(raw: object, *, default_region: str, field: str = "to") -> Phone:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("must be a phone number, in E.164 (+15017122661) or national format", field=field)
    if len(raw) > 64:
        raise InvalidInput("is too long to be a phone number", field=field)
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException as exc:
        raise InvalidInput(f"is not a phone number ({str(exc).split(') ', 1)[-1].rstrip('.')})", field=field) from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidInput("is not a possible phone number (wrong length for its country)", field=field)
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("is not a valid phone number (no such number range)", field=field)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number) or ""
    return Phone(
        e164=e164,
        country=region if region != "001" else "",
        calling_code=int(number.country_code or 0),
        national=str(number.national_number),
        number_type=TYPE_NAMES.get(phonenumbers.number_type(number), "unknown"),
    )


def ranges_within(prefix: str) -> dict[str, tuple[str, ...]]:
    """The countries sharing a calling code (+1: the US, Canada, Jamaica…; +7: Russia, Kazakhstan;
    +39: Italy, the Vatican) one of whose whole number ranges a prefix covers, each with those
    ranges (``phonenumbers``' leading digits): ``+1876`` → {JM: (+1876,)}; ``+18`` → JM, DO, TT…;
    ``+77`` → {KZ: (+77,)}; ``+1876555`` → none (it is a part of Jamaica's +1876)."""
    digits = prefix.removeprefix("+")
    found: dict[str, tuple[str, ...]] = {}
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        if not digits.startswith(str(code)):
            continue  # calling codes are prefix-free: at most one is the start of the prefix
        rest = digits[len(str(code)) :]
        for region in regions:
            covered = tuple(f"+{code}{lead}" for lead in _leading_digits(region) if lead.startswith(rest))
            if covered:
                found[region] = covered
    return found


_LEADING_CAP = 1000  # strings a region's leading-digits pattern may expand to (they are a few)


def _leading_digits(region: str) -> tuple[str, ...]:
    """Every digit string a region's leading-digits pattern matches (``658|876``, ``8[024]9``,
    ``(?:16|7[56])24``); none for a region without one (the main country of its code) or with a
    pattern this doesn't read."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    pattern = metadata.leading_digits if metadata else None
    if not pattern:
        return ()
    if pattern not in _LEADING:
        try:
            strings, end = _alternatives(pattern, 0)
            _LEADING[pattern] = tuple(sorted(set(strings))) if end == len(pattern) else ()
        except ValueError:
            _LEADING[pattern] = ()
    return _LEADING[pattern]


_LEADING: dict[str, tuple[str, ...]] = {}


def _alternatives(pattern: str, at: int) -> tuple[list[str], int]:
    """``a|b|…`` from ``at`` up to a ``)`` or the end: the strings, and where it stopped."""
    strings, at = _sequence(pattern, at)
    while at < len(pattern) and pattern[at] == "|":
        more, at = _sequence(pattern, at + 1)
        strings += more
    return strings, at


def _sequence(pattern: str, at: int) -> tuple[list[str], int]:
    strings = [""]
    while at < len(pattern) and pattern[at] not in "|)":
        char = pattern[at]
        if char.isdigit():
            options, at = [char], at + 1
        elif char == "[":
            end = pattern.index("]", at)
            options, at = _digit_class(pattern[at + 1 : end]), end + 1
        elif char == "(":
            start = at + 3 if pattern.startswith("(?:", at) else at + 1
            options, at = _alternatives(pattern, start)
            if at >= len(pattern) or pattern[at] != ")":
                raise ValueError(pattern)
            at += 1
        else:
            raise ValueError(pattern)  # a quantifier, \d…: not in today's metadata
        strings = [s + o for s in strings for o in options]
        if len(strings) > _LEADING_CAP:
            raise ValueError(pattern)
    return strings, at


def _digit_class(text: str) -> list[str]:
    out, at = [], 0
    while at < len(text):
        if at + 2 < len(text) and text[at + 1] == "-":
            out += [str(d) for d in range(int(text[at]), int(text[at + 2]) + 1)]
            at += 3
        elif text[at].isdigit():
            out.append(text[at])
            at += 1
        else:
            raise ValueError(text)
    return out


def calling_codes_within(prefix: str) -> dict[int, tuple[str, ...]]:
    """The country calling codes a number prefix covers whole, each with its regions (``001`` for
    a non-geographic one): ``+44`` → {44: GB, GG, IM, JE}; ``+4`` → every code from 40 to 49;
    ``+441`` → none (it is a part of +44)."""
    digits = prefix.removeprefix("+")
    return {
        code: tuple(regions)
        for code, regions in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items())
        if digits and str(code).startswith(digits)
    }
