"""Sign-in with an admin API key, and sign-out; failed sign-ins are throttled per client address.
Sign-ins, sign-outs and counted failures are admin events in the audit log (otp.core.admin_audit)."""

from __future__ import annotations

import math
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from otp.audit_fields import AdminAction
from otp.core.admin_audit import VIA_DASHBOARD
from otp.core.apikeys import ApiKey
from otp.core.ipaddr import ip_scope
from otp.dashboard import session
from otp.dashboard.guard import csrf_refused, now_ms, read_form, to_sign_in
from otp.dashboard.markup import Html, duration, esc, layout, notice, page, url
from otp.errors import Unauthorized
from otp.storage import keys as keyspace
from otp.storage.store import Call, Store
from otp.web.admin import _audit_admin_action

# Why the sign-in page is shown: fixed texts, so nothing from the query string is echoed.
MESSAGES = {
    "expired": "Your session has expired; sign in again.",
    "revoked": "You were signed out: that API key was revoked or is no longer an admin key.",
    "signed_out": "You are signed out.",
}
MAX_KEY_LENGTH = 200
# Failed sign-ins allowed per client address (its /64 on IPv6) in a sliding window. The address is
# the one the ASGI server reports: behind a proxy, run uvicorn with --proxy-headers and
# --forwarded-allow-ips naming the proxy, or every client shares the proxy's budget.
SIGNIN_FAILURES = 10
SIGNIN_WINDOW_MS = 15 * 60_000


def _form(request: Request, message: Html) -> Html:
    csrf = session.csrf_token(request)
    body = Html(
        f"{message}"
        f'<form method="post" action="{esc(url(request, "/signin"))}" class="signin">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        '<label for="key">Admin API key</label>'
        '<input id="key" name="key" type="password" required autocomplete="off" spellcheck="false" '
        f'maxlength="{MAX_KEY_LENGTH}" placeholder="otpk_…" aria-describedby="key-help">'
        '<p id="key-help" class="help">A key made with <code>otp keys create NAME --admin</code>. '
        "Only its id is kept in a signed cookie, for 8 hours at most.</p>"
        '<button type="submit">Sign in</button></form>'
    )
    return layout(request, "Sign in", body)


async def show(request: Request) -> Response:
    key, _ = await session.signed_in(request)
    if key is not None:
        return RedirectResponse(url(request, "/"), status_code=303)
    message = MESSAGES.get(request.query_params.get("m", ""))
    return page(_form(request, notice(message) if message else Html("")))


def _client_scope(request: Request) -> str:
    host = request.client.host if request.client else ""
    try:
        return ip_scope(host)
    except ValueError:
        return host[:64] or "unknown"  # not an address (a test client, a Unix socket)


async def _throttled(request: Request, *, failed: bool) -> int:
    """0 when this attempt may have its answer, else the seconds until its address may try again.

    Asked once the outcome is known, and decided and counted in one script (signin_limit.lua): an
    address over its limit learns nothing, not even that it guessed right; a refusal is not
    counted; a failure is; a success neither counts nor forgives earlier failures."""
    store: Store = request.app.state.store
    scope, now = _client_scope(request), now_ms(request)
    call = Call(
        "signin_limit",
        keyspace.scope_tag("signin", scope),
        [keyspace.signin_failures(scope)],
        {
            "window_ms": SIGNIN_WINDOW_MS,
            "limit": SIGNIN_FAILURES,
            "failed": failed,
            "member": f"{now}:{secrets.token_hex(8)}",
        },
    )
    [(allowed, retry_ms)] = await store.run_many([call], now)
    return 0 if int(allowed) else max(1, math.ceil(int(retry_ms) / 1000))


def _too_many(request: Request, retry_after: int) -> Response:
    text = f"Too many failed sign-ins from your address; try again in {duration(retry_after)}."
    response = page(_form(request, notice(text, "error")), status=429)
    response.headers["Retry-After"] = str(retry_after)
    return response


async def _audit(request: Request, action: AdminAction, key: ApiKey | None, **details: str) -> None:
    await _audit_admin_action(request, key, action, "", via=VIA_DASHBOARD, **details)


async def submit(request: Request) -> Response:
    form = await read_form(request)
    if not session.csrf_ok(request, form.get("csrf")):
        return csrf_refused(request)
    token = form.get("key", "").strip()
    key: ApiKey | None = None
    if token and len(token) <= MAX_KEY_LENGTH:
        try:
            key = await request.app.state.keys.authenticate(f"Bearer {token}")
        except Unauthorized:
            key = None
    retry_after = await _throttled(request, failed=key is None or not key.admin)
    if retry_after:
        return _too_many(request, retry_after)
    if key is None or not key.admin:
        # Counted failures only: the throttle above bounds how many one address can write. The key
        # is named when it is real (not an admin key); the token typed, never.
        reason = "unknown_key" if key is None else "not_admin"
        await _audit(request, AdminAction.DASHBOARD_SIGN_IN_FAILED, key, reason=reason)
    if key is None:
        return page(_form(request, notice("Unknown or revoked API key.", "error")), status=401)
    if not key.admin:
        text = "That key is not an admin key. The dashboard needs one made with otp keys create NAME --admin."
        return page(_form(request, notice(text, "error")), status=403)
    await session.sign_in(request, key)
    await _audit(request, AdminAction.DASHBOARD_SIGN_IN, key)
    return RedirectResponse(url(request, "/"), status_code=303)


async def sign_out(request: Request) -> Response:
    form = await read_form(request)
    if not session.csrf_ok(request, form.get("csrf")):
        return csrf_refused(request)
    # Whose session ends, read before it does: a session already expired or revoked ends unrecorded.
    key, _ = await session.signed_in(request)
    await session.sign_out(request)
    if key is not None:
        await _audit(request, AdminAction.DASHBOARD_SIGN_OUT, key)
    return to_sign_in(request, "signed_out")


async def endpoint(request: Request) -> Response:
    # One route per path, so a wrong method gets a 405 whose Allow header names both methods.
    return await (submit(request) if request.method == "POST" else show(request))
