"""The native JSON API (``/v1``): parse, call the Verifier, shape the answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from otp.core import tokens
from otp.core.ipaddr import parse_ip
from otp.core.phone import mask, parse
from otp.core.verification import Caller, CheckResult, SendAttempt, Verification, Verifier
from otp.errors import Forbidden, InvalidInput
from otp.web.body import Field, json_body

LOCALE = re.compile(r"[a-z]{2}(-[A-Za-z]{2,4})?")  # used with fullmatch: "$" would allow a newline
CODE = re.compile(r"[0-9]{4,10}")
CHANNELS = ("sms",)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def send_attempt_json(attempt: SendAttempt) -> dict[str, Any]:
    delivery = dict(attempt.delivery)
    if "updated_at" in delivery:
        delivery["updated_at"] = iso(delivery["updated_at"] / 1000)
    return {
        "at": iso(attempt.at),
        "channel": attempt.channel,
        "sent_at": iso(attempt.sent_at),
        "tries": attempt.tries,
        "last_error": attempt.last_error,
        "message_sid": attempt.message_sid,
        "segments": attempt.segments,
        "price": attempt.price,
        "price_unit": attempt.price_unit,
        "delivery": delivery,
    }


def verification_json(v: Verification) -> dict[str, Any]:
    return {
        "id": v.id,
        "status": v.status,
        "to": mask(v.to),
        "channel": v.channel,
        "locale": v.locale or None,
        "created_at": iso(v.created_at),
        "updated_at": iso(v.updated_at),
        "expires_at": iso(v.expires_at),
        "approved_at": iso(v.approved_at),
        "attempts": v.attempts,
        "attempts_left": v.attempts_left,
        "max_attempts": v.max_attempts,
        "send_attempts": [send_attempt_json(a) for a in v.send_attempts],
    }


def check_json(result: CheckResult) -> dict[str, Any]:
    v = result.verification
    body: dict[str, Any] = {
        "id": v.id,
        "status": result.status,
        "approved": result.approved,
        "attempts_left": v.attempts_left,
        "delivery": v.latest_delivery,
    }
    if body["delivery"] and "updated_at" in body["delivery"]:
        body["delivery"] = {**body["delivery"], "updated_at": iso(body["delivery"]["updated_at"] / 1000)}
    if result.token:
        body["token"] = result.token
    return body


def _verifier(request: Request) -> Verifier:
    verifier: Verifier = request.app.state.verifier
    return verifier


async def _caller(request: Request, ip: str = "") -> Caller:
    key = await request.app.state.keys.authenticate(request.headers.get("authorization"))
    return Caller(key_id=key.key_id, admin=key.admin, ip=ip)


def _ip(value: str | None) -> str:
    return "" if value is None else parse_ip(value, field="ip")


START_FIELDS = {
    "to": Field(str, required=True, max_length=64),
    "channel": Field(str, max_length=16),
    "locale": Field(str, max_length=16),
    "ip": Field(str, max_length=64),
    "risk_check": Field(str, max_length=16),
}


async def start(request: Request) -> JSONResponse:
    caller = await _caller(request)
    data = await json_body(request, START_FIELDS)
    phone = parse(data["to"], default_region=request.app.state.settings.default_region)
    channel = data.get("channel", "sms")
    if channel not in CHANNELS:
        raise InvalidInput(f"must be one of: {', '.join(CHANNELS)}", field="channel", code="unsupported_channel")
    locale = data.get("locale", "")
    if locale and not LOCALE.fullmatch(locale):
        raise InvalidInput("must be a language tag like en or pt-BR", field="locale")
    risk_check = data.get("risk_check", "enable")
    if risk_check not in ("enable", "disable"):
        raise InvalidInput("must be enable or disable", field="risk_check")
    if risk_check == "disable" and not caller.admin:
        raise Forbidden("only admin keys may disable the fraud checks", field="risk_check", code="forbidden")
    caller = Caller(caller.key_id, caller.admin, _ip(data.get("ip")))
    result = await _verifier(request).start(
        phone, caller, channel=channel, locale=locale, risk_check=risk_check == "enable"
    )
    return JSONResponse(verification_json(result.verification), status_code=201)


CHECK_FIELDS = {
    "id": Field(str, max_length=64),
    "to": Field(str, max_length=64),
    "code": Field(str, required=True, max_length=32),
}


async def check(request: Request) -> JSONResponse:
    caller = await _caller(request)
    data = await json_body(request, CHECK_FIELDS)
    if not CODE.fullmatch(data["code"]):
        raise InvalidInput("must be 4 to 10 digits", field="code")
    if "id" not in data and "to" not in data:
        raise InvalidInput("give either id or to", field="id", code="missing_field")
    phone = parse(data["to"], default_region=request.app.state.settings.default_region) if "to" in data else None
    result = await _verifier(request).check(data["code"], caller, verification_id=data.get("id", ""), phone=phone)
    return JSONResponse(check_json(result))


async def fetch(request: Request) -> JSONResponse:
    caller = await _caller(request)
    verification = await _verifier(request).fetch(request.path_params["id"], caller)
    return JSONResponse(verification_json(verification))


async def cancel(request: Request) -> JSONResponse:
    caller = await _caller(request)
    await json_body(request, {}, optional_body=True)
    verification = await _verifier(request).cancel(request.path_params["id"], caller)
    return JSONResponse(verification_json(verification))


TOKEN_FIELDS = {
    "token": Field(str, required=True, max_length=4096),
    "max_age": Field(int),
    "consume": Field(bool),
}


async def verify_token(request: Request) -> JSONResponse:
    """A token verifies for the API key whose check earned it (admin keys: any); ``max_age`` may
    only tighten OTP_TOKEN_MAX_AGE; ``consume`` makes this the token's one use."""
    caller = await _caller(request)
    data = await json_body(request, TOKEN_FIELDS)
    settings = request.app.state.settings
    cap = max(1, int(settings.token_max_age))
    max_age = data.get("max_age", cap)
    if not 1 <= max_age <= cap:
        raise InvalidInput(f"must be between 1 and {cap} seconds (OTP_TOKEN_MAX_AGE)", field="max_age")
    try:
        approval = await tokens.redeem(
            data["token"],
            marks=request.app.state.store,
            secret_keys=settings.secret_keys,
            max_age=max_age,
            lifetime=cap,
            now=_verifier(request).clock(),
            key_id=None if caller.admin else caller.key_id,
            consume=data.get("consume", False),
        )
    except InvalidInput as exc:
        return JSONResponse({"valid": False, "reason": exc.code})
    return JSONResponse(
        {
            "valid": True,
            "verification_id": approval.verification_id,
            "number_hash": approval.number_hash,
            "approved_at": iso(approval.approved_at),
        }
    )


class VerificationIdConvertor(Convertor[str]):
    """Only ids match ``{id:ve}``, so ``GET /v1/verifications/check`` is a 405, not a bad id."""

    regex = "VE[0-9a-f]{32}"

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
]
