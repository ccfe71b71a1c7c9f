"""The routes: a password form, then the SMS step through otp, then a signed session cookie.

    GET  /signin        the password form          POST /signin       password → otp sends a code
    GET  /code          code entry, delivery state POST /code         otp checks it → signed in
                                                   POST /code/resend  otp sends another code
    GET  /              "signed in as …"           POST /signout      (also Cancel on the code page)

The session is Starlette's: a cookie signed with LOGIN_APP_SECRET (itsdangerous), readable by its
holder but not forgeable, so it holds no secret: the CSRF token, the pending sign-in (username,
otp's verification id, the masked number, when Resend works again) and, once the code is approved,
the username.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import jwt
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from examples.login_app import pages, refusals
from examples.login_app.approval import Approvals, NotApproved
from examples.login_app.config import Config
from examples.login_app.guard import FormTooLarge, SecurityHeaders, csrf_ok, csrf_token, read_form
from examples.login_app.users import Users
from otp.client import AsyncClient, Delivery, InvalidRequest, OtpError, RateLimited, Verification, WrongCode

log = logging.getLogger("login_app")

STATIC = Path(__file__).parent / "static"
SESSION_HOURS = 8
RESEND_FALLBACK = 60  # seconds Resend stays off after a refusal that gave no retry_after
NOTICES = {
    "resent": ("We sent a new code.", "info"),
    "signed_out": ("You are signed out.", "info"),
}


@dataclass
class Deps:
    config: Config
    users: Users
    approvals: Approvals
    otp: AsyncClient | None = None  # opened by the lifespan


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


def otp(request: Request) -> AsyncClient:
    client = deps(request).otp
    assert client is not None, "the app runs with its lifespan"
    return client


def to(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def client_ip(request: Request) -> str | None:
    """Given to otp with each start, for its per-IP limits and the audit log."""
    return request.client.host if request.client else None


def notice(request: Request) -> tuple[str, str]:
    return NOTICES.get(request.query_params.get("m", ""), ("", "info"))


def pending(request: Request) -> dict[str, Any] | None:
    found = request.session.get("pending")
    return found if isinstance(found, dict) else None


def resend_wait(sign_in: dict[str, Any]) -> int:
    return max(0, round(float(sign_in.get("resend_at", 0)) - time.time()))


# -- password ------------------------------------------------------------------------------------


async def signin_form(request: Request) -> Response:
    if request.session.get("user"):
        return to("/")
    message, kind = notice(request)
    return pages.sign_in(csrf_token(request), message=message, kind=kind)


async def signin(request: Request) -> Response:
    form = await read_form(request)
    if not csrf_ok(request, form):
        return pages.form_expired()
    username, password = form.get("username", "").strip(), form.get("password", "")
    user = await run_in_threadpool(deps(request).users.authenticate, username, password)
    if user is None:
        message = "Wrong username or password."
        return pages.sign_in(csrf_token(request), username=username, message=message, status=401)
    try:
        verification = await otp(request).start(user.phone, ip=client_ip(request))
    except OtpError as refused:
        return pages.refused(refusals.for_start(refused))
    request.session.clear()  # a new session for the new sign-in (and a new CSRF token)
    request.session["pending"] = {"user": user.username, "vid": verification.id, "to": verification.to}
    return to("/code")


# -- the SMS step --------------------------------------------------------------------------------


def delivery(last: Delivery | None) -> tuple[str, str]:
    """What otp knows of the last SMS: queued, sent, delivered, undelivered … (Twilio's callbacks)."""
    if last is None:
        return pages.delivery_line(None, None)
    return pages.delivery_line(last.status, last.error.title if last.error else None)


def last_send(verification: Verification) -> Delivery | None:
    return verification.send_attempts[-1].delivery if verification.send_attempts else None


async def code_form(request: Request) -> Response:
    sign_in = pending(request)
    if sign_in is None:
        return to("/signin")
    try:
        verification = await otp(request).get(sign_in["vid"])
    except OtpError as refused:
        return finished(request, refusals.for_check(refused))
    if verification.status != "pending":
        return finished(request, refusals.for_status(verification.status))
    wait = resend_wait(sign_in)
    message, kind = notice(request)
    if request.query_params.get("m") == "wait":  # otp's retry_after, counted down
        message, kind = (f"You can't resend yet: try again in {wait} s." if wait else ""), "error"
    return pages.code_entry(
        csrf_token(request),
        to=verification.to,
        delivery=delivery(last_send(verification)),
        resend_wait=wait,
        message=message,
        kind=kind,
    )


def finished(request: Request, refusal: refusals.Refusal) -> Response:
    if refusal.start_over:
        request.session.pop("pending", None)
    return pages.refused(refusal)


async def check(request: Request) -> Response:
    form = await read_form(request)
    if not csrf_ok(request, form):
        return pages.form_expired()
    sign_in = pending(request)
    if sign_in is None:
        return to("/signin")
    try:
        result = await otp(request).check(
            form.get("code", "").strip(), verification_id=sign_in["vid"], ip=client_ip(request)
        )
    except WrongCode as wrong:
        if wrong.verification_status != "pending":
            return finished(request, refusals.for_check(wrong))
        left = wrong.attempts_left
        last = wrong.result.delivery
        return await retry(request, sign_in, f"Wrong code. {left} {'try' if left == 1 else 'tries'} left.", last)
    except InvalidRequest as bad:
        if bad.field != "code":
            return finished(request, refusals.for_check(bad))
        return await retry(request, sign_in, "Enter the code from the SMS: digits only.", None)
    except OtpError as refused:
        return finished(request, refusals.for_check(refused))
    return await approved(request, sign_in, result.token or "")


async def retry(request: Request, sign_in: dict[str, Any], message: str, last: Delivery | None) -> Response:
    """The code page again, saying what was wrong with the code sent."""
    if last is None:  # otp refused the code as input (not digits): ask it where the SMS is
        try:
            last = last_send(await otp(request).get(sign_in["vid"]))
        except OtpError:
            pass
    return pages.code_entry(
        csrf_token(request),
        to=sign_in["to"],
        delivery=delivery(last),
        resend_wait=resend_wait(sign_in),
        message=message,
        status=400,
    )


async def approved(request: Request, sign_in: dict[str, Any], token: str) -> Response:
    """otp approved the code: sign in once its token verifies offline, for this verification."""
    try:
        claims = await deps(request).approvals.verify(token, sign_in["vid"])
    except jwt.PyJWKClientConnectionError:
        return finished(request, refusals.unavailable())
    except NotApproved as why:
        log.warning("otp's approval of %s did not verify: %s", sign_in["vid"], why)
        return finished(request, refusals.not_approved())
    request.session.clear()  # a new session for the signed-in user
    request.session["user"] = sign_in["user"]
    at = datetime.fromtimestamp(claims["iat"], UTC).strftime("%H:%M:%S UTC")
    request.session["approval"] = {"to": sign_in["to"], "at": at, "kid": jwt.get_unverified_header(token)["kid"]}
    return to("/")


async def resend(request: Request) -> Response:
    form = await read_form(request)
    if not csrf_ok(request, form):
        return pages.form_expired()
    sign_in = pending(request)
    if sign_in is None:
        return to("/signin")
    if resend_wait(sign_in):  # the button was disabled; a second tab or a replayed form
        return to("/code?m=wait")
    user = await run_in_threadpool(deps(request).users.get, sign_in["user"])
    if user is None:
        return finished(request, refusals.for_status("expired"))
    try:
        # A start for a number with a pending verification is a resend of it (same id, a new SMS).
        verification = await otp(request).start(user.phone, ip=client_ip(request))
    except RateLimited as refused:
        sign_in["resend_at"] = time.time() + (refused.retry_after or RESEND_FALLBACK)
        request.session["pending"] = sign_in
        return to("/code?m=wait")
    except OtpError as refused:
        return finished(request, refusals.for_start(refused))
    # A new id when the old verification had ended (expired) in between: the new code is for it.
    request.session["pending"] = {**sign_in, "vid": verification.id, "to": verification.to}
    return to("/code?m=resent")


# -- signed in -----------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    username = request.session.get("user")
    user = await run_in_threadpool(deps(request).users.get, username) if isinstance(username, str) else None
    if user is None:
        return to("/signin")
    approval = request.session.get("approval") or {}
    return pages.signed_in(
        csrf_token(request),
        name=user.name,
        username=user.username,
        to=approval.get("to", ""),
        at=approval.get("at", ""),
        kid=approval.get("kid", ""),
    )


async def signout(request: Request) -> Response:
    form = await read_form(request)
    if not csrf_ok(request, form):
        return pages.form_expired()
    sign_in = pending(request)
    if sign_in is not None:  # Cancel on the code page: its code stops working at once
        try:
            await otp(request).cancel(sign_in["vid"])
        except OtpError:
            pass  # already ended, or otp unreachable: it expires by itself
    request.session.clear()
    return to("/signin?m=signed_out")


async def too_large(request: Request, exc: Exception) -> Response:
    return pages.form_expired()


def create_app(config: Config) -> Starlette:
    users = Users(config.database)
    users.seed_demo(config.demo_phone)
    approvals = Approvals(config.jwks_url, audience=config.audience, issuer=config.otp_issuer)
    state = Deps(config, users, approvals)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncClient(config.otp_url, config.otp_api_key, timeout=5.0) as client:
            state.otp = client
            yield

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/signin", signin_form, methods=["GET"]),
            Route("/signin", signin, methods=["POST"]),
            Route("/code", code_form, methods=["GET"]),
            Route("/code", check, methods=["POST"]),
            Route("/code/resend", resend, methods=["POST"]),
            Route("/signout", signout, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=config.secret,
                session_cookie="login_session",
                max_age=SESSION_HOURS * 3600,
                same_site="lax",
                https_only=config.secure_cookie,
            ),
        ],
        exception_handlers={FormTooLarge: too_large},
        lifespan=lifespan,
    )
    app.state.deps = state
    return app
