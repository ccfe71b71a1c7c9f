"""The Twilio Verify v2-compatible API (``/v2``): Twilio's SDKs, pointed at otp, work unchanged.

A thin adapter over the same Verifier as ``/v1``: form-encoded requests in, Twilio's JSON out,
HTTP Basic with an account SID and auth token (``otp keys create NAME --twilio``). Each Verify
*service* (``otp.services``) is a tenant: the Verifier sees ``Caller(key_id=<VA sid>)``, so a
service has its own verifications, pending pointers and per-key send limit; a service belongs to
the account that created it and is invisible (404) to every other.

Every error leaves through ``error_response`` (via ``twilio_endpoint``): Twilio's body ``{code,
message, more_info, status}`` with Twilio's codes (tables ``BY_CODE``, ``BY_STATUS``), never the
native ``/v1`` body.

Start parameters for channels or features otp doesn't run (CustomMessage, SendDigits, AppHash,
TemplateSid, TemplateCustomSubstitutions, Templates, ChannelConfiguration, EnableSnaClientToken)
are accepted and ignored, like any unknown parameter, as Twilio ignores them for SMS. Tags are
validated and not kept. Amount and Payee (PSD2) are refused: accepting them would promise a
transaction-bound check otp doesn't make. ``Status=approved`` approves out of band (audited).

Verification attempts (``/v2/Attempts``) are the sends of the account's verifications, read from
the audit log (``started``/``resent`` events, newest first) and completed from each verification
(conversion, delivery, price) while it is retained. Their sids are derived from (verification,
send number); ``GET /v2/Attempts/{Sid}`` finds one through a lookup written at each send.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from otp.core import audit, messages, services
from otp.core.apikeys import ApiKey
from otp.core.ipaddr import parse_ip
from otp.core.phone import Phone, parse, parse_e164
from otp.core.services import STORAGE_ERRORS, Service
from otp.core.validators import whole_number
from otp.core.verification import (
    APPROVED,
    CANCELED,
    EXPIRED,
    MAX_ATTEMPTS,
    PENDING,
    Caller,
    SendAttempt,
    Verification,
    Verifier,
)
from otp.errors import Forbidden, InvalidInput, NotFound, OtpError, RateLimited, Unauthorized, Unavailable
from otp.storage import keys as keyspace
from otp.storage.store import Store
from otp.web.body import is_utf8, loads_strict, read_limited, utf8_safe
from otp.web.v1 import CODE, LOCALE, iso

log = logging.getLogger("otp.twilio_compat")

Endpoint = Callable[[Request], Awaitable[Response]]

ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
DESTINATION_PREFIX = re.compile(r"^\+[0-9]{1,15}$")
COUNTRY = re.compile(r"^[A-Za-z]{2}$")
RATE_LIMIT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ATTEMPT_CHANNELS = ("sms", "call", "email", "whatsapp", "rbm")
SEND_EVENTS = ("started", "resent")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_FORM_FIELDS = 100
MAX_RATE_LIMITS = 10
MAX_TAGS = 10
# A page of attempts filtered on the verification (Status, DestinationPrefix) reads up to this
# many verifications (or its PageSize) before it ends short, with a PageToken to go on.
LIST_BATCH = 200
FETCH_CONCURRENCY = 64
# Our field names → Twilio's, for errors raised below the adapter (the Verifier, otp.phone).
TWILIO_FIELDS = {
    "to": "To",
    "id": "VerificationSid",
    "code": "Code",
    "ip": "DeviceIp",
    "channel": "Channel",
    "locale": "Locale",
    "risk_check": "RiskCheck",
}
# An adapter-level refusal: the check came after the verification's last allowed attempt.
CHECKS_EXHAUSTED = "max_check_attempts_reached"


# -- errors: the one place otp errors become Twilio's ---------------------------------------------


@dataclass(frozen=True)
class TwilioError:
    status: int
    code: int
    title: str


BLOCKED = TwilioError(403, 60410, "Verification delivery attempt blocked (suspected SMS pumping)")
BY_CODE: Mapping[str, TwilioError] = {
    "max_sends_reached": TwilioError(429, 60203, "Max send attempts reached"),
    CHECKS_EXHAUSTED: TwilioError(429, 60202, "Max check attempts reached"),
    "number_type_not_allowed": TwilioError(403, 60205, "SMS is not supported by landline phone number"),
    "prefix_blocked": BLOCKED,
    "country_blocked": BLOCKED,
    "pumping_unverified_hourly": BLOCKED,
    "pumping_unverified_daily": BLOCKED,
    "country_not_allowed": TwilioError(403, 60605, "Verification delivery attempt blocked (geo permissions)"),
    "not_found": TwilioError(404, 20404, "The requested resource was not found"),
    "not_pending": TwilioError(404, 20404, "The requested resource was not found"),
    "already_approved": TwilioError(404, 20404, "The requested resource was not found"),
    "method_not_allowed": TwilioError(405, 20004, "Method not allowed"),
}
# Everything else by HTTP status: our other rate limits (number, IP, key, custom, cooldown, failed
# checks) are Twilio's generic 20429; any bad input is 60200 naming the parameter.
BY_STATUS: Mapping[int, TwilioError] = {
    400: TwilioError(400, 60200, "Invalid parameter"),
    401: TwilioError(401, 20003, "Authenticate"),
    403: TwilioError(403, 20403, "Forbidden"),
    404: TwilioError(404, 20404, "The requested resource was not found"),
    408: TwilioError(408, 60200, "Invalid parameter"),
    409: TwilioError(409, 20409, "Conflict"),
    413: TwilioError(413, 60200, "Invalid parameter"),
    415: TwilioError(415, 60200, "Invalid parameter"),
    429: TwilioError(429, 20429, "Too Many Requests"),
    503: TwilioError(503, 20503, "Service Unavailable"),
}
INTERNAL = TwilioError(500, 20500, "Internal Server Error")


def twilio_error(exc: OtpError) -> TwilioError:
    return BY_CODE.get(exc.code) or BY_STATUS.get(exc.status) or TwilioError(exc.status, 20500, "Error")


def _message(error: TwilioError, exc: OtpError) -> str:
    if error.code == 60200:
        field = TWILIO_FIELDS.get(exc.field or "", exc.field)
        return f"Invalid parameter `{field}`: {exc.message}" if field else f"Invalid parameter: {exc.message}"
    return f"{error.title}: {exc.message}" if exc.message else error.title


def _body(error: TwilioError, message: str) -> dict[str, Any]:
    return {
        "code": error.code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{error.code}",
        "status": error.status,
    }


def error_response(exc: OtpError) -> JSONResponse:
    error = twilio_error(exc)
    headers: dict[str, str] = {}
    if exc.retry_after is not None and error.status in (429, 503):
        headers["Retry-After"] = str(exc.retry_after)
    if error.status == 503:
        headers.setdefault("Retry-After", "1")
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="otp"'
    # Escaped if UTF-8 can't carry it (a lone surrogate in a field name), or rendering would fail.
    return JSONResponse(_body(error, utf8_safe(_message(error, exc))), status_code=error.status, headers=headers)


def twilio_endpoint(handler: Endpoint) -> Endpoint:
    """Every /v2 answer, failures included, in Twilio's shape: nothing reaches the app's native
    error handlers."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except OtpError as exc:
            return error_response(exc)
        except STORAGE_ERRORS as exc:
            log.warning("storage error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
            return error_response(Unavailable("storage is unavailable; retry shortly", retry_after=1))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return JSONResponse(_body(INTERNAL, INTERNAL.title), status_code=500)

    return endpoint


# -- request plumbing -----------------------------------------------------------------------------


def _verifier(request: Request) -> Verifier:
    verifier: Verifier = request.app.state.verifier
    return verifier


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _partitions(request: Request) -> int:
    return int(request.app.state.store.partitions)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _account(request: Request) -> ApiKey:
    try:
        key: ApiKey = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    except Unauthorized as exc:
        # The key checker speaks /v1 ("send Bearer otpk_…"); a Twilio client needs Basic.
        raise Unauthorized(
            f"send HTTP Basic credentials: an account SID and its auth token ({exc.message})", field="Authorization"
        ) from None
    if not ACCOUNT_SID.match(key.key_id):
        # An otpk_ key of /v1 has no account SID to own services with.
        raise Unauthorized("use an account SID and auth token (otp keys create NAME --twilio)", field="Authorization")
    return key


async def _service(request: Request, account: ApiKey, param: str = "ServiceSid") -> Service:
    sid = request.path_params[param]
    service = await services.get(_store(request), sid)
    # Another account's service answers exactly like a missing one.
    if service is None or service.account_sid != account.key_id:
        raise NotFound(f"no service {sid} in this account", field=param)
    return service


async def _form(request: Request) -> dict[str, str]:
    """The form-encoded body, parsed with the stdlib (no python-multipart), 16 KiB at most."""
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
    form: dict[str, str] = {}
    for name, value in pairs:
        if not is_utf8(name):
            # Named as it was sent: the same bytes, percent-encoded again.
            field = quote(name, safe="", encoding="utf-8", errors="surrogateescape")
            raise InvalidInput("is not UTF-8 once percent-decoded", field=field)
        if not is_utf8(value):
            raise InvalidInput("is not UTF-8 once percent-decoded", field=name)
        # One value per parameter: a second one would make "which one counts" a guess.
        if name in form:
            raise InvalidInput("is given more than once", field=name)
        form[name] = value
    return form


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value.strip():
        raise InvalidInput("is required", field=name, code="missing_field")
    return value.strip()


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "").strip()
    return whole_number(raw, field=name, low=low, high=high) if raw else default


