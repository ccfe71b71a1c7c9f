"""Request ids and the access log: one ``otp.access`` line per request, and an ``X-Request-Id``
on every answer.

The id is the client's ``X-Request-Id`` when it is a plain token (``[A-Za-z0-9._-]``, at most 64)
that the log's masking leaves as it is, else a new random one; the answer carries it back either
way, and every log line written while the request is handled names it (``REQUEST_ID``, which
the shell's logging setup, otp/logs.py, puts on each record).

The access line names the route's template, never the path or query a client sent: a target
may hold a phone number (``/v1/safelist/+1…``, ``?number=…``), an unknown URL is ``unmatched``,
and a method outside the known set is ``OTHER`` (the labels of the latency metric, from
`otp.web.metrics`)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otp.web.metrics import method_of, route_of

log = logging.getLogger("otp.access")

REQUEST_ID: ContextVar[str | None] = ContextVar("otp_request_id", default=None)
HEADER = b"x-request-id"
MAX_LENGTH = 64
_TOKEN = re.compile(f"[A-Za-z0-9._-]{{1,{MAX_LENGTH}}}")


def new_request_id() -> str:
    return secrets.token_hex(8)


def request_id_of(scope: Scope, keeps: Callable[[str], bool]) -> str:
    """The client's ``X-Request-Id`` if it is a plain token that ``keeps`` accepts (the first one
    sent), else a new id."""
    for name, value in scope.get("headers", ()):
        if name.lower() == HEADER:
            text = bytes(value).decode("latin-1")
            if _TOKEN.fullmatch(text) and keeps(text):
                return text
            break
    return new_request_id()


def _any(text: str) -> bool:
    return True


class AccessLog:
    """Outermost: it must wrap Starlette's ServerErrorMiddleware too, which answers a 500 itself,
    so that a 500 carries its id and the error's log line names it (otp/app.py places it).

    ``keeps`` decides whether a client's id may be used as it is: the shell passes the log's
    masking rule, so an id that masking would change (one that holds a phone number) is replaced
    rather than logged differently from the header that echoes it."""

    def __init__(self, app: ASGIApp, keeps: Callable[[str], bool] = _any) -> None:
        self.app = app
        self.keeps = keeps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope, self.keeps)
        header = (HEADER, request_id.encode("ascii"))
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()  # a duration, not a time of day: no clock needed
        status = 500  # what the client gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            log.info(
                "request",
                extra={
                    "method": method_of(scope),
                    "route": route_of(scope),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": str(client[0]) if client else "",
                    "request_id": request_id,
                },
            )
            REQUEST_ID.reset(token)
