"""/v2/Services/{ServiceSid}/Verifications: start, fetch, and cancel or approve out of band.

Every start parameter of Twilio's CreateVerification is honoured or refused by name (``NOT_OFFERED``,
400 60200), never dropped: a caller must not get an SMS other than the one it asked for. AppHash
ends the SMS with Android's SMS Retriever hash. TemplateSid (else the service's DefaultTemplateSid)
picks one of otp's templates (otp.core.templates), TemplateCustomSubstitutions fills its variables.
The service's MessagingConfiguration for the destination's country (or ``all``) picks the
Messaging Service the SMS goes out with. Tags are kept on the verification and returned on its
attempts (``channel_data.tags``). A parameter Twilio doesn't define is ignored, as Twilio does.
``Status=approved`` approves out of band (audited).

``{Sid}`` is a ``VE…`` sid or, as Twilio documents, the phone number the verification was sent to:
that names the service's pending verification to it (``otp.core.services.latest_verification``,
kept per service, so one service never reaches another's by number).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otp.core import messages, messaging_configs, rate_limits, templates, validators
from otp.core import services as service_records
from otp.core.apikeys import ApiKey
from otp.core.phone import parse
from otp.core.services import Service
from otp.core.verification import APPROVED, CANCELED, EXPIRED, PENDING, Caller, StartOptions, Verification
from otp.errors import Forbidden, InvalidInput, NotFound
from otp.storage import keys as keyspace
from otp.web.verify_v2 import context, forms
from otp.web.verify_v2.errors import CUSTOM_CODE_NOT_ENABLED
from otp.web.verify_v2.shapes import verification_json

MAX_RATE_LIMITS = 10
MAX_TAGS = 10
MAX_TAG_NAME = 128
MAX_TAG_VALUE = 256


# Twilio's start parameters otp doesn't offer, and why: each is refused whenever it is given, blank
# too (there is no value of it otp would carry out). Accepting one would send another SMS than the
# caller asked for.
_PSD2 = "is a PSD2 transaction parameter; otp doesn't offer PSD2 verifications"
NOT_OFFERED: Mapping[str, str] = {
    "CustomMessage": "is deprecated at Twilio and not offered by otp: the SMS text is otp's template, chosen by"
    " Locale, with the service's FriendlyName or CustomFriendlyName",
    "SendDigits": "is for the voice channel, which otp doesn't offer (sms only)",
    "ChannelConfiguration": "is the email/whatsapp channel configuration; otp doesn't offer those channels (sms only)",
    "Templates": "is a list of template candidates, which otp doesn't offer: give one TemplateSid (with"
    " TemplateCustomSubstitutions for its variables)",
}


def refuse_not_offered(form: Mapping[str, str]) -> None:
    for name, why in NOT_OFFERED.items():
        if name in form:
            raise InvalidInput(why, field=name)
    # "false" asks for what otp does anyway; "true" for the sna channel's token.
    sna = form.get("EnableSnaClientToken", "").strip().lower()
    if sna not in ("", "false"):
        raise InvalidInput("is for the sna channel, which otp doesn't offer (sms only)", field="EnableSnaClientToken")


def refuse_psd2(form: Mapping[str, str]) -> None:
    # Accepting them would promise a transaction-bound (PSD2) check that otp doesn't make.
    for name in ("Amount", "Payee"):
        if name in form:
            raise InvalidInput(_PSD2, field=name)


def _app_hash(raw: str | None) -> str:
    return "" if raw is None else messages.validate_app_hash(raw, "AppHash")


def _rate_limits(raw: str | None) -> dict[str, str]:
    if raw is None:
        return {}
    limits = forms.json_object(raw, "RateLimits")
    if len(limits) > MAX_RATE_LIMITS:
        raise InvalidInput(f"may name at most {MAX_RATE_LIMITS} limits", field="RateLimits")
    out: dict[str, str] = {}
    for name, value in limits.items():
        if not rate_limits.is_unique_name(name):
            raise InvalidInput(f"keys must be {rate_limits.UNIQUE_NAME_RULE}", field="RateLimits")
        if isinstance(value, bool) or not isinstance(value, str | int) or not 0 < len(str(value)) <= 128:
            raise InvalidInput("values must be strings or integers of 1 to 128 characters", field="RateLimits")
        out[name] = str(value)
    return out


def _tags(raw: str | None) -> dict[str, str]:
    """Kept on the verification record (bounded: at most 10 names of 1 to 128 characters, as
    Twilio documents, to strings of at most 256), for the events that report it."""
    if raw is None:
        return {}
    tags = forms.json_object(raw, "Tags")
    if len(tags) > MAX_TAGS or not all(isinstance(v, str) and len(v) <= MAX_TAG_VALUE for v in tags.values()):
        raise InvalidInput(f"must map at most {MAX_TAGS} names to strings", field="Tags")
    if not all(0 < len(name) <= MAX_TAG_NAME for name in tags):
        raise InvalidInput(f"names must be 1 to {MAX_TAG_NAME} characters", field="Tags")
    return tags


def _template(service: Service, form: Mapping[str, str]) -> tuple[messages.Template, dict[str, str]]:
    """The start's template (TemplateSid, else the service's DefaultTemplateSid) and the values of
    its variables (TemplateCustomSubstitutions), each held to the rule of a name in the SMS."""
    raw_sid = form.get("TemplateSid")
    if raw_sid is not None and not templates.TEMPLATE_SID.fullmatch(raw_sid.strip()):
        raise InvalidInput("must be a template sid (HJ and 32 hex digits)", field="TemplateSid")
    template = templates.choose(raw_sid, service.text("DefaultTemplateSid"))
    raw = form.get("TemplateCustomSubstitutions")
    given = {} if raw is None else forms.json_object(raw, "TemplateCustomSubstitutions")
    return template, messages.validate_substitutions(template, given, "TemplateCustomSubstitutions")


def device_ip(raw: str | None) -> str:
    return validators.ip(raw, "DeviceIp") if raw else ""


def _custom_code(service: Service, raw: str | None) -> str | None:
    if raw is None:
        return None
    if not service.custom_code_enabled:
        # Twilio's answer for a feature the service hasn't enabled: 403 60204 (errors.BY_CODE).
        raise Forbidden(
            "`CustomCode` needs the service's CustomCodeEnabled set to true",
            code=CUSTOM_CODE_NOT_ENABLED,
            field="CustomCode",
        )
    return validators.code(raw, "CustomCode")


def _risk_check(account: ApiKey, raw: str | None) -> bool:
    enabled = validators.risk_check(raw or "enable", "RiskCheck")
    if not enabled and not account.admin:
        raise Forbidden(
            "only admin accounts may send RiskCheck=disable (it turns the fraud checks off)", field="RiskCheck"
        )
    return enabled


def _locale(form: Mapping[str, str]) -> str:
    return validators.locale(form.get("Locale", "").strip(), "Locale")


def _app_name(service: Service, form: Mapping[str, str]) -> str:
    # Whichever name goes into the SMS passes the one rule: a service saved before it (or written
    # around the API) is refused naming FriendlyName, for its owner to rename, rather than sent.
    custom_name = form.get("CustomFriendlyName")
    if custom_name:
        return messages.validate_app_name(custom_name, "CustomFriendlyName")
    try:
        return messages.validate_app_name(service.friendly_name, "FriendlyName")
    except InvalidInput as exc:
        raise InvalidInput(
            f"the service's name cannot go into an SMS ({exc.message}): update the service", field="FriendlyName"
        ) from None


async def create_verification(request: Request) -> Response:
    account = await context.account(request)
    form = await forms.form(request)
    custom_limits = _rate_limits(form.get("RateLimits"))
    # The service and the rate limits the start names, in one read.
    service, defined = await context.service_with_rate_limits(request, account, custom_limits)
    phone = parse(forms.required(form, "To"), default_region=context.default_region(request), field="To")
    if forms.required(form, "Channel") != "sms":
        raise InvalidInput("only sms is supported by this server", field="Channel")
    locale = _locale(form)
    app_name = _app_name(service, form)
    refuse_psd2(form)
    refuse_not_offered(form)
    tags = _tags(form.get("Tags"))
    template, substitutions = _template(service, form)
    # The destination's Messaging Service, read now: a configuration changed later applies to the next send.
    allowed: frozenset[str] = request.app.state.settings.twilio_messaging_services
    sender = await messaging_configs.sender_for(context.store(request), service.sid, phone.country, allowed)
    verifier = context.verifier(request)
    result = await verifier.start(
        phone,
        Caller(key_id=service.sid, admin=False, ip=device_ip(form.get("DeviceIp")), account=account.key_id),
        StartOptions(
            channel="sms",
            locale=locale,
            risk_check=_risk_check(account, form.get("RiskCheck")),
            code=_custom_code(service, form.get("CustomCode")),
            code_length=service.code_length,
            app_name=app_name,
            app_hash=_app_hash(form.get("AppHash")),
            tags=tags,
            custom_limits=custom_limits,
            rate_limits=defined,
            template=template.name,
            substitutions=substitutions,
            messaging_service_sid=sender,
        ),
    )
    v = result.verification
    await service_records.remember_send(
        context.store(request),
        service_sid=service.sid,
        verification_id=v.id,
        send_number=v.sends,
        e164=v.to,
        ttl_ms=int((verifier.rules.code_ttl + verifier.rules.retention) * 1000),
    )
    return JSONResponse(verification_json(v, service, context.base(request)), status_code=201)


def _nothing_pending() -> NotFound:
    # The number is not echoed: it is the caller's own input, and error messages can reach logs.
    return NotFound("no verification with this sid, nor a pending one to this number", field="Sid")


async def _pending_to(request: Request, service: Service, raw: str) -> str:
    """The sid of the service's pending verification to the number ``raw``; anything that is not
    a number (letters make it a sid, and a malformed one) or has nothing pending is Twilio's 404."""
    if any(c.isalpha() for c in raw):
        raise _nothing_pending()
    try:
        phone = parse(raw, default_region=context.default_region(request), field="Sid")
    except InvalidInput:
        raise _nothing_pending() from None
    vid = await service_records.latest_verification(context.store(request), service.sid, phone.e164)
    if vid is None:
        raise _nothing_pending()
    try:
        # Caller(service): the Verifier also refuses a record another service owns.
        latest = await context.verifier(request).fetch(vid, Caller(service.sid))
    except NotFound:
        raise _nothing_pending() from None
    if latest.status != PENDING or latest.to != phone.e164:
        raise _nothing_pending()
    return vid


async def _verification_sid(request: Request, service: Service) -> str:
    sid = str(request.path_params["Sid"])
    if keyspace.VERIFICATION_ID.fullmatch(sid):
        return sid
    return await _pending_to(request, service, sid)


def gone(v: Verification) -> NotFound:
    return NotFound(f"verification {v.id} is {v.status}", field="VerificationSid")


async def fetch_verification(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account)
    v = await context.verifier(request).fetch(await _verification_sid(request, service), Caller(service.sid))
    # Twilio forgets a verification once it is approved, expired or canceled.
    if v.status in (APPROVED, EXPIRED, CANCELED):
        raise gone(v)
    return JSONResponse(verification_json(v, service, context.base(request)))


async def update_verification(request: Request) -> Response:
    account = await context.account(request)
    service = await context.service(request, account)
    sid = await _verification_sid(request, service)
    status = forms.required(await forms.form(request), "Status")
    if status not in ("canceled", "approved"):
        raise InvalidInput("must be canceled or approved", field="Status")
    verifier = context.verifier(request)
    caller = Caller(service.sid)
    v = await (verifier.cancel(sid, caller) if status == "canceled" else verifier.approve(sid, caller))
    return JSONResponse(verification_json(v, service, context.base(request)))