def _json_object(raw: str, field: str) -> dict[str, Any]:
    # Strict: a key given twice, NaN or an over-long integer is refused naming it (Tags.a).
    value = loads_strict(raw, field)
    if not isinstance(value, dict):
        raise InvalidInput("must be a JSON object", field=field)
    return value


# -- shaping --------------------------------------------------------------------------------------


def service_json(service: Service, base: str) -> dict[str, Any]:
    s = service
    url = f"{base}/v2/Services/{s.sid}"
    origins = s.text("Passkeys.RelyingParty.Origins")
    return {
        "sid": s.sid,
        "account_sid": s.account_sid,
        "friendly_name": s.friendly_name,
        "code_length": s.code_length,
        "lookup_enabled": s.flag("LookupEnabled"),
        "psd2_enabled": s.flag("Psd2Enabled"),
        "skip_sms_to_landlines": s.flag("SkipSmsToLandlines"),
        "dtmf_input_required": s.text("DtmfInputRequired") != "false",  # Twilio's default is true
        "tts_name": s.text("TtsName"),
        "do_not_share_warning_enabled": s.flag("DoNotShareWarningEnabled"),
        "custom_code_enabled": s.custom_code_enabled,
        "push": {
            "include_date": s.flag("Push.IncludeDate"),
            "apn_credential_sid": s.text("Push.ApnCredentialSid"),
            "fcm_credential_sid": s.text("Push.FcmCredentialSid"),
        },
        "totp": {
            "issuer": s.text("Totp.Issuer") or s.friendly_name,
            "time_step": s.integer("Totp.TimeStep") or 30,
            "code_length": s.integer("Totp.CodeLength") or 6,
            "skew": s.integer("Totp.Skew") if s.integer("Totp.Skew") is not None else 1,
        },
        "default_template_sid": s.text("DefaultTemplateSid"),
        "whatsapp": {"msg_service_sid": s.text("Whatsapp.MsgServiceSid"), "from": s.text("Whatsapp.From")},
        "passkeys": {
            "relying_party": {
                "id": s.text("Passkeys.RelyingParty.Id"),
                "name": s.text("Passkeys.RelyingParty.Name"),
                "origins": [o.strip() for o in origins.split(",") if o.strip()] if origins else None,
            },
            "authenticator_attachment": s.text("Passkeys.AuthenticatorAttachment"),
            "discoverable_credentials": s.text("Passkeys.DiscoverableCredentials"),
            "user_verification": s.text("Passkeys.UserVerification"),
        },
        "verify_event_subscription_enabled": s.flag("VerifyEventSubscriptionEnabled"),
        "date_created": iso(s.created_at),
        "date_updated": iso(s.updated_at),
        "url": url,
        # Only the sub-resources this server answers.
        "links": {"verifications": f"{url}/Verifications", "verification_checks": f"{url}/VerificationCheck"},
    }


