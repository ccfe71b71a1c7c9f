"""The native JSON API (``/v1``), and the JWKS its approval tokens verify against: parse, call the
Verifier, shape the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otp import delivery_errors
from otp.core import attempts, messages, validators
from otp.core.audit import iso_ms
from otp.core.phone import mask, parse
from otp.core.verification import Caller, CheckResult, SendAttempt, StartOptions, Verification, Verifier
from otp.errors import Forbidden, InvalidInput
from otp.web import models
from otp.web.body import read_model
from otp.web.models import render

# Still imported by verify_v2 until it calls the validators itself.
CHANNELS = ("sms",)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_info(code: int | str | None) -> models.DeliveryErrorInfo | None:
    found = delivery_errors.lookup(code)
    if found is None:
        return None
    return models.DeliveryErrorInfo(
        code=found.code,
        title=found.title,
        meaning=found.meaning,
        retry_helps=found.retry,
        action=found.action,
        more_info=found.more_info,
    )


def _delivery(delivery: dict[str, Any]) -> models.Delivery:
    updated = delivery.get("updated_at")
    return models.Delivery(
        status=delivery["status"],
        updated_at=None if updated is None else iso(updated / 1000),
        error_code=delivery.get("error_code"),
        error_message=delivery.get("error_message"),
        error=error_info(delivery.get("error_code")),
    )


def timeline_model(attempt: SendAttempt) -> models.Timeline:
    moments = {state: iso_ms(ms) for state, ms in attempts.timeline(attempt).items() if state in _TIMELINE_FIELDS}
    return models.Timeline(**moments, time_to_delivered_ms=attempts.time_to_delivered_ms(attempt))


_TIMELINE_FIELDS = frozenset(models.Timeline.__struct_fields__) - {"time_to_delivered_ms"}


def send_attempt_model(attempt: SendAttempt) -> models.SendAttempt:
    return models.SendAttempt(
        at=iso(attempt.at),
        channel=attempt.channel,
        sent_at=iso(attempt.sent_at),
        tries=attempt.tries,
        last_error=attempt.last_error,
        message_sid=attempt.message_sid,
        segments=attempt.segments,
        price=attempt.price,
        price_unit=attempt.price_unit,
        delivery=_delivery(attempt.delivery),
        timeline=timeline_model(attempt),
        country=attempt.country,
        sender=attempt.sender,
        queued_at_sender=attempt.queued_at_sender,
    )


def verification_model(v: Verification) -> models.Verification:
    return models.Verification(
        id=v.id,
        status=v.status,
        to=mask(v.to),
        channel=v.channel,
        locale=v.locale or None,
        created_at=iso(v.created_at),
        updated_at=iso(v.updated_at),
        expires_at=iso(v.expires_at),
        approved_at=iso(v.approved_at),
        attempts=v.attempts,
        attempts_left=v.attempts_left,
        max_attempts=v.max_attempts,
        send_attempts=[send_attempt_model(a) for a in v.send_attempts],
    )


def check_model(result: CheckResult) -> models.CheckResult:
    v = result.verification
    return models.CheckResult(
        id=v.id,
        status=result.status,
        approved=result.approved,
        attempts_left=v.attempts_left,
        delivery=_delivery(v.latest_delivery) if v.latest_delivery else None,
        token=result.token or None,
    )


def _verifier(request: Request) -> Verifier:
    verifier: Verifier = request.app.state.verifier
    return verifier


async def _caller(request: Request, ip: str = "") -> Caller:
    key = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    return Caller(key_id=key.key_id, admin=key.admin, ip=ip)


def _template(body: models.StartRequest) -> tuple[messages.Template, dict[str, str]]:
    """The SMS template by its name (otp.core.messages.CATALOGUE) and its variables' values."""
    name = body.template or messages.VERIFICATION
    template = messages.CATALOGUE.get(name)
    if template is None:
        raise InvalidInput(f"must be one of: {', '.join(messages.CATALOGUE)}", field="template")
    return template, messages.validate_substitutions(template, body.substitutions or {}, "substitutions")


