"""Prometheus metrics (``GET /metrics``) and the request-latency middleware.

The metrics show per-country volumes and refusal reasons, so they are served only to a scraper
that sends ``Authorization: Bearer <OTP_METRICS_TOKEN>``; without that setting ``/metrics`` is off
(404, naming the setting)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otp.errors import NotFound, Unauthorized

STARTED = Counter("otp_verifications_started_total", "Verifications started (first send)", ["country"])
RESENT = Counter("otp_verifications_resent_total", "Resends on a pending verification", ["country"])
APPROVED = Counter("otp_verifications_approved_total", "Verifications approved (conversions)", ["country"])
FAILED_CHECKS = Counter("otp_checks_failed_total", "Checks with a wrong code")
MAX_ATTEMPTS = Counter("otp_verifications_max_attempts_total", "Verifications locked after the last wrong code")
EXPIRED = Counter("otp_verifications_expired_seen_total", "Checks that found their verification expired")
CANCELED = Counter("otp_verifications_canceled_total", "Verifications canceled")
REFUSALS = Counter("otp_refusals_total", "Requests refused by a rule", ["rule", "reason"])
FLAGGED = Counter("otp_pumping_flagged_total", "Sends over a pumping threshold in record_only mode", ["scope"])
DELIVERY = Counter("otp_delivery_reports_total", "Delivery states recorded (callbacks, polls, sends)", ["status"])
SMS_SENT = Counter("otp_sms_sent_total", "SMS accepted by the provider")
SMS_FAILED = Counter("otp_sms_failed_total", "SMS given up on", ["transient"])
OUTBOX = Gauge("otp_outbox_depth", "SMS jobs queued or leased, all partitions")
LATENCY = Histogram(
    "otp_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

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
        started = time.perf_counter()
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
