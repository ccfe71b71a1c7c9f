"""The text of the SMS: localized templates, segment counting and a price estimate.

``TEMPLATES`` is the verification text per locale; ``CATALOGUE`` holds it beside otp's few other
templates (a sign-in one, one with a "don't share" warning, one with the caller's ``{purpose}``),
which /v2 lists as Verify Templates and selects by TemplateSid.

Every template is kept short enough that the worst case this service can produce -- a 10-digit
code, a 30-character app name and the WebOTP line for a short domain -- still fits in a single
SMS segment, because each extra segment is billed as a whole message and multipart messages
arrive out of order on some handsets. ``tests/test_messages.py`` holds that promise. With an
Android app hash (Twilio's AppHash: 11 more characters, last) it still holds, by falling back to
English where a UCS-2 template has no room left (``render``; ``tests/test_v2_parameters.py``).
The hash's alphabet ([A-Za-z0-9+/], no "." "@" "#" ":") can't make a link or a WebOTP line.

Segment counting follows GSM 03.38 / 3GPP TS 23.038: GSM-7 when every character is in the basic
set or its extension table, UCS-2 (UTF-16 code units) otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final

from otp.core.phone import COUNTRIES
from otp.errors import InvalidInput

# Code first where the language allows it: it stays visible in a truncated notification and
# it is what autofill heuristics look for. Latin-script templates use only GSM-7 characters
# (no "ó", "ç", "ã"), since a single such letter switches the whole message to UCS-2 and cuts
# the segment from 160 to 70 characters. The UCS-2 templates have 4 code units of their own
# to spend: 70 - 10 (code) - 30 (app name) - 26 (WebOTP line for example.com) = 4.
TEMPLATES: Final[Mapping[str, str]] = {
    "en": "{code} is your {app} verification code.",
    "es": "{code} es tu clave de {app}.",
    "fr": "{code} est votre code {app}.",
    "de": "{code} ist Ihr Code für {app}.",
    "pt": "{code} é sua senha {app}.",
    "it": "{code} è il tuo codice {app}.",
    "nl": "{code} is je code voor {app}.",
    "ja": "{app}認証番号{code}",
    "zh": "{code}是{app}验证码",
    "ar": "{app} رمز{code}",
    "hi": "{app} कोड{code}",
    "ru": "{app} код{code}",
}

DEFAULT_LOCALE: Final = "en"


@dataclass(frozen=True)
class Template:
    """One of otp's SMS texts, in the locales it is written in (English always: a locale the
    template is not written in gets English, as an app hash that doesn't fit does). ``variables``
    are the caller's own substitutions (Twilio's TemplateCustomSubstitutions): each value passes
    `validate_app_name`, so a template with them is held to one segment at its worst case too."""

    name: str  # stable: jobs carry it and /v2 derives the template's sid from it
    friendly_name: str
    texts: Mapping[str, str]
    variables: tuple[str, ...] = ()


VERIFICATION: Final = "verification"
# Small on purpose: each is proven to fit one segment (tests/test_messages.py). Only Latin-script
# translations beyond the first template: a UCS-2 template with a 30-character name, a 10-digit code
# and the WebOTP line has 4 units to spare, too few for a warning or a substitution.
CATALOGUE: Final[Mapping[str, Template]] = {
    VERIFICATION: Template(VERIFICATION, "otp verification code", TEMPLATES),
    "sign_in": Template(
        "sign_in",
        "otp sign-in code",
        {
            "en": "{code} is your {app} sign-in code.",
            "es": "{code} es tu clave para entrar en {app}.",
            "fr": "{code} est votre code de connexion {app}.",
            "de": "{code} ist Ihr Anmeldecode für {app}.",
        },
    ),
    "do_not_share": Template(
        "do_not_share",
        "otp code with do not share warning",
        {
            "en": "{code} is your {app} verification code. Don't share it with anyone.",
            "es": "{code} es tu clave de {app}. No la compartas con nadie.",
            "fr": "{code} est votre code {app}. Ne le partagez avec personne.",
            "de": "{code} ist Ihr Code für {app}. Geben Sie ihn nicht weiter.",
        },
    ),
    "purpose": Template(
        "purpose",
        "otp code with a purpose",
        {
            "en": "{code} is your {app} code to {purpose}.",
            "es": "{code} es tu clave de {app} para {purpose}.",
            "fr": "{code} est votre code {app} pour {purpose}.",
        },
        variables=("purpose",),
    ),
}

# Only countries with one dominant language: for multilingual ones (BE, CH, CA, IN, SG, ...)
# a wrong guess reads worse than English. India gets English on purpose: it is the common
# language of Indian OTP messages and, being GSM-7, buys 160 characters instead of 70.
_COUNTRY_LOCALES: Final[Mapping[str, str]] = {
    **dict.fromkeys(
        "AR BO CL CO CR CU DO EC ES GQ GT HN MX NI PA PE PR PY SV UY VE".split(),
        "es",
    ),
    **dict.fromkeys("AO BR CV GW MZ PT ST".split(), "pt"),
    **dict.fromkeys("BF BJ CD CG CI FR GA GN MC ML NE SN TG".split(), "fr"),
    **dict.fromkeys("AT DE LI".split(), "de"),
    **dict.fromkeys("IT SM VA".split(), "it"),
    **dict.fromkeys("NL SR".split(), "nl"),
    "JP": "ja",
    **dict.fromkeys("CN HK MO TW".split(), "zh"),
    **dict.fromkeys("AE BH DZ EG IQ JO KW LB LY MA OM PS QA SA SD SY TN YE".split(), "ar"),
    **dict.fromkeys("BY KG KZ RU".split(), "ru"),
}

# GSM 03.38 basic character set, minus the escape code 0x1B (not a character of its own).
# 0x09 is the capital "Ç" per the 3GPP mapping; the lowercase "ç" is not in the set.
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Each of these is sent as escape + character: two septets.
_GSM_EXTENSION: Final = frozenset("\f^{}\\[~]|€")

GSM7: Final = "GSM-7"
UCS2: Final = "UCS-2"

# (capacity of a single message, capacity of each part of a multipart message); multipart
# parts lose room to the user data header that numbers them.
_GSM7_LIMITS: Final = (160, 153)
_UCS2_LIMITS: Final = (70, 67)

# -- the name in the SMS -------------------------------------------------------------------------
# A name is the one part of the SMS a tenant writes, so it must neither phish (a domain or link the
# handset turns into a tap target, a forged WebOTP "@domain #code" line) nor cost a second segment.
# Its alphabet is Latin letters, digits, the space and a little punctuation, all in the GSM 03.38
# basic set (one septet each, one UTF-16 unit each): a name of APP_NAME_MAX of any of them is the
# worst case, and tests/test_friendly_names.py proves it fits every template at the longest code.
# Greek capitals, though GSM-7, are left out: they add nothing a name needs and only homoglyph room.
APP_NAME_MAX: Final = 30
APP_NAME_MAX_DIGITS: Final = 4  # a name must not read like the code or a phone number
APP_NAME_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" + "ÄÖÑÜäöñüàèéùìòÇØøÅåÆæßÉ"
APP_NAME_PUNCTUATION: Final = " .,'&-_!()"
APP_NAME_ALPHABET: Final = frozenset(APP_NAME_LETTERS + "0123456789" + APP_NAME_PUNCTUATION)
# "name.tld" (a dot right before a letter or digit), "www" anywhere, and a scheme's "://".
_LINKISH: Final = re.compile(r"\.\w|www|://", re.IGNORECASE)

# Android's SMS Retriever: the app's 11-character hash (base64 of a SHA-256 prefix, no padding),
# last in the SMS. Twilio's AppHash.
APP_HASH: Final = re.compile(r"[A-Za-z0-9+/]{11}")


def validate_app_name(value: str, field: str) -> str:
    """The name to put in the SMS, trimmed; raises `InvalidInput` naming ``field`` when it could
    phish or cost a second segment. The one rule for /v2 FriendlyName and CustomFriendlyName and
    for OTP_APP_NAME."""
    name = value.strip()
    if not 1 <= len(name) <= APP_NAME_MAX:
        raise InvalidInput(f"must be 1 to {APP_NAME_MAX} characters", field=field)
    if _LINKISH.search(name):
        raise InvalidInput("must not look like a link or a domain (no www, :// or name.tld)", field=field)
    outside = sorted(set(name) - APP_NAME_ALPHABET)
    if outside:
        raise InvalidInput(
            f"may hold only letters, digits, spaces and {' '.join(APP_NAME_PUNCTUATION.strip())}"
            f" (not {', '.join(repr(ch) for ch in outside[:3])}): it must fit one GSM-7 SMS segment",
            field=field,
        )
    if sum(ch.isdigit() for ch in name) > APP_NAME_MAX_DIGITS:
        raise InvalidInput(f"may hold at most {APP_NAME_MAX_DIGITS} digits", field=field)
    return name


PRICE_UNIT: Final = "USD"
# Rough per-segment prices for estimates only; real prices come from the provider's receipt.
DEFAULT_PRICES: Final[Mapping[str, Decimal]] = {
    "US": Decimal("0.0079"),
    "CA": Decimal("0.0079"),
    "GB": Decimal("0.0400"),
    "DE": Decimal("0.0800"),
    "FR": Decimal("0.0700"),
    "ES": Decimal("0.0700"),
    "IT": Decimal("0.0800"),
    "NL": Decimal("0.0900"),
    "BR": Decimal("0.0500"),
    "MX": Decimal("0.0300"),
    "IN": Decimal("0.0050"),
    "JP": Decimal("0.0700"),
    "*": Decimal("0.0500"),
}
_PRICE_QUANTUM: Final = Decimal("0.0001")
_COUNTRY: Final = re.compile(r"^(?:[A-Z]{2}|\*)$")
_LOCALE_SEPARATOR: Final = re.compile(r"[-_]")


def validate_app_hash(value: str, field: str) -> str:
    """Android's SMS Retriever app hash, as given (no trimming: a stray space or newline is a
    wrong hash, and the SMS would not reach the app); raises `InvalidInput` naming ``field``."""
    if not APP_HASH.fullmatch(value):
        raise InvalidInput("must be the 11-character app hash of Android's SMS Retriever ([A-Za-z0-9+/])", field=field)
    return value


def validate_substitutions(template: Template, given: Mapping[str, Any], field: str) -> dict[str, str]:
    """The values of ``template``'s variables, each held to the rule of a name in the SMS (no links,
    GSM-7, fits the segment); raises `InvalidInput` naming ``field`` for a variable the template
    doesn't have, one it has that is missing, or a value that isn't a string that passes."""
    unknown = sorted(set(given) - set(template.variables))
    if unknown:
        have = ", ".join(template.variables) or "none"
        raise InvalidInput(
            f"names {unknown[0]!r}, not a variable of template {template.friendly_name!r} (its variables: {have})",
            field=field,
        )
    missing = [name for name in template.variables if name not in given]
    if missing:
        raise InvalidInput(f"must give {missing[0]!r} for template {template.friendly_name!r}", field=field)
    values: dict[str, str] = {}
    for name in template.variables:
        value = given[name]
        if not isinstance(value, str):
            raise InvalidInput(f"{name!r} must be a string", field=field)
        try:
            values[name] = validate_app_name(value, field)
        except InvalidInput as exc:
            raise InvalidInput(f"{name!r} {exc.message}", field=field) from None
    return values


def render(
    code: str,
    *,
    locale: str = "",
    country: str = "",
    app_name: str = "otp",
    webotp_domain: str = "",
    app_hash: str = "",
    template: str = VERIFICATION,
    substitutions: Mapping[str, str] | None = None,
) -> str:
    """The SMS body for ``code``, in the language of ``locale`` or else of ``country``, from the
    `CATALOGUE` template named ``template`` (English where it isn't written in that language).

    With ``app_hash`` the message ends with it (Android's SMS Retriever wants the hash last, in a
    one-segment message). Where the language's template is UCS-2 and the hash would push the
    message past one segment (a long name, a long code and the WebOTP line use up its 70 units),
    the English template is used instead: one segment matters more to the retriever than the
    language does, and English in GSM-7 has room for all of it."""
    # A job queued by a release that had a template this one lacks still gets a code.
    texts = CATALOGUE.get(template, CATALOGUE[VERIFICATION]).texts
    language = choose_locale(locale, country)
    if language not in texts:
        language = DEFAULT_LOCALE
    values = dict(substitutions or {})
    body = _compose(texts[language], code, app_name, webotp_domain, app_hash, values)
    if app_hash and segments(body) > 1 and language != DEFAULT_LOCALE:
        body = _compose(texts[DEFAULT_LOCALE], code, app_name, webotp_domain, app_hash, values)
    return body


def _compose(
    template: str, code: str, app_name: str, webotp_domain: str, app_hash: str, values: Mapping[str, str]
) -> str:
    body = template.format_map({**values, "code": code, "app": app_name})
    if webotp_domain:
        # The WebOTP / origin-bound code format: the last line is "@domain #code". The format lets
        # more follow on that line after a space, which is where the hash goes: both stay last.
        body += f"\n\n@{webotp_domain} #{code}"
        return body + f" {app_hash}" if app_hash else body
    return body + f"\n\n{app_hash}" if app_hash else body


def choose_locale(locale: str = "", country: str = "") -> str:
    """The template key for a language tag (``pt-BR``, ``zh_Hans``, ``EN``) or an ISO 3166 country."""
    language = _LOCALE_SEPARATOR.split(locale.strip(), maxsplit=1)[0].lower()
    if language in TEMPLATES:
        return language
    # An unsupported language still falls through to the country: a Catalan speaker in Spain
    # is better served in Spanish than in English.
    return _COUNTRY_LOCALES.get(country.strip().upper(), DEFAULT_LOCALE)


def encoding(body: str) -> str:
    """``"GSM-7"`` if every character of ``body`` can be sent in GSM 03.38, else ``"UCS-2"``."""
    return GSM7 if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in body) else UCS2


def segments(body: str) -> int:
    """How many SMS segments ``body`` is billed as (an empty body is still one message)."""
    if encoding(body) == GSM7:
        return _pack([2 if ch in _GSM_EXTENSION else 1 for ch in body], *_GSM7_LIMITS)
    return _pack([_utf16_units(ch) for ch in body], *_UCS2_LIMITS)


def _utf16_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _pack(sizes: list[int], single: int, part: int) -> int:
    """Parts needed for characters of the given sizes, never splitting one across two parts.

    An escape pair or a surrogate pair that would straddle a boundary moves whole to the next
    part, as careful senders do; counting that way never underestimates.
    """
    if sum(sizes) <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts


def estimate_price(country: str, segments: int, table: Mapping[str, Decimal] | None = None) -> tuple[str, str]:
    """Estimated cost of sending ``segments`` segments to ``country``: ``("0.0158", "USD")``."""
    if segments < 0:
        raise ValueError(f"segments must not be negative, got {segments}")
    prices = DEFAULT_PRICES if table is None else table
    per_segment = prices.get(country.strip().upper(), prices.get("*"))
    if per_segment is None:
        raise ValueError(f"no price for country {country!r} and no '*' default in the price table")
    total = (per_segment * segments).quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_UP)
    return str(total), PRICE_UNIT


def parse_price_table(text: str, *, what: str = "price table", example: str = "US=0.0079") -> dict[str, Decimal]:
    """Per-segment prices from ``"US=0.0079,GB=0.04,*=0.05"`` (the format of an env variable).
    ``what`` names the table in errors and ``example`` shows its format: the daily budgets per
    country share it."""
    table: dict[str, Decimal] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue  # tolerate "US=0.01," and an empty variable
        country, price = _parse_price_entry(entry, what, example)
        if country in table:
            raise ValueError(f"{what}: {country} is listed twice")
        table[country] = price
    return table


def _parse_price_entry(entry: str, what: str, example: str) -> tuple[str, Decimal]:
    country, sep, amount = entry.partition("=")
    country, amount = country.strip().upper(), amount.strip()
    if not sep:
        raise ValueError(f"{what}: {entry.strip()!r} is not COUNTRY=AMOUNT (e.g. {example})")
    if not _COUNTRY.match(country):
        raise ValueError(f"{what}: {country!r} is not a two-letter country code or '*'")
    if country != "*" and country not in COUNTRIES:
        # A code no number has would never apply, silently: "UK" for GB is the usual slip.
        hint = " (the United Kingdom is GB)" if country == "UK" else ""
        raise ValueError(f"{what}: {country!r} is not an ISO 3166 country code{hint}")
    try:
        price = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"{what}: {amount!r} for {country} is not a number") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"{what}: {amount!r} for {country} is not an amount (finite, not negative)")
    return country, price
