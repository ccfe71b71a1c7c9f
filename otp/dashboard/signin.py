"""Sign-in with an admin API key, and sign-out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from otp.apikeys import ApiKey
from otp.dashboard import session
from otp.dashboard.guard import csrf_refused, read_form, to_sign_in
from otp.dashboard.markup import Html, esc, layout, notice, page, url
from otp.errors import Unauthorized

# Why the sign-in page is shown: fixed texts, so nothing from the query string is echoed.
MESSAGES = {
    "expired": "Your session has expired; sign in again.",
    "revoked": "You were signed out: that API key was revoked or is no longer an admin key.",
    "signed_out": "You are signed out.",
}
MAX_KEY_LENGTH = 200


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
    if key is None:
        return page(_form(request, notice("Unknown or revoked API key.", "error")), status=401)
    if not key.admin:
        text = "That key is not an admin key. The dashboard needs one made with otp keys create NAME --admin."
        return page(_form(request, notice(text, "error")), status=403)
    session.sign_in(request, key)
    return RedirectResponse(url(request, "/"), status_code=303)


async def sign_out(request: Request) -> Response:
    form = await read_form(request)
    if not session.csrf_ok(request, form.get("csrf")):
        return csrf_refused(request)
    session.sign_out(request)
    return to_sign_in(request, "signed_out")


async def endpoint(request: Request) -> Response:
    # One route per path, so a wrong method gets a 405 whose Allow header names both methods.
    return await (submit(request) if request.method == "POST" else show(request))
