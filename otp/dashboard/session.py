"""Dashboard sign-in: a server-side session behind a signed, HttpOnly, SameSite=Strict cookie,
and CSRF tokens.

The cookie (Starlette's ``SessionMiddleware``, itsdangerous underneath) holds a random session id,
the admin key's id, an absolute expiry and a random CSRF token, never the key itself. The session
exists in Redis too (``keyspace.dashboard_session``: the id's digest → the key id, with the
session's TTL), and sign-out deletes it: a copy of the cookie taken before sign-out is dead after
it. Each request reads the session and the key in one round trip, so revoking the key (or taking
its admin right away) signs its sessions out at once. The signing secret is derived from the first
``OTP_SECRET_KEY``; rotating that key signs everyone out.

A sign-in form needs a CSRF token before there is a signed-in session: ``csrf_token`` puts one in
the (pre-sign-in) session when the form is shown, and sign-in swaps it for a fresh one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from otp.clock import SYSTEM
from otp.core.apikeys import ApiKey
from otp.core.keyring import derive
from otp.storage import sessions
from otp.storage.store import Store

COOKIE = "otp_admin"
MAX_AGE = 8 * 3600
SESSION_ID = "sid"
KEY_ID = "kid"
EXPIRES = "exp"
CSRF = "csrf"

# Wall time, not the service's injected clock: a session's life is about people, not about the
# verification timeline tests move around. Tests replace it.
wall_clock: Callable[[], float] = SYSTEM.now


class SessionSettings(Protocol):
    """What the sessions read of the shell's settings (the shell puts them on the app's state)."""

    @property
    def secret_keys(self) -> Sequence[str]: ...

    @property
    def public_url(self) -> str: ...


def _settings(scope: Scope) -> SessionSettings:
    # The dashboard is a Mount of plain routes, not an app of its own: scope["app"] stays the main
    # application, whose lifespan put the settings on its state.
    settings: SessionSettings = scope["app"].state.settings
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


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _session_id(session: dict[str, Any]) -> str:
    session_id = session.get(SESSION_ID)
    return session_id if isinstance(session_id, str) and len(session_id) >= 32 else ""


async def sign_in(request: Request, key: ApiKey) -> None:
    """A new session (a new id: one planted or kept from before can't be signed in)."""
    await sign_out(request)  # the session this browser had, if any, ends; nothing carries over
    session = _session(request)
    session_id = secrets.token_urlsafe(32)
    store: Store = request.app.state.store
    await sessions.open_session(store, _digest(session_id), key.key_id, ttl_s=MAX_AGE)
    session[SESSION_ID] = session_id
    session[KEY_ID] = key.key_id
    session[EXPIRES] = int(wall_clock()) + MAX_AGE
    session[CSRF] = secrets.token_urlsafe(32)


async def sign_out(request: Request) -> None:
    """End the session on the server, then forget the cookie."""
    session = _session(request)
    session_id = _session_id(session)
    if session_id:
        store: Store = request.app.state.store
        await sessions.close_session(store, _digest(session_id))
    session.clear()


async def signed_in(request: Request) -> tuple[ApiKey | None, str]:
    """The admin key of this session, or (None, why): "" (never signed in), "expired",
    "signed_out" (the session was ended on the server) or "revoked". A session that fails is
    cleared, on the server too."""
    session = _session(request)
    key_id, expires, session_id = session.get(KEY_ID), session.get(EXPIRES), _session_id(session)
    if not isinstance(key_id, str) or not key_id:
        return None, ""
    if not isinstance(expires, int) or expires <= wall_clock() or not session_id:
        await sign_out(request)
        return None, "expired"
    store: Store = request.app.state.store
    owner, record = await sessions.session_and_key(store, _digest(session_id), key_id)
    if owner != key_id:
        session.clear()
        return None, "signed_out"
    if record is None or not record.admin:
        await sign_out(request)
        return None, "revoked"
    return ApiKey(key_id, record.name, True), ""
