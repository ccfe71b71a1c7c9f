"""Errors inside the dashboard as HTML pages (the API's are JSON), so they carry its headers too.

What an error means (status, Retry-After) is ``otp.web.errors``'s one mapping; this is its HTML view.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from otp.dashboard.markup import join, layout, notice, page, tag, url
from otp.web import errors
from otp.web.errors import Failure

log = logging.getLogger("otp.dashboard")

HTTP_TITLES = {404: "Not found", 405: "Method not allowed"}
# Causes whose details stay in the log: the page says only this (title, text).
UNTOLD = {
    "storage": ("Unavailable", "Storage is unavailable; retry shortly."),
    "internal": ("Error", "Internal error."),
}


def _title_and_text(found: Failure) -> tuple[str, str]:
    if found.cause in UNTOLD:
        return UNTOLD[found.cause]
    if found.cause == "http":
        return HTTP_TITLES.get(found.status, "Error"), found.message
    return "Error", f"{found.field}: {found.message}" if found.field else found.message


def render(request: Request, found: Failure) -> Response:
    title, text = _title_and_text(found)
    body = join([notice(text, "error"), tag("p", tag("a", "Back to the dashboard", href=url(request, "/")))])
    response = page(layout(request, title, body), found.status)
    # The dashboard signs in with a form and a cookie: no WWW-Authenticate challenge.
    response.headers.update({**found.extra_headers, **errors.headers(found.status, found.retry_after)})
    return response


async def error_page(request: Request, exc: Exception) -> Response:
    found = errors.failure(exc)
    errors.note(request, exc, found, log)
    return render(request, found)


HANDLERS: dict[Any, Any] = dict.fromkeys(errors.HANDLED, error_page)