CARRIER_TYPES = {"mobile": "mobile", "fixed_line": "landline", "voip": "voip"}


def _lookup(service: Service, e164: str) -> dict[str, Any]:
    """What ``phonenumbers`` knows offline; no carrier database behind it."""
    if not service.flag("LookupEnabled"):
        return {}
    return {
        "carrier": {
            "error_code": None,
            "name": None,
            "mobile_country_code": None,
            "mobile_network_code": None,
            "type": CARRIER_TYPES.get(parse_e164(e164).number_type),
        }
    }


def verification_json(v: Verification, service: Service, base: str) -> dict[str, Any]:
    # ``to`` in full: the service's owner gave it to us, and Twilio's contract returns it.
    return {
        "sid": v.id,
        "service_sid": service.sid,
        "account_sid": service.account_sid,
        "to": v.to,
        "channel": v.channel,
        "status": v.status,
        "valid": v.status == APPROVED,
        "lookup": _lookup(service, v.to),
        "amount": None,
        "payee": None,
        "send_code_attempts": [
            {"attempt_sid": services.attempt_sid(v.id, a.number), "channel": a.channel, "time": iso(a.at)}
            for a in v.send_attempts
        ],
        "date_created": iso(v.created_at),
        "date_updated": iso(v.updated_at),
        "sna": None,
        "url": f"{base}/v2/Services/{service.sid}/Verifications/{v.id}",
    }


def check_json(v: Verification, status: str, approved: bool, service: Service) -> dict[str, Any]:
    return {
        "sid": v.id,
        "service_sid": service.sid,
        "account_sid": service.account_sid,
        "to": v.to,
        "channel": v.channel,
        "status": status,
        "valid": approved,
        "amount": None,
        "payee": None,
        "date_created": iso(v.created_at),
        "date_updated": iso(v.updated_at),
        "sna_attempts_error_codes": [],
    }


def _page_url(base_url: str, params: Mapping[str, str], page_size: int, page: int, token: str | None) -> str:
    query = {k: v for k, v in params.items() if k not in ("PageSize", "Page", "PageToken")}
    query.update({"PageSize": str(page_size), "Page": str(page)})
    if token:
        query["PageToken"] = token
    return f"{base_url}?{urlencode(query)}"


