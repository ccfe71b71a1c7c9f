"""/v2/Services/{ServiceSid}/VerificationCheck: a code checked by VerificationSid or by To."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import services as service_records
from otp.core import validators
from otp.core.phone import Phone, parse
from otp.core.services import Service
from otp.core.verification import APPROVED, CANCELED, EXPIRED, MAX_ATTEMPTS, PENDING, Caller, Verification
from otp.errors import InvalidInput, NotFound, RateLimited
from otp.storage import keys as keyspace
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.errors import CHECKS_EXHAUSTED
from otp.web.verify_v2.shapes import check_json
from otp.web.verify_v2.verifications import device_ip, gone, refuse_psd2


def _refuse_finished(v: Verification) -> None:
    if v.status == MAX_ATTEMPTS:
        raise RateLimited("this verification has had all its check attempts", code=CHECKS_EXHAUSTED, field="Code")
    if v.status != PENDING:
        raise gone(v)


async def _why_nothing_pending(request: Request, service: Service, phone: Phone) -> None:
    """After a check by To found nothing pending: the latest verification of the number may have
    run out of attempts, which Twilio reports as 60202 rather than 404."""
    vid = await service_records.latest_verification(context.store(request), service.sid, phone.e164)
    if vid is None:
        return
    try:
        latest = await context.verifier(request).fetch(vid, Caller(service.sid))
    except NotFound:
        return
    if latest.status == MAX_ATTEMPTS and latest.to == phone.e164:
        _refuse_finished(latest)


async def check_verification(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account)
    form = await forms.form(request)
    code = validators.code(forms.required(form, "Code"), "Code")
    vid = form.get("VerificationSid", "").strip()
    to = form.get("To", "").strip()
    if not vid and not to:
        raise InvalidInput("give either To or VerificationSid", field="To", code="missing_field")
    if vid and not keyspace.VERIFICATION_ID.fullmatch(vid):
        raise InvalidInput("must be VE followed by 32 hex digits", field="VerificationSid")
    refuse_psd2(form)
    phone = parse(to, default_region=context.default_region(request), field="To") if to else None
    verifier = context.verifier(request)
    # Checks are rate-limited per account, not per service: services cost nothing to create.
    # Twilio's VerificationCheck has no IP parameter: otp takes CreateVerification's DeviceIp here
    # too, for the audit (brute force shows its IPs); the official SDKs don't send it.
    caller = Caller(service.sid, ip=device_ip(form.get("DeviceIp")), account=account.key_id)
    if vid:
        # Read first: "out of attempts" (429) and "gone" (404) must not count as attempts, and the
        # Verifier answers both with a status a check result alone can't tell from a fresh one.
        _refuse_finished(await verifier.fetch(vid, caller))
        result = await verifier.check(code, caller, verification_id=vid, phone=phone)
    else:
        assert phone is not None
        try:
            result = await verifier.check(code, caller, phone=phone)
        except NotFound:
            await _why_nothing_pending(request, service, phone)
            raise
    status = result.status
    if status in (EXPIRED, CANCELED) or (status == APPROVED and not result.approved):
        # Expired meanwhile, or a concurrent right answer approved it first: gone, as in Twilio.
        raise gone(result.verification)
    return JSONResponse(check_json(result.verification, status, result.approved, service))