async def start(request: Request) -> Response:
    caller = await _caller(request)
    body = await read_model(request, models.StartRequest)
    phone = parse(body.to, default_region=request.app.state.settings.default_region)
    channel = "sms" if body.channel is None else body.channel
    if channel not in CHANNELS:
        raise InvalidInput(f"must be one of: {', '.join(CHANNELS)}", field="channel", code="unsupported_channel")
    locale = validators.locale(body.locale or "", "locale")
    risk_check = validators.risk_check("enable" if body.risk_check is None else body.risk_check, "risk_check")
    if not risk_check and not caller.admin:
        raise Forbidden("only admin keys may disable the fraud checks", field="risk_check", code="forbidden")
    ip = "" if body.ip is None else validators.ip(body.ip, "ip")
    caller = Caller(caller.key_id, caller.admin, ip)
    app_hash = "" if body.app_hash is None else messages.validate_app_hash(body.app_hash, "app_hash")
    template, substitutions = _template(body)
    options = StartOptions(
        channel=channel,
        locale=locale,
        risk_check=risk_check,
        app_hash=app_hash,
        template=template.name,
        substitutions=substitutions,
    )
    result = await _verifier(request).start(phone, caller, options)
    return render(verification_model(result.verification), status_code=201)


async def check(request: Request) -> Response:
    caller = await _caller(request)
    body = await read_model(request, models.CheckRequest)
    code = validators.code(body.code, "code")
    if body.id is None and body.to is None:
        raise InvalidInput("give either id or to", field="id", code="missing_field")
    region = request.app.state.settings.default_region
    phone = None if body.to is None else parse(body.to, default_region=region)
    if body.ip is not None:
        caller = Caller(caller.key_id, caller.admin, validators.ip(body.ip, "ip"))
    result = await _verifier(request).check(code, caller, verification_id=body.id or "", phone=phone)
    return render(check_model(result))


async def fetch(request: Request) -> Response:
    caller = await _caller(request)
    verification = await _verifier(request).fetch(request.path_params["id"], caller)
    return render(verification_model(verification))


async def cancel(request: Request) -> Response:
    caller = await _caller(request)
    await read_model(request, models.CancelRequest, optional_body=True)
    verification = await _verifier(request).cancel(request.path_params["id"], caller)
    return render(verification_model(verification))


async def verify_token(request: Request) -> Response:
    """A token verifies for the API key whose check earned it (admin keys: any); ``max_age`` may
    only tighten OTP_TOKEN_MAX_AGE; ``consume`` makes this the token's one use."""
    caller = await _caller(request)
    body = await read_model(request, models.TokenVerifyRequest)
    settings = request.app.state.settings
    cap = max(1, int(settings.token_max_age))
    max_age = cap if body.max_age is None else body.max_age
    if not 1 <= max_age <= cap:
        raise InvalidInput(f"must be between 1 and {cap} seconds (OTP_TOKEN_MAX_AGE)", field="max_age")
    verifier = _verifier(request)
    try:
        approval = await verifier.tokens.redeem(
            body.token,
            marks=request.app.state.store,
            max_age=max_age,
            now=verifier.clock(),
            key_id=None if caller.admin else caller.key_id,
            consume=bool(body.consume),
        )
    except InvalidInput as exc:
        return render(models.TokenResult(valid=False, reason=exc.code))
    return render(
        models.TokenResult(
            valid=True,
            verification_id=approval.verification_id,
            number_hash=approval.number_hash,
            approved_at=iso(approval.approved_at),
        )
    )


# How long a JWKS may be cached: a token signed by a key newer than a verifier's copy names an
# unknown kid, which JWKS clients (PyJWT's PyJWKClient, jose's createRemoteJWKSet) refetch on.
JWKS_CACHE = "public, max-age=300"


async def jwks(request: Request) -> Response:
    """The public keys approval tokens are signed with (RFC 7517), for verifying them offline:
    no API key needed, nothing secret in it."""
    return JSONResponse(_verifier(request).tokens.jwks(), headers={"Cache-Control": JWKS_CACHE})


class VerificationIdConvertor(Convertor[str]):
    """Only ids match ``{id:ve}``, so ``GET /v1/verifications/check`` is a 405, not a bad id."""

    regex = models.VERIFICATION_ID

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("ve", VerificationIdConvertor())

routes = [
    Route("/v1/verifications", start, methods=["POST"]),
    Route("/v1/verifications/check", check, methods=["POST"]),
    Route("/v1/verifications/{id:ve}", fetch, methods=["GET"]),
    Route("/v1/verifications/{id:ve}/cancel", cancel, methods=["POST"]),
    Route("/v1/tokens/verify", verify_token, methods=["POST"]),
    Route("/.well-known/jwks.json", jwks, methods=["GET"]),
]