def _meta(
    request: Request,
    key: str,
    page: int,
    page_size: int,
    *,
    previous: str | None,
    current: str | None,
    following: str | None,
) -> dict[str, Any]:
    """Twilio's list envelope; ``previous``/``current``/``following`` are page tokens ("" for the
    first page, None for none)."""
    base_url = f"{_base(request)}{request.url.path}"
    params = dict(request.query_params)

    def url(page_index: int, token: str | None) -> str:
        return _page_url(base_url, params, page_size, page_index, token)

    return {
        "page": page,
        "page_size": page_size,
        "first_page_url": url(0, None),
        "previous_page_url": url(page - 1, previous) if previous is not None and page > 0 else None,
        "url": url(page, current),
        "next_page_url": url(page + 1, following) if following is not None else None,
        "key": key,
    }


# -- services -------------------------------------------------------------------------------------


def _now(request: Request) -> float:
    return _verifier(request).clock()


async def create_service(request: Request) -> Response:
    account = await _account(request)
    params = services.validate(await _form(request), creating=True)
    service = await services.create(_store(request), account.key_id, params, now=_now(request))
    return JSONResponse(service_json(service, _base(request)), status_code=201)


async def fetch_service(request: Request) -> Response:
    account = await _account(request)
    service = await _service(request, account, "Sid")
    return JSONResponse(service_json(service, _base(request)))


async def update_service(request: Request) -> Response:
    account = await _account(request)
    service = await _service(request, account, "Sid")
    params = services.validate(await _form(request), creating=False)
    service = await services.update(_store(request), service, params, now=_now(request))
    return JSONResponse(service_json(service, _base(request)))


async def delete_service(request: Request) -> Response:
    account = await _account(request)
    service = await _service(request, account, "Sid")
    await services.delete(_store(request), service)
    return Response(status_code=204)


