"""Prometheus metrics (``GET /metrics``) and the request-latency middleware; the metrics
themselves are defined in `otp.core.metrics`.

The metrics show per-country volumes and refusal reasons, so they are served only to a scraper
that sends ``Authorization: Bearer <OTP_METRICS_TOKEN>``; without that setting ``/metrics`` is off
(404, naming the setting)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otp.core.metrics import LATENCY, OUTBOX
from otp.errors import NotFound, Unauthorized

# Ids and numbers would make one time series per request: fold them into the route's shape.
_IDS = re.compile(r"/(VE|VA|VL|SM|AC)[0-9a-fA-F]{32}|/\+?\d{4,}")


def route_of(path: str) -> str:
    return _IDS.sub(lambda m: "/{" + ("id" if m.group(1) else "entry") + "}", path)


class LatencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()  # a duration, not a time of day: no clock needed
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            LATENCY.labels(scope["method"], route_of(scope["path"]), str(status)).observe(time.perf_counter() - started)


def check_token(expected: str, header: str | None) -> None:
    """Raise unless ``header`` is ``Bearer <expected>``; compared in constant time (digests, so
    not even the length shows)."""
    if not expected:
        raise NotFound(
            "metrics are off: set OTP_METRICS_TOKEN and scrape with Authorization: Bearer <token>",
            code="metrics_disabled",
        )
    scheme, _, value = (header or "").partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else ""
    good = hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())
    if not (given and good):
        raise Unauthorized("send Authorization: Bearer <OTP_METRICS_TOKEN>", field="Authorization")


async def metrics(request: Request) -> Response:
    check_token(request.app.state.settings.metrics_token, request.headers.get("authorization"))
    try:
        OUTBOX.set(await request.app.state.store.outbox_depth())
    except Exception:
        OUTBOX.set(float("nan"))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
