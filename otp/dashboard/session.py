"""Dashboard sign-in: a signed, HttpOnly, SameSite=Strict cookie, and CSRF tokens.

The cookie (Starlette's ``SessionMiddleware``, itsdangerous underneath) holds the admin key's id,
an absolute expiry and a random CSRF token, never the key itself. Each request looks the key up
again, so revoking it (or taking its admin right away) signs its sessions out at once. The signing
secret is derived from the first ``OTP_SECRET_KEY``; rotating that key signs everyone out.

A sign-in form needs a CSRF token before there is a signed-in session: ``csrf_token`` puts one in
the (pre-sign-in) session when the form is shown, and sign-in swaps it for a fresh one.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from otp import keyspace
from otp.apikeys import ApiKey
from otp.keyring import derive
from otp.settings import Settings
from otp.store import Store

COOKIE = "otp_admin"
MAX_AGE = 8 * 3600
KEY_ID = "kid"
EXPIRES = "exp"
CSRF = "csrf"

# Wall time, not the service's injected clock: a session's life is about people, not about the
# verification timeline tests move around. Tests replace it.
wall_clock: Callable[[], float] = time.time


def _settings(scope: Scope) -> Settings:
    # The dashboard is a Mount of plain routes, not an app of its own: scope["app"] stays the main
    # application, whose lifespan put the settings on its state.
    settings: Settings = scope["app"].state.settings
    return settings


class DashboardSessions:
    """``SessionMiddleware`` built on first use, when the main app's settings (its secret key) exist.

    ``https_only`` None: the Secure flag follows ``OTP_PUBLIC_URL`` (set when it is https)."""

    def __init__(self, app: ASGIApp, *, max_age: int = MAX_AGE, https_only: bool | None = None) -> None:
        self.app = app
        self.max_age = max_age
        self.https_only = https_only
        self._built: tuple[str, str, SessionMiddleware] | None = None

    def _middleware(self, scope: Scope) -> SessionMiddleware:
        settings = _settings(scope)
        secret = settings.secret_keys[0]
        # The cookie belongs to the dashboard only: its path is where the dashboard is mounted.
        path = scope.get("root_path") or "/"
        if self._built is None or self._built[:2] != (secret, path):
            https_only = self.https_only
            if https_only is None:
                https_only = settings.public_url.startswith("https://")
            same_site: Literal["strict"] = "strict"
            middleware = SessionMiddleware(
                self.app,
                secret_key=derive(secret, "dashboard-session").hex(),
                session_cookie=COOKIE,
                max_age=self.max_age,
                path=path,
                same_site=same_site,
                https_only=https_only,
            )
            self._built = (secret, path, middleware)
        return self._built[2]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self._middleware(scope)(scope, receive, send)


def _session(request: Request) -> dict[str, Any]:
    session: dict[str, Any] = request.session
    return session


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use (also before sign-in)."""
    session = _session(request)
    token = session.get(CSRF)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[CSRF] = token
    return token


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = _session(request).get(CSRF)
    if not isinstance(expected, str) or not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


def sign_in(request: Request, key: ApiKey) -> None:
    session = _session(request)
    session.clear()  # nothing from before sign-in carries over, the CSRF token included
    session[KEY_ID] = key.key_id
    session[EXPIRES] = int(wall_clock()) + MAX_AGE
    session[CSRF] = secrets.token_urlsafe(32)


def sign_out(request: Request) -> None:
    _session(request).clear()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def signed_in(request: Request) -> tuple[ApiKey | None, str]:
    """The admin key of this session, or (None, why): "" (never signed in), "expired" or "revoked".
    A session whose key is gone or no longer admin is cleared."""
    session = _session(request)
    key_id, expires = session.get(KEY_ID), session.get(EXPIRES)
    if not isinstance(key_id, str) or not key_id:
        return None, ""
    if not isinstance(expires, int) or expires <= wall_clock():
        sign_out(request)
        return None, "expired"
    store: Store = request.app.state.store
    record = await store.guarded(lambda: store.client.hgetall(keyspace.api_key(key_id)))
    admin = bool(record) and _text(record.get(b"admin", b"0")) == "1"
    if not admin:
        sign_out(request)
        return None, "revoked"
    return ApiKey(key_id, _text(record.get(b"name", b"")), True), ""
