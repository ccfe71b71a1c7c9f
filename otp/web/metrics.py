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
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otp.core.metrics import LATENCY, OUTBOX, WORKER_LAST_SEEN
from otp.errors import NotFound, Unauthorized
from otp.storage import workers

# Labels come from a bounded set, never from what a client sent: each distinct label set is a
# series kept for the life of the process, so a raw path or method (an unknown URL, a /v2 path,
# a safe-list entry, a made-up method) would let any client, signed in or not, grow every API
# process's memory and /metrics at will.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
_CONVERTOR = re.compile(r"\{([^}:]+):[^}]+\}")


def route_of(scope: Scope) -> str:
    """The template of the route that handled the request (``/v1/verifications/{id}``,
    ``/admin/fraud``), ``<mount>/*`` when a mount matched but none of its routes, else
    ``unmatched``."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return UNMATCHED
    # A mount's match set root_path to where it is mounted; its routes' templates are below it.
    root = str(scope.get("root_path", ""))
    if isinstance(route, Mount):
        return f"{root}/*"
    return root + _CONVERTOR.sub(r"{\1}", template)


def method_of(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in METHODS else "OTHER"


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
            LATENCY.labels(method_of(scope), route_of(scope), str(status)).observe(time.perf_counter() - started)


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
    store = request.app.state.store
    try:
        OUTBOX.set(await store.outbox_depth())
    except Exception:
        OUTBOX.set(float("nan"))
    try:
        beat = await workers.last_beat_ms(store)
        # On the service's clock, the one the workers stamp their beats with.
        now_ms = int(request.app.state.verifier.clock() * 1000)
        WORKER_LAST_SEEN.set(float("inf") if beat is None else max(0.0, (now_ms - beat) / 1000))
    except Exception:
        WORKER_LAST_SEEN.set(float("nan"))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
