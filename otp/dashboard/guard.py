"""Who may see a page or post a form: a signed-in admin session, and for forms a valid CSRF token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from otp.core.apikeys import ApiKey
from otp.dashboard import session
from otp.dashboard.markup import join, layout, notice, page, tag, url
from otp.errors import InvalidInput, UnsupportedMediaType
from otp.web.body import read_limited

MAX_FORM = 8 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Admin:
    key: ApiKey
    csrf: str


Page = Callable[[Request, Admin], Awaitable[Response]]
Action = Callable[[Request, Admin, dict[str, str]], Awaitable[Response]]


def now_ms(request: Request) -> int:
    """The service's clock (injected in tests), as every other reader of the counters uses."""
    return int(request.app.state.verifier.clock() * 1000)


def to_sign_in(request: Request, why: str = "") -> RedirectResponse:
    return RedirectResponse(url(request, "/signin", {"m": why}), status_code=303)


async def add_slash(request: Request) -> Response:
    """``/admin`` → ``/admin/`` as a relative reference (``admin/``), right behind any proxy prefix;
    Starlette's own redirect would name the client's ``Host`` header."""
    query = request.url.query
    return RedirectResponse(request.url.path.rsplit("/", 1)[-1] + "/" + ("?" + query if query else ""), 307)


def signed_in_page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        key, why = await session.signed_in(request)
        if key is None:
            return to_sign_in(request, why)
        return await handler(request, Admin(key, session.csrf_token(request)))

    return endpoint


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (first value of each name); anything else is a 4xx."""
    raw = await read_limited(request, MAX_FORM)
    if not raw:
        return {}  # no fields, so no CSRF token either: refused as such, whatever the type
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_TYPE:
        raise UnsupportedMediaType(f"send Content-Type: {FORM_TYPE}", field="Content-Type")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("is not a valid form", field="body") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def csrf_refused(request: Request) -> Response:
    body = notice("This form has expired or did not come from this dashboard; nothing was changed.", "error")
    back = tag("p", tag("a", "Back to the dashboard", href=url(request, "/")))
    return page(layout(request, "Forbidden", join([body, back])), status=403)


def signed_in_action(handler: Action) -> Callable[[Request], Awaitable[Response]]:
    """A state-changing POST: the CSRF token first (a forged request learns nothing more), then
    the session."""

    async def endpoint(request: Request) -> Response:
        form = await read_form(request)
        if not session.csrf_ok(request, form.get("csrf")):
            return csrf_refused(request)
        key, why = await session.signed_in(request)
        if key is None:
            return to_sign_in(request, why)
        return await handler(request, Admin(key, session.csrf_token(request)), form)

    return endpoint
