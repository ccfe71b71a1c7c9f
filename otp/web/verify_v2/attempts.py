"""/v2/Attempts: the endpoints of Twilio's Verification Attempts over ``otp.core.attempts``.

An attempt's sid is derived from (verification, send number); ``GET /v2/Attempts/{Sid}`` finds
one through a lookup written at each send.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import audit, services, validators
from otp.core import services as service_records
from otp.core.apikeys import ApiKey
from otp.core.attempts import AttemptFilters, AttemptQuery, Attempts
from otp.core.attempts import query as attempt_query
from otp.core.phone import parse
from otp.errors import InvalidInput, NotFound
from otp.storage import keys as keyspace
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.shapes import attempt_json, meta, summary_json

DESTINATION_PREFIX = re.compile(r"^\+[0-9]{1,15}$")
ATTEMPT_CHANNELS = ("sms", "call", "email", "whatsapp", "rbm")
LIST_FILTERS = (
    "DateCreatedAfter",
    "DateCreatedBefore",
    "ChannelData.To",
    "Country",
    "Channel",
    "VerifyServiceSid",
    "VerificationSid",
    "Status",
)
SUMMARY_FILTERS = (
    "VerifyServiceSid",
    "DateCreatedAfter",
    "DateCreatedBefore",
    "Country",
    "Channel",
    "DestinationPrefix",
)


def _attempts(request: Request) -> Attempts:
    return Attempts(context.verifier(request), functools.partial(audit.read_page, context.store(request)))


def _filters(request: Request, names: Iterable[str]) -> AttemptFilters:
    """The filters ``names`` of the query string (the spec's, per endpoint)."""
    q = {name: request.query_params.get(name, "") for name in names}
    since, until = forms.date_param(q, "DateCreatedAfter"), forms.date_param(q, "DateCreatedBefore")
    raw_country = q.get("Country", "").strip()
    country = validators.country(raw_country, "Country") if raw_country else ""
    channel = q.get("Channel", "").strip().lower()
    if channel and channel not in ATTEMPT_CHANNELS:
        raise InvalidInput(f"must be one of: {', '.join(ATTEMPT_CHANNELS)}", field="Channel")
    status = q.get("Status", "").strip().lower() or None
    if status not in (None, "converted", "unconverted"):
        raise InvalidInput("must be converted or unconverted", field="Status")
    prefix = q.get("DestinationPrefix", "").strip() or None
    if prefix is not None and not DESTINATION_PREFIX.match(prefix):
        raise InvalidInput("must be the start of an E.164 number, like +57305", field="DestinationPrefix")
    number_hash = None
    if q.get("ChannelData.To", "").strip():
        phone = parse(q["ChannelData.To"], default_region=context.default_region(request), field="ChannelData.To")
        number_hash = context.verifier(request).keyring.number_hash(phone.e164)
    return AttemptFilters(
        since_ms=since,
        until_ms=until,
        country=country or None,
        number_hash=number_hash,
        channel=channel or None,
        service_sid=forms.sid_param(q, "VerifyServiceSid", services.SERVICE_SID, "VA followed by 32 hex digits"),
        verification_id=forms.sid_param(q, "VerificationSid", keyspace.VERIFICATION_ID, "VE followed by 32 hex digits"),
        status=status,
        prefix=prefix,
    )


async def _query(request: Request, account: ApiKey, names: Iterable[str]) -> AttemptQuery:
    filters = _filters(request, names)
    owned = await service_records.sids_for_account(context.store(request), account.key_id)
    return attempt_query(filters, owned, context.verifier(request).clock())


def _page_token(request: Request) -> str | None:
    raw = request.query_params.get("PageToken", "").strip()
    if not raw:
        return None
    try:
        audit.decode_cursor(raw, context.store(request).partitions)
    except ValueError:
        raise InvalidInput("is not a token from a previous page", field="PageToken") from None
    return raw


async def list_attempts(request: Request) -> Response:
    account = await context.account(request)
    query = await _query(request, account, LIST_FILTERS)
    page_size, page = forms.paging(request.query_params)
    token = _page_token(request)
    found, following = await _attempts(request).page(query, page_size, token)
    base = context.base(request)
    envelope = meta(request, "attempts", page, page_size, previous=None, current=token or "", following=following)
    return JSONResponse({"attempts": [attempt_json(a, account.key_id, base) for a in found], "meta": envelope})


async def fetch_attempt(request: Request) -> Response:
    account = await context.account(request)
    sid = str(request.path_params["Sid"])
    store = context.store(request)
    found = await service_records.find_attempt(store, sid)
    service = await service_records.get(store, found[2]) if found else None
    if found is None or service is None or service.account_sid != account.key_id:
        raise NotFound(f"no attempt {sid}", field="Sid")
    vid, number, _ = found
    attempt = await _attempts(request).one(sid, service.sid, vid, number)
    return JSONResponse(attempt_json(attempt, account.key_id, context.base(request)))


async def attempts_summary(request: Request) -> Response:
    """Twilio's summary has no cursor, so it is one bounded read (``Attempts.summary``). When it
    runs out before DateCreatedAfter the figures are exact for a narrower window, and the answer
    says so: ``X-Otp-Summary-Complete: false``, the window counted in ``X-Otp-Summary-From`` /
    ``-Until``, and ``url`` with that window as DateCreatedAfter/Before."""
    account = await context.account(request)
    query = await _query(request, account, SUMMARY_FILTERS)
    summary = await _attempts(request).summary(query)
    since, until = audit.iso_ms(summary.since_ms), audit.iso_ms(summary.until_ms)
    url = f"{context.base(request)}/v2/Attempts/Summary"
    if not summary.complete:
        window = {"DateCreatedAfter": since, "DateCreatedBefore": until}
        kept = {k: v for k, v in request.query_params.items() if k not in window}
        url += "?" + urlencode({**kept, **window})
    headers = {
        "X-Otp-Summary-Complete": "true" if summary.complete else "false",
        "X-Otp-Summary-From": since,
        "X-Otp-Summary-Until": until,
    }
    return JSONResponse(summary_json(summary, url), headers=headers)
