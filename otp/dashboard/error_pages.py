"""Errors inside the dashboard as HTML pages (the API's are JSON), so they carry its headers too."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from otp.dashboard.markup import join, layout, notice, page, tag, url
from otp.errors import OtpError
from otp.storage.store import UNAVAILABLE_ERRORS

log = logging.getLogger("otp.dashboard")


def _error(request: Request, status: int, title: str, text: str, headers: Mapping[str, str] | None = None) -> Response:
    body = join([notice(text, "error"), tag("p", tag("a", "Back to the dashboard", href=url(request, "/")))])
    response = page(layout(request, title, body), status)
    response.headers.update(headers or {})
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    return _error(request, exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail), exc.headers)


async def otp_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OtpError)
    text = f"{exc.field}: {exc.message}" if exc.field else exc.message
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return _error(request, exc.status, "Error", text, headers)


async def unavailable(request: Request, exc: Exception) -> Response:
    log.warning("storage error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return _error(request, 503, "Unavailable", "Storage is unavailable; retry shortly.", {"Retry-After": "1"})


async def internal(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(request, 500, "Error", "Internal error.")


HANDLERS = {
    HTTPException: http_error,
    OtpError: otp_error,
    RedisError: unavailable,
    **dict.fromkeys(UNAVAILABLE_ERRORS, unavailable),
    Exception: internal,
}
