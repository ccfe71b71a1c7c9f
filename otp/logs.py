"""The log of `otp serve` and `otp worker`: every logger (otp's, uvicorn's, the twilio SDK's)
through one stderr handler that masks phone numbers and names the request id, writing one JSON
object per line (``OTP_LOG_FORMAT=json``) or a readable text line (``text``).

A JSON line has ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``request_id``
inside a request (otp.web.access_log), and the fields the caller passed as ``extra`` (the access
line's ``method``, ``route``, ``status``…; the audit line's ``audit``). A text line is
``<time> <level> <logger> <message>`` and the same fields as ``name=value``."""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from otp.core.phone import MASK, mask, mask_numbers
from otp.web.access_log import REQUEST_ID

# What the SDK logs at INFO: every request's URL, parameters (the To number, the message with
# its code) and headers. Only its warnings get through, whatever OTP_LOG_LEVEL says.
QUIET = ("twilio", "twilio.http_client")
# Record attributes that are not the caller's fields: the LogRecord's own, and uvicorn's copy of
# its message with terminal colours.
_RECORD_ATTRS = frozenset({*RESERVED_ATTRS, "taskName", "color_message"})
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup(level: str, fmt: str = "") -> None:
    """Route every logger through one masking handler on stderr. ``fmt`` is ``json`` or
    ``text``; empty: text for a person at a terminal, JSON for anything else (a pipe, a file,
    a container's log collector)."""
    fmt = fmt or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Json() if fmt == "json" else Text(TEXT_FORMAT))
    handler.addFilter(RequestIds())
    handler.addFilter(MaskNumbers())
    logging.basicConfig(level=level, handlers=[handler])
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller added to the record (``extra``) and the request id."""
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")}


class RequestIds(logging.Filter):
    """Names the request being handled, if any, on each line."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        return True