async def list_services(request: Request) -> Response:
    account = await _account(request)
    q = request.query_params
    page_size = _int_param(q, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _int_param(q, "Page", 0, 0, 1_000_000)
    found, total = await services.list_for_account(
        _store(request), account.key_id, offset=page * page_size, count=page_size
    )
    more = (page + 1) * page_size < total
    meta = _meta(request, "services", page, page_size, previous="", current="", following="" if more else None)
    return JSONResponse({"services": [service_json(s, _base(request)) for s in found], "meta": meta})


# -- verifications --------------------------------------------------------------------------------


def _refuse_psd2(form: Mapping[str, str]) -> None:
    # Accepting them would promise a transaction-bound (PSD2) check that otp doesn't make.
    for name in ("Amount", "Payee"):
        if name in form:
            raise InvalidInput("PSD2 transaction parameters are not supported by this server", field=name)


def _rate_limits(raw: str | None) -> dict[str, str]:
    if raw is None:
        return {}
    limits = _json_object(raw, "RateLimits")
    if len(limits) > MAX_RATE_LIMITS:
        raise InvalidInput(f"may name at most {MAX_RATE_LIMITS} limits", field="RateLimits")
    out: dict[str, str] = {}
    for name, value in limits.items():
        if not RATE_LIMIT_NAME.match(name):
            raise InvalidInput("keys must be 1 to 64 letters, digits or _ . -", field="RateLimits")
        if isinstance(value, bool) or not isinstance(value, str | int) or not 0 < len(str(value)) <= 128:
            raise InvalidInput("values must be strings or integers of 1 to 128 characters", field="RateLimits")
        out[name] = str(value)
    return out


def _tags(raw: str | None) -> None:
    """Validated, then not kept: otp has no per-verification metadata to report them in."""
    if raw is None:
        return
    tags = _json_object(raw, "Tags")
    if len(tags) > MAX_TAGS or not all(isinstance(v, str) and len(v) <= 256 for v in tags.values()):
        raise InvalidInput(f"must map at most {MAX_TAGS} names to strings", field="Tags")


def _device_ip(raw: str | None) -> str:
    return parse_ip(raw, field="DeviceIp") if raw else ""


def _custom_code(service: Service, raw: str | None) -> str | None:
    if raw is None:
        return None
    if not service.custom_code_enabled:
        raise InvalidInput("custom codes are not enabled for this service (CustomCodeEnabled)", field="CustomCode")
    if not CODE.fullmatch(raw):
        raise InvalidInput("must be 4 to 10 digits", field="CustomCode")
    return raw


def _risk_check(account: ApiKey, raw: str | None) -> bool:
    value = raw or "enable"
    if value not in ("enable", "disable"):
        raise InvalidInput("must be enable or disable", field="RiskCheck")
    if value == "disable" and not account.admin:
        raise Forbidden("only admin accounts may disable the fraud checks", field="RiskCheck")
    return value == "enable"


async def create_verification(request: Request) -> Response:
    account = await _account(request)
    service = await _service(request, account)
    form = await _form(request)
    settings = request.app.state.settings
    phone = parse(_required(form, "To"), default_region=settings.default_region, field="To")
    if _required(form, "Channel") != "sms":
        raise InvalidInput("only sms is supported by this server", field="Channel")
    locale = form.get("Locale", "").strip()
    if locale and not LOCALE.fullmatch(locale):
        raise InvalidInput("must be a language tag like en or pt-BR", field="Locale")
    # Whichever name goes into the SMS passes the one rule: a service saved before it (or written
    # around the API) is refused naming FriendlyName, for its owner to rename, rather than sent.
    custom_name = form.get("CustomFriendlyName")
    if custom_name:
        app_name = messages.validate_app_name(custom_name, "CustomFriendlyName")
    else:
        try:
            app_name = messages.validate_app_name(service.friendly_name, "FriendlyName")
        except InvalidInput as exc:
            raise InvalidInput(
                f"the service's name cannot go into an SMS ({exc.message}): update the service", field="FriendlyName"
            ) from None
    _refuse_psd2(form)
    _tags(form.get("Tags"))
    verifier = _verifier(request)
    result = await verifier.start(
        phone,
        Caller(key_id=service.sid, admin=False, ip=_device_ip(form.get("DeviceIp"))),
        channel="sms",
        locale=locale,
        risk_check=_risk_check(account, form.get("RiskCheck")),
        code=_custom_code(service, form.get("CustomCode")),
        code_length=service.code_length,
        app_name=app_name,
        custom_limits=_rate_limits(form.get("RateLimits")),
    )
    v = result.verification
    await services.remember_send(
        _store(request),
        service_sid=service.sid,
        verification_id=v.id,
        send_number=v.sends,
        e164=v.to,
        ttl_ms=int((verifier.rules.code_ttl + verifier.rules.retention) * 1000),
    )
    return JSONResponse(verification_json(v, service, _base(request)), status_code=201)


def _verification_sid(request: Request) -> str:
    sid = str(request.path_params["Sid"])
    if not keyspace.VERIFICATION_ID.fullmatch(sid):
        raise NotFound(f"no verification {sid}", field="Sid")
    return sid


def _gone(v: Verification) -> NotFound:
    return NotFound(f"verification {v.id} is {v.status}", field="VerificationSid")


async def fetch_verification(request: Request) -> Response:
    account = await _account(request)
    service = await _service(request, account)
    v = await _verifier(request).fetch(_verification_sid(request), Caller(service.sid))
    # Twilio forgets a verification once it is approved, expired or canceled.
    if v.status in (APPROVED, EXPIRED, CANCELED):
        raise _gone(v)
    return JSONResponse(verification_json(v, service, _base(request)))


async def update_verification(request: Request) -> Response:
    account = await _account(request)
    service = await _service(request, account)
    sid = _verification_sid(request)
    status = _required(await _form(request), "Status")
    if status not in ("canceled", "approved"):
        raise InvalidInput("must be canceled or approved", field="Status")
    verifier = _verifier(request)
    caller = Caller(service.sid)
    v = await (verifier.cancel(sid, caller) if status == "canceled" else verifier.approve(sid, caller))
    return JSONResponse(verification_json(v, service, _base(request)))


def _refuse_finished(v: Verification) -> None:
    if v.status == MAX_ATTEMPTS:
        raise RateLimited("this verification has had all its check attempts", code=CHECKS_EXHAUSTED, field="Code")
    if v.status != PENDING:
        raise _gone(v)


async def _why_nothing_pending(request: Request, service: Service, phone: Phone) -> None:
    """After a check by To found nothing pending: the latest verification of the number may have
    run out of attempts, which Twilio reports as 60202 rather than 404."""
    vid = await services.latest_verification(_store(request), service.sid, phone.e164)
    if vid is None:
        return
    try:
        latest = await _verifier(request).fetch(vid, Caller(service.sid))
    except NotFound:
        return
    if latest.status == MAX_ATTEMPTS and latest.to == phone.e164:
        _refuse_finished(latest)


async def check_verification(request: Request) -> Response:
    account = await _account(request)
    service = await _service(request, account)
    form = await _form(request)
    code = _required(form, "Code")
    if not CODE.fullmatch(code):
        raise InvalidInput("must be 4 to 10 digits", field="Code")
    vid = form.get("VerificationSid", "").strip()
    to = form.get("To", "").strip()
    if not vid and not to:
        raise InvalidInput("give either To or VerificationSid", field="To", code="missing_field")
    if vid and not keyspace.VERIFICATION_ID.fullmatch(vid):
        raise InvalidInput("must be VE followed by 32 hex digits", field="VerificationSid")
    _refuse_psd2(form)
    phone = parse(to, default_region=request.app.state.settings.default_region, field="To") if to else None
    verifier = _verifier(request)
    # Checks are rate-limited per account, not per service: services cost nothing to create.
    caller = Caller(service.sid, account=account.key_id)
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
        raise _gone(result.verification)
    return JSONResponse(check_json(result.verification, status, result.approved, service))


# -- verification attempts ------------------------------------------------------------------------


# Every read of the attempts examines at most audit.DEFAULT_SCAN_LIMIT log entries and reads at
# most this many verifications (a page's worth), so one request never holds Redis up: a list page
# that runs out hands back a PageToken to go on with; a summary that runs out narrows its window.
ATTEMPTS_WINDOW_MS = 30 * 86_400_000  # without DateCreatedAfter: the last 30 days, as Twilio
SUMMARY_MAX_SENDS = 500


@dataclass(frozen=True)
class Attempt:
    """One send of a verification, as Twilio's VerificationAttempt."""

    sid: str
    service_sid: str
    verification_id: str
    number: int
    at: float
    country: str
    verification: Verification | None  # None once past its retention period

    @property
    def send(self) -> SendAttempt | None:
        v = self.verification
        return next((a for a in v.send_attempts if a.number == self.number), None) if v else None

    @property
    def converted(self) -> bool:
        return self.verification is not None and self.verification.status == APPROVED


@dataclass(frozen=True)
class AttemptQuery:
    """``flt`` narrows the log read to sends (only ``started``/``resent`` entries are
    ``decision=allowed``) by time, country, number and, for one service, key; what the audit
    filter can't say (one of several services, one verification) ``sends`` checks on what it
    returns, and what the log doesn't hold (conversion, full number) ``keeps`` checks on the
    verification."""

    flt: audit.AuditFilter
    keys: frozenset[str]
    verification_id: str | None = None
    nothing: bool = False  # a filter nothing can match: another channel, a service not the account's
    status: str | None = None  # converted | unconverted
    prefix: str | None = None

    def sends(self, events: Iterable[audit.AuditEvent]) -> list[audit.AuditEvent]:
        return [
            e
            for e in events
            if e.get("event") in SEND_EVENTS
            and e.get("key") in self.keys
            and (self.verification_id is None or e.get("vid") == self.verification_id)
        ]

    def keeps(self, attempt: Attempt) -> bool:
        if self.status is not None and (attempt.converted != (self.status == "converted")):
            return False
        if self.prefix is not None:
            v = attempt.verification
            return v is not None and v.to.startswith(self.prefix)
        return True


def _date_param(params: Mapping[str, str], name: str) -> int | None:
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


def _sid_param(params: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    raw = params.get(name, "").strip()
    if raw and not pattern.match(raw):
        raise InvalidInput(f"must be {what}", field=name)
    return raw or None


async def _attempt_query(request: Request, account: ApiKey, names: Iterable[str]) -> AttemptQuery:
    """The filters ``names`` of the query string (the spec's, per endpoint)."""
    q = {name: request.query_params.get(name, "") for name in names}
    since, until = _date_param(q, "DateCreatedAfter"), _date_param(q, "DateCreatedBefore")
    country = q.get("Country", "").strip()
    if country and not COUNTRY.match(country):
        raise InvalidInput("must be a two-letter ISO country code", field="Country")
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
        phone = parse(
            q["ChannelData.To"], default_region=request.app.state.settings.default_region, field="ChannelData.To"
        )
        number_hash = _verifier(request).keyring.number_hash(phone.e164)
    service_sid = _sid_param(q, "VerifyServiceSid", services.SERVICE_SID, "VA followed by 32 hex digits")
    vid = _sid_param(q, "VerificationSid", keyspace.VERIFICATION_ID, "VE followed by 32 hex digits")
    keys = await services.sids_for_account(_store(request), account.key_id)
    if service_sid is not None:
        keys = keys & {service_sid}
    if since is None:
        # Twilio's Attempts cover the last 30 days; a window also ends every walk of the log.
        since = int(_verifier(request).clock() * 1000) - ATTEMPTS_WINDOW_MS
    flt = audit.AuditFilter(
        since_ms=since,
        until_ms=until,
        country=country.upper() or None,
        number_hash=number_hash,
        # Inside Redis, so other tenants' sends never cross the wire (nor fill a page).
        key_in=keys,
        decision="allowed",
    )
    nothing = not keys or channel not in ("", "sms")
    return AttemptQuery(flt, keys, vid, nothing=nothing, status=status, prefix=prefix)


async def _fetch_quietly(verifier: Verifier, vid: str, service_sid: str) -> Verification | None:
    try:
        return await verifier.fetch(vid, Caller(service_sid))
    except NotFound:
        return None


async def _attempts_of(request: Request, events: list[audit.AuditEvent]) -> list[Attempt]:
    sends = [
        (e, e.get("vid"), int(e.get("send") or 1))
        for e in events
        if keyspace.VERIFICATION_ID.fullmatch(e.get("vid")) and (e.get("send") or "1").isdigit()
    ]
    owners = {vid: e.get("key") for e, vid, _ in sends}
    verifier = _verifier(request)
    fetched: dict[str, Verification | None] = {}
    pending = list(owners.items())
    for start in range(0, len(pending), FETCH_CONCURRENCY):
        chunk = pending[start : start + FETCH_CONCURRENCY]
        found = await asyncio.gather(*(_fetch_quietly(verifier, vid, owner) for vid, owner in chunk))
        fetched.update(zip((vid for vid, _ in chunk), found, strict=True))
    return [
        Attempt(services.attempt_sid(vid, n), e.get("key"), vid, n, e.ts / 1000, e.get("country"), fetched[vid])
        for e, vid, n in sends
    ]


def _attempt_status(v: Verification | None) -> str:
    if v is None or v.status == EXPIRED:
        return "expired"
    return "confirmed" if v.status == APPROVED else "unconfirmed"


def attempt_json(attempt: Attempt, account_sid: str, base: str) -> dict[str, Any]:
    v, send = attempt.verification, attempt.send
    delivery = send.delivery if send else {}
    updated_ms = delivery.get("updated_at")
    price = {"value": send.price, "currency": (send.price_unit or "USD").lower()} if send and send.price else None
    return {
        "sid": attempt.sid,
        "account_sid": account_sid,
        "service_sid": attempt.service_sid,
        "verification_sid": attempt.verification_id,
        "date_created": iso(attempt.at),
        "date_updated": iso(max(attempt.at, updated_ms / 1000) if updated_ms else attempt.at),
        "conversion_status": "converted" if attempt.converted else "unconverted",
        "channel": "sms",
        "price": price,
        "channel_data": {
            "verification_sid": attempt.verification_id,
            # In full while the verification is retained; the log keeps only the masked number.
            "to": v.to if v else None,
            "status": _attempt_status(v),
            "message_status": delivery.get("status"),
            "error_code": str(delivery["error_code"]) if delivery.get("error_code") else None,
            "country": attempt.country or None,
            "locale": (v.locale or None) if v else None,
            "message_sid": send.message_sid if send else None,
            "segments": send.segments if send else None,
        },
        "url": f"{base}/v2/Attempts/{attempt.sid}",
    }


def _page_token(request: Request) -> str | None:
    raw = request.query_params.get("PageToken", "").strip()
    if not raw:
        return None
    try:
        audit.decode_cursor(raw, _partitions(request))
    except ValueError:
        raise InvalidInput("is not a token from a previous page", field="PageToken") from None
    return raw


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


async def _attempt_page(
    request: Request, query: AttemptQuery, page_size: int, token: str | None
) -> tuple[list[Attempt], str | None]:
    """One page of attempts, newest first, and the PageToken of the next (None: no more). The page
    ends short -- even empty -- with a token when it has examined its share of the log or read a
    page's worth of verifications that filters on them (Status, DestinationPrefix) then dropped."""
    found: list[Attempt] = []
    cursor = token
    budget = audit.DEFAULT_SCAN_LIMIT
    fetches = max(page_size, LIST_BATCH)
    # Without filters on the verification, every send read is on the page: read no more than it needs.
    filtered = query.status is not None or query.prefix is not None
    while budget > 0:
        page = await audit.read_page(
            request.app.state.store,
            query.flt,
            limit=fetches if filtered else page_size - len(found),
            before=cursor,
            scan_limit=budget,
        )
        budget -= page.examined
        sends = query.sends(page.events)
        # In chunks of what the page still needs, so verifications are read for about a page.
        while sends:
            room = min(page_size - len(found), fetches)
            chunk, sends = sends[:room], sends[room:]
            fetches -= len(chunk)
            found.extend(a for a in await _attempts_of(request, chunk) if query.keeps(a))
            if len(found) == page_size or not fetches:
                # Everything at or above the chunk's last send is on this page or filtered out;
                # the next page starts strictly below it, so none is skipped or repeated.
                return found, audit.encode_cursor(chunk[-1].position)
        cursor = page.cursor
        if cursor is None:
            break
    return found, cursor


async def list_attempts(request: Request) -> Response:
    account = await _account(request)
    query = await _attempt_query(request, account, LIST_FILTERS)
    page_size = _int_param(request.query_params, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _int_param(request.query_params, "Page", 0, 0, 1_000_000)
    token = _page_token(request)
    found, following = ([], None) if query.nothing else await _attempt_page(request, query, page_size, token)
    base = _base(request)
    meta = _meta(request, "attempts", page, page_size, previous=None, current=token or "", following=following)
    return JSONResponse({"attempts": [attempt_json(a, account.key_id, base) for a in found], "meta": meta})


async def fetch_attempt(request: Request) -> Response:
    account = await _account(request)
    sid = str(request.path_params["Sid"])
    found = await services.find_attempt(_store(request), sid)
    service = await services.get(_store(request), found[2]) if found else None
    if found is None or service is None or service.account_sid != account.key_id:
        raise NotFound(f"no attempt {sid}", field="Sid")
    vid, number, _ = found
    v = await _verifier(request).fetch(vid, Caller(service.sid))
    send = next((a for a in v.send_attempts if a.number == number), None)
    if send is None:
        raise NotFound(f"no attempt {sid}", field="Sid")
    attempt = Attempt(sid, service.sid, vid, number, send.at, parse_e164(v.to).country, v)
    return JSONResponse(attempt_json(attempt, account.key_id, _base(request)))


def _percentage(part: int, whole: int) -> str | None:
    if not whole:
        return None
    return f"{part * 100 / whole:.9f}".rstrip("0").rstrip(".")


async def attempts_summary(request: Request) -> Response:
    """Twilio's summary has no cursor, so it is one bounded read: the newest matching sends, down
    to DateCreatedAfter (default: 30 days back), examining at most audit.DEFAULT_SCAN_LIMIT log
    entries and reading at most SUMMARY_MAX_SENDS verifications. When either runs out first, the
    figures are exact for a narrower window -- from the newest point every match above which was
    counted -- and the answer says so: ``X-Otp-Summary-Complete: false``, the window counted in
    ``X-Otp-Summary-From`` / ``-Until``, and ``url`` with that window as DateCreatedAfter/Before."""
    account = await _account(request)
    query = await _attempt_query(request, account, SUMMARY_FILTERS)
    total = converted = 0
    start, end = query.flt.since_ms, query.flt.until_ms
    complete = True
    if not query.nothing:
        page = await audit.read_page(
            request.app.state.store,
            query.flt,
            limit=SUMMARY_MAX_SENDS,
            scan_limit=audit.DEFAULT_SCAN_LIMIT,
        )
        sends = query.sends(page.events)
        if page.cursor is not None and page.covered_since is not None:
            complete = False
            start = max(start or 0, page.covered_since)
            # Sends below that point were counted in some partitions only: leave them all out.
            sends = [e for e in sends if e.ts >= start]
        for attempt in await _attempts_of(request, sends):
            if query.keeps(attempt):
                total += 1
                converted += attempt.converted
    end_ms = end if end is not None else int(_verifier(request).clock() * 1000)
    url = f"{_base(request)}/v2/Attempts/Summary"
    if not complete:
        window = {"DateCreatedAfter": audit.iso_ms(start or 0), "DateCreatedBefore": audit.iso_ms(end_ms)}
        kept = {k: v for k, v in request.query_params.items() if k not in window}
        url += "?" + urlencode({**kept, **window})
    headers = {
        "X-Otp-Summary-Complete": "true" if complete else "false",
        "X-Otp-Summary-From": audit.iso_ms(start or 0),
        "X-Otp-Summary-Until": audit.iso_ms(end_ms),
    }
    return JSONResponse(
        {
            "total_attempts": total,
            "total_converted": converted,
            "total_unconverted": total - converted,
            "conversion_rate_percentage": _percentage(converted, total),
            "url": url,
        },
        headers=headers,
    )


# -- routes ---------------------------------------------------------------------------------------


def _route(path: str, handler: Endpoint, method: str) -> Route:
    return Route(path, twilio_endpoint(handler), methods=[method])


routes = [
    _route("/v2/Services", create_service, "POST"),
    _route("/v2/Services", list_services, "GET"),
    _route("/v2/Services/{Sid}", fetch_service, "GET"),
    _route("/v2/Services/{Sid}", update_service, "POST"),
    _route("/v2/Services/{Sid}", delete_service, "DELETE"),
    _route("/v2/Services/{ServiceSid}/Verifications", create_verification, "POST"),
    _route("/v2/Services/{ServiceSid}/Verifications/{Sid}", fetch_verification, "GET"),
    _route("/v2/Services/{ServiceSid}/Verifications/{Sid}", update_verification, "POST"),
    _route("/v2/Services/{ServiceSid}/VerificationCheck", check_verification, "POST"),
    _route("/v2/Attempts", list_attempts, "GET"),
    _route("/v2/Attempts/Summary", attempts_summary, "GET"),  # before {Sid}, which would match it
    _route("/v2/Attempts/{Sid}", fetch_attempt, "GET"),
]


async def _unrouted(request: Request) -> Response:
    """Any other /v2 request: 405 for a known path with another method, else 404, in Twilio's body."""
    if any(route.matches(request.scope)[0] == Match.PARTIAL for route in routes):
        raise OtpError(f"{request.method} is not allowed here", code="method_not_allowed")
    raise NotFound(f"no resource at {request.url.path}")


# Last, so the routes above match first; it keeps the app's native 404/405 bodies off /v2.
routes.append(
    Route(
        "/v2/{rest:path}",
        twilio_endpoint(_unrouted),
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    )
)
