"""Reading /v2 requests: the form-encoded body and the query parameters, each refused naming the
parameter (Twilio's 60200) rather than guessed at."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request

from otp.core.validators import whole_number
from otp.errors import InvalidInput
from otp.web.body import is_utf8, loads_strict, read_limited

MAX_FORM_FIELDS = 100
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PAGE = 1_000_000


async def form(request: Request) -> dict[str, str]:
    """The form-encoded body, parsed with the stdlib (no python-multipart), 16 KiB at most."""
    found, _ = await form_with_lists(request)
    return found


async def form_with_lists(
    request: Request, lists: frozenset[str] = frozenset()
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """`form`, and the values of the list parameters ``lists`` (Twilio's arrays, which its SDKs
    send as the name repeated: ``EventTypes=a&EventTypes=b``)."""
    raw = await read_limited(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw.strip() and media_type not in ("application/x-www-form-urlencoded", ""):
        raise InvalidInput("send Content-Type: application/x-www-form-urlencoded", field="Content-Type")
    try:
        # Percent-escapes that decode to no UTF-8 (%ED%A0%80, %FF) become lone surrogates here,
        # to be refused below naming their parameter.
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="surrogateescape",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError, and so is "too many fields"
        raise InvalidInput(f"is not a valid form-encoded body ({type(exc).__name__})", field="body") from None
    found: dict[str, str] = {}
    listed: dict[str, list[str]] = {}
    for name, value in pairs:
        if not is_utf8(name):
            # Named as it was sent: the same bytes, percent-encoded again.
            field = quote(name, safe="", encoding="utf-8", errors="surrogateescape")
            raise InvalidInput("is not UTF-8 once percent-decoded", field=field)
        if not is_utf8(value):
            raise InvalidInput("is not UTF-8 once percent-decoded", field=name)
        if name in lists:
            listed.setdefault(name, []).append(value)
            continue
        # One value per parameter: a second one would make "which one counts" a guess.
        if name in found:
            raise InvalidInput("is given more than once", field=name)
        found[name] = value
    return found, listed


def required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value.strip():
        raise InvalidInput("is required", field=name, code="missing_field")
    return value.strip()


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "").strip()
    return whole_number(raw, field=name, low=low, high=high) if raw else default


def paging(params: Mapping[str, str]) -> tuple[int, int]:
    """(PageSize, Page) of a list request."""
    page_size = int_param(params, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    return page_size, int_param(params, "Page", 0, 0, MAX_PAGE)


def json_object(raw: str, field: str) -> dict[str, Any]:
    # Strict: a key given twice, NaN or an over-long integer is refused naming it (Tags.a).
    try:
        value = loads_strict(raw, field)
    except InvalidInput as exc:
        # The SDKs send this parameter as the string they are given: a dict's repr is the usual slip.
        raise InvalidInput(
            f'{exc.message}; send a JSON object as text, like {{"key": "value"}}', field=exc.field or field
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput('must be a JSON object, like {"key": "value"}', field=field)
    return value


def date_param(params: Mapping[str, str], name: str) -> int | None:
    """An ISO 8601 time (UTC unless it says otherwise) as epoch milliseconds."""
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("must be an ISO 8601 time like 2027-01-15T08:00:00Z", field=name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def sid_param(params: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    raw = params.get(name, "").strip()
    if raw and not pattern.match(raw):
        raise InvalidInput(f"must be {what}", field=name)
    return raw or None