class Json(JsonFormatter):
    """python-json-logger's formatter, with the time first and tracebacks masked."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=sorted(_RECORD_ATTRS),
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = timestamp(record)
        super().add_fields(log_data, record, message_dict)

    def formatException(self, ei: Any) -> str:
        return mask_text(logging.Formatter.formatException(self, ei))

    def formatStack(self, stack_info: str) -> str:
        return mask_text(stack_info)


class Text(logging.Formatter):
    """``<time> <level> <logger> <message>`` and then the record's fields as ``name=value``
    (a dict's own fields, unprefixed: the audit line reads ``audit ts=… event=started vid=…``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The line before a traceback (which format() appends to this).
        pairs = "".join(f" {k}={_text_value(v)}" for k, v in _flat(fields_of(record)))
        return super().formatMessage(record) + pairs

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return timestamp(record)

    def formatException(self, ei: Any) -> str:
        return mask_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return mask_text(stack_info)


def timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _flat(fields: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in fields.items():
        out.extend(value.items() if isinstance(value, dict) else [(key, value)])
    return out


_PLAIN = re.compile(r"[\w.:/{}+*@,%-]+")


def _text_value(value: object) -> str:
    text = str(value)
    # Quoted (and so escaped) unless plain: a value can't break the line or pass for another pair.
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


class MaskNumbers(logging.Filter):
    """Numbers out of every line: a message, its arguments, the caller's fields.

    A message's arguments are masked in place, the record keeping its shape (a formatter may
    unpack ``record.args``; uvicorn's AccessFormatter did, and ``args = None`` once made every
    request log a ``--- Logging error ---`` traceback instead of its line). An argument that is a
    path goes through ``mask_target`` (``storage error on GET /v2/…/Verifications/501-712-2661``);
    a field (``extra``) through ``mask_field``, its dicts' and lists' strings too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _masked(arg) for name, arg in record.args.items()}
        # getMessage() takes str(msg) in any case; arguments that aren't strings are left as they
        # are (their format, %d or %r, is the message's business).
        record.msg = mask_numbers(str(record.msg))
        for key, value in fields_of(record).items():
            setattr(record, key, _masked_field(value))
        return True


def _masked(arg: object) -> object:
    if not isinstance(arg, str):
        return arg
    if arg.startswith("/"):
        return mask_target(arg)
    return mask_text(arg)


def _masked_field(value: object) -> object:
    if isinstance(value, str):
        return mask_field(value)
    if isinstance(value, dict):
        return {k: _masked_field(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked_field(v) for v in value]
    return value


def mask_text(text: str) -> str:
    """Numbers with their plus (also URL-encoded, or fullwidth), and bare runs of 8-15 digits."""
    return _BARE_NUMBER.sub(lambda m: MASK + m.group()[-VISIBLE:], mask_numbers(text))


def mask_field(text: str) -> str:
    """A field's value as it is (a route template keeps its braces), but numbers masked: in a
    path, also a run of 7 or more digits however separated (``mask_digit_runs``)."""
    return mask_text(mask_digit_runs(text) if text.startswith("/") else text)


def shows_no_number(text: str) -> bool:
    """Whether the log would show ``text`` as it is (for a client's request id)."""
    return mask_digit_runs(mask_field(text)) == text


VISIBLE = 4  # digits of a masked number left in a log line, as otp.core.phone.mask leaves
# A national number (no "+") in another field, e.g. a method: a bare run of 8-15 digits.
_BARE_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{8,15}(?![0-9A-Za-z])")
# Digits with what people type between them: spaces, ( ) . - + and the other punctuation
# phonenumbers reads as separators that NFKC leaves as they are (‐ ‑ ‒ – — ― − ー, [ ], soft
# hyphens...); any decimal digit, as NFKC leaves some non-ASCII ones.
_SEPARATORS = " ().+-[]~\u00ad\u200b\u2060\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2053\u223c\u30fc"
# From a digit to a digit, so that matching is linear: a long stretch of separators can't be the
# start of a match (and backtracked from each of its characters).
_DIGIT_RUN = re.compile(f"\\d(?:[\\d{re.escape(_SEPARATORS)}]*\\d)?")
MIN_DIGITS = 7  # a run of this many digits or more is masked as a number
# Kept as they are when a masked path is quoted again for the line (never "%", "?", space or a
# control character, so decoding can't forge a line or a query).
_PATH_SAFE = "/+*()!$&',;=:@"
_DECODINGS = 4  # "%252B1…" decodes to "%2B1…", then "+1…": decoded until stable, at most this often
HIDDEN = "…"  # what a masked target shows of a query value


def mask_target(text: str) -> str:
    """A request target as a log line may show it (the path decoded and quoted again, then the
    query as sent). No query value is shown at all (``?number=…&since=…``); the path and the
    parameters' names are percent-decoded (repeatedly), NFKC-normalised (so a fullwidth ``＋``
    is a plus) and quoted again, with each run of 7 or more digits masked, however separated
    (spaces, ``( ) . - +``, the other ``_SEPARATORS``): ``+1 (501) 712-2661`` → ``+1*******2661``,
    ``501-712-2661`` → ``*******2661``. Digits glued to a letter are part of an id
    (``VE0123456789abcdef…``) and stay, unless a ``+`` comes before them."""
    path, mark, query = text.partition("?")
    if not mark:
        return _mask_part(path)
    names = []
    for parameter in query.split("&"):
        name, equals, _value = parameter.partition("=")
        names.append(_mask_part(name.replace("+", " ")) + (f"={HIDDEN}" if equals else ""))
    return _mask_part(path) + "?" + "&".join(names)


def _mask_part(text: str) -> str:
    for _ in range(_DECODINGS):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    text = unicodedata.normalize("NFKC", text)
    return quote(mask_digit_runs(text), safe=_PATH_SAFE)


def mask_digit_runs(text: str) -> str:
    """Each run of 7 or more digits, however separated, masked (but an id's, glued to a letter)."""
    return _DIGIT_RUN.sub(lambda m: _masked_run(m, text), text)


def _masked_run(match: re.Match[str], text: str) -> str:
    run = match.group()
    digits = "".join(str(unicodedata.digit(c)) for c in run if c.isdecimal())
    if len(digits) < MIN_DIGITS:
        return run
    # A "+" among the separators just before it makes it a number with its calling code (the
    # "+" stays where it is); each separator is looked at once, by the run that follows it.
    at = match.start() - 1
    while at >= 0 and text[at] in _SEPARATORS and text[at] != "+":
        at -= 1
    if at >= 0 and text[at] == "+":
        return mask("+" + digits)[1:]
    before = text[match.start() - 1] if match.start() > 0 else ""
    after = text[match.end()] if match.end() < len(text) else ""
    if before.isalpha() or after.isalpha():
        return run  # part of an id
    return MASK + digits[-VISIBLE:]
