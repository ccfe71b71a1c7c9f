"""The error answers of the OpenAPI document, one shared response per status and surface.

``/v1`` answers ``{"error": {code, message, field, ...}}`` (``models.Error``): its ``code`` is one
of ``otp.errors.CODES``, whose table (code, status, meaning) the schema's ``code`` shows; each
status's response names its codes and has an example of each. ``/v2`` answers Twilio's body
``{code, message, more_info, status}``: its ``code`` is one of the Twilio codes of
``otp.web.verify_v2.errors`` (``BY_CODE``, ``BY_STATUS``), each listed with the otp codes it
stands for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from otp.errors import CODES
from otp.web import models
from otp.web.errors import RETRYABLE
from otp.web.verify_v2 import errors as twilio

SCHEMA_REF = "#/components/schemas/{name}"
RESPONSE_REF = "#/components/responses/{name}"
TWILIO_ERROR = "TwilioError"
JSON = "application/json"
# What an error status means, as each response's first line.
REASONS = {
    400: "invalid input",
    401: "missing or bad credentials",
    403: "refused by a permission rule, or not an admin key",
    404: "not found",
    405: "method not allowed",
    408: "the body came too slowly",
    409: "not pending, or already there",
    413: "body over 16 KiB",
    415: "wrong Content-Type",
    429: "rate limited: retry after Retry-After seconds",
    503: "storage unavailable: retry after Retry-After seconds",
}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer", "minimum": 1}}
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "the scheme to authenticate with", "schema": {"type": "string"}}
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": RESPONSE_REF.format(name=name)}


def v1_name(status: int) -> str:
    return f"Error{status}"


def v2_name(status: int) -> str:
    return f"{TWILIO_ERROR}{status}"


def _headers(status: int) -> dict[str, Any]:
    if status in RETRYABLE:
        return {"headers": RETRY_AFTER}
    return {"headers": WWW_AUTHENTICATE} if status == 401 else {}


def _codes(codes: Iterable[object]) -> str:
    return ", ".join(f"`{code}`" for code in codes)


def _v1_example(code: str) -> dict[str, Any]:
    found = CODES[code]
    detail: dict[str, Any] = {"code": code, "message": found.meaning, "field": None}
    if found.status in RETRYABLE:
        detail["retry_after"] = 30 if found.status == 429 else 1
    return {"summary": f"{code}: {found.meaning}", "value": {"error": detail}}


def v1_codes_table() -> str:
    """Every /v1 code with its status and meaning: the description of ``ErrorDetail.code``."""
    rows = [f"| `{code}` | {CODES[code].status} | {CODES[code].meaning} |" for code in models.V1_CODES]
    return "\n".join(["| code | status | meaning |", "| --- | --- | --- |", *rows])


def describe_v1_codes(schemas: dict[str, Any]) -> None:
    """Put the table in the ``ErrorDetail`` schema msgspec made (its enum is ``models.V1_CODES``)."""
    code = schemas[models.ErrorDetail.__name__]["properties"]["code"]
    code["description"] = f"What was refused, a stable name to test for:\n\n{v1_codes_table()}"


def v1_response(status: int) -> dict[str, Any]:
    codes = [code for code in models.V1_CODES if CODES[code].status == status]
    return {
        "description": f"{REASONS[status]}: {_codes(codes)}",
        **_headers(status),
        "content": {
            JSON: {
                "schema": {"$ref": SCHEMA_REF.format(name=models.Error.__name__)},
                "examples": {code: _v1_example(code) for code in codes},
            }
        },
    }


def _twilio_codes() -> dict[int, dict[int, tuple[str, list[str]]]]:
    """status → Twilio code → (title, the otp codes it stands for), ``*`` standing for every otp
    code of that status that ``BY_CODE`` doesn't name."""
    found: dict[int, dict[int, tuple[str, list[str]]]] = {}
    for code, error in twilio.BY_CODE.items():
        found.setdefault(error.status, {}).setdefault(error.code, (error.title, []))[1].append(code)
    for status, error in twilio.BY_STATUS.items():
        found.setdefault(status, {}).setdefault(error.code, (error.title, []))[1].append("*")
    found.setdefault(twilio.INTERNAL.status, {})[twilio.INTERNAL.code] = (twilio.INTERNAL.title, ["internal"])
    return found


def twilio_error_schema() -> dict[str, Any]:
    """Twilio's error object as its own OpenAPI document gives it (inline in each 4xx answer of
    twilio_verify_v2.json), its ``code`` the Twilio codes otp answers, each with the otp codes
    (``otp.errors.CODES``) it stands for."""
    rows = []
    for status, by_code in sorted(_twilio_codes().items()):
        for code, (title, otp_codes) in sorted(by_code.items()):
            named = _codes(c for c in otp_codes if c != "*")
            others = f"every other of status {status}" if "*" in otp_codes else ""
            which = ", and ".join(part for part in (named, others) if part)
            rows.append(f"| {code} | {status} | {title} | {which} |")
    table = "\n".join(["| code | status | Twilio's title | otp's reason |", "| --- | --- | --- | --- |", *rows])
    every = sorted({code for by_code in _twilio_codes().values() for code in by_code})
    return {
        "type": "object",
        "required": ["code", "message", "more_info", "status"],
        "properties": {
            "code": {"type": "integer", "enum": every, "description": f"Twilio's error code:\n\n{table}"},
            "message": {"type": "string", "description": "Twilio's title of the code, then what otp found"},
            "more_info": {"type": "string", "format": "uri", "description": "Twilio's page on the code"},
            "status": {"type": "integer", "description": "the HTTP status"},
        },
    }


def v2_response(status: int) -> dict[str, Any]:
    by_code = sorted(_twilio_codes()[status].items())
    examples = {
        str(code): {"summary": f"{code}: {title}", "value": twilio.body(twilio.TwilioError(status, code, title), title)}
        for code, (title, _) in by_code
    }
    return {
        "description": f"{REASONS[status]}: {_codes(code for code, _ in by_code)}",
        **_headers(status),
        "content": {JSON: {"schema": {"$ref": SCHEMA_REF.format(name=TWILIO_ERROR)}, "examples": examples}},
    }


def responses(v1: Iterable[int], v2: Iterable[int]) -> dict[str, Any]:
    """The shared responses of the statuses the operations use: unused ones would be noise."""
    return {
        **{v1_name(status): v1_response(status) for status in sorted(set(v1))},
        **{v2_name(status): v2_response(status) for status in sorted(set(v2))},
    }
