"""Twilio's message status callbacks: signature-checked, then applied forward-only.

The callback URL we hand Twilio names the verification and the send (``?v=VE…&n=2``), and the
signature covers that query string, so a callback finds its send attempt directly — also when it
arrives before the worker has stored the Message SID.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from otp import delivery
from otp.audit_fields import Event
from otp.core import delivery_reports, events
from otp.core.budget import Budgets
from otp.core.messages import PRICE_UNIT
from otp.core.validators import whole_number
from otp.errors import Forbidden, InvalidInput
from otp.storage import keys as keyspace
from otp.storage.store import Store
from otp.web.body import read_limited

log = logging.getLogger("otp.webhooks")

# Bounds on the callback's numbers (a send number is at most OTP_MAX_SENDS; Twilio's error codes
# have five digits): far above any real one, and far below what int() refuses.
MAX_SEND_NUMBER = 1_000_000
MAX_ERROR_CODE = 999_999_999
# What a callback may name: a send's states, and those of inbound or aggregate messages (the
# store moves no send with those).
STATUSES = frozenset(delivery.STATES) | delivery.OTHER_TWILIO_STATES


def called_url(request: Request, public_url: str) -> str:
    """The URL Twilio signed: behind a proxy our own view of it differs, so OTP_PUBLIC_URL wins."""
    if not public_url:
        return str(request.url)
    query = request.url.query
    return f"{public_url}{request.url.path}" + (f"?{query}" if query else "")


async def status_callback(request: Request) -> Response:
    settings = request.app.state.settings
    if not settings.twilio_auth_token:
        raise Forbidden(
            "status callbacks need OTP_TWILIO_AUTH_TOKEN to check their signature", field="X-Twilio-Signature"
        )
    raw = await read_limited(request)
    try:
        params = dict(parse_qsl(raw.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise InvalidInput("is not form-encoded UTF-8", field="body") from None
    signature = request.headers.get("x-twilio-signature", "")
    validator = RequestValidator(settings.twilio_auth_token)
    if not signature or not validator.validate(called_url(request, settings.public_url), params, signature):
        log.warning("refused a status callback with a missing or invalid signature")
        raise Forbidden("missing or invalid Twilio signature", field="X-Twilio-Signature", code="bad_signature")

    vid = request.query_params.get("v", "")
    send = request.query_params.get("n", "")
    if not keyspace.VERIFICATION_ID.fullmatch(vid) or not send:
        raise InvalidInput("the callback URL must carry v=<verification id>&n=<send number>", field="v")
    send_number = whole_number(send, field="n", low=1, high=MAX_SEND_NUMBER)
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    if status not in STATUSES:
        raise InvalidInput(f"unknown MessageStatus {status!r}", field="MessageStatus")
    error_code = params.get("ErrorCode", "")
    if error_code and error_code.isascii() and error_code.isdigit():
        # Twilio's codes are five digits; a longer run is no code of theirs (nor int()-able past 4,300).
        whole_number(error_code, field="ErrorCode", low=0, high=MAX_ERROR_CODE)
    store: Store = request.app.state.store
    clock = request.app.state.verifier.clock
    now = clock.now()
    partition = keyspace.partition_of_id(vid, store.partitions)
    code = int(error_code) if error_code.isascii() and error_code.isdigit() else None
    applied = await store.record_delivery(
        partition=partition,
        now_ms=int(now * 1000),
        verification_id=vid,
        send_number=send_number,
        changes={"status": status, "error_code": code, "message_sid": params.get("MessageSid") or None},
    )
    await _reconcile(request, vid, send_number, status, params)
    events.emit(Event.DELIVERY, now, vid=vid, send=send_number, status=status, error_code=error_code, source="callback")
    # The time-to-delivered histogram, and the opt-out a 21610 marks.
    await delivery_reports.after_report(
        store,
        delivery_reports.ReportRules(
            request.app.state.verifier.keyring, settings.opt_out_ttl, int(settings.retention * 1000)
        ),
        applied,
        partition=partition,
        verification_id=vid,
        error_code=code,
        now_ms=int(now * 1000),
        source="callback",
    )
    # 200 even for a send we no longer know (past retention): Twilio would only retry it.
    return JSONResponse({"status": applied.status or "unknown"})


async def _reconcile(request: Request, vid: str, send_number: int, status: str, params: dict[str, str]) -> None:
    """The spend budgets learn the real price when a callback carries one (Twilio's usually don't:
    the worker's poll fetches it); a failed message is never billed."""
    budgets: Budgets | None = getattr(request.app.state, "budgets", None)
    if budgets is None:
        return
    price = (params.get("Price") or None, params.get("PriceUnit") or None)
    if price[0] is None and status == "failed":
        price = ("0", PRICE_UNIT)
    store: Store = request.app.state.store
    now_ms = int(request.app.state.verifier.clock.now() * 1000)
    await budgets.reconcile(keyspace.partition_of_id(vid, store.partitions), now_ms, vid, send_number, price)


routes = [Route("/webhooks/twilio/status", status_callback, methods=["POST"])]
