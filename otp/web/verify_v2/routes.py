"""The routes of the Twilio Verify v2-compatible API (``/v2``): Twilio's SDKs, pointed at otp, work
unchanged.

A thin adapter over the same Verifier as ``/v1``: form-encoded requests in, Twilio's JSON out,
HTTP Basic with an account SID and auth token (``otp keys create NAME --twilio``). Each Verify
*service* (``otp.core.services``) is a tenant: the Verifier sees ``Caller(key_id=<VA sid>)``, so a
service has its own verifications, pending pointers and per-key send limit. Every answer,
failures included, leaves in Twilio's shape (``errors.twilio_endpoint``), and any other /v2 path
or method is Twilio's 404 or 405, never the app's native bodies.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, request_response
from starlette.types import Receive, Scope, Send

from otp.errors import MethodNotAllowed, NotFound
from otp.web.verify_v2 import (
    attempts,
    checks,
    messaging_configurations,
    not_offered,
    rate_limits,
    safelist,
    services,
    templates,
    verifications,
    webhooks,
)
from otp.web.verify_v2.errors import Endpoint, error_response, twilio_endpoint


def _route(path: str, handler: Endpoint, method: str) -> Route:
    return Route(path, twilio_endpoint(handler), methods=[method])


routes = [
    _route("/v2/Services", services.create_service, "POST"),
    _route("/v2/Services", services.list_services, "GET"),
    _route("/v2/Services/{Sid}", services.fetch_service, "GET"),
    _route("/v2/Services/{Sid}", services.update_service, "POST"),
    _route("/v2/Services/{Sid}", services.delete_service, "DELETE"),
    _route("/v2/Services/{ServiceSid}/Verifications", verifications.create_verification, "POST"),
    _route("/v2/Services/{ServiceSid}/Verifications/{Sid}", verifications.fetch_verification, "GET"),
    _route("/v2/Services/{ServiceSid}/Verifications/{Sid}", verifications.update_verification, "POST"),
    _route("/v2/Services/{ServiceSid}/VerificationCheck", checks.check_verification, "POST"),
    _route("/v2/Services/{ServiceSid}/RateLimits", rate_limits.create_rate_limit, "POST"),
    _route("/v2/Services/{ServiceSid}/RateLimits", rate_limits.list_rate_limits, "GET"),
    _route("/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}", rate_limits.fetch_rate_limit, "GET"),
    _route("/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}", rate_limits.update_rate_limit, "POST"),
    _route("/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}", rate_limits.delete_rate_limit, "DELETE"),
    _route("/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets", rate_limits.create_bucket, "POST"),
    _route("/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets", rate_limits.list_buckets, "GET"),
    _route("/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets/{Sid}", rate_limits.fetch_bucket, "GET"),
    _route("/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets/{Sid}", rate_limits.update_bucket, "POST"),
    _route("/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets/{Sid}", rate_limits.delete_bucket, "DELETE"),
    _route("/v2/Services/{ServiceSid}/MessagingConfigurations", messaging_configurations.create_configuration, "POST"),
    _route("/v2/Services/{ServiceSid}/MessagingConfigurations", messaging_configurations.list_configurations, "GET"),
    _route(
        "/v2/Services/{ServiceSid}/MessagingConfigurations/{Country}",
        messaging_configurations.fetch_configuration,
        "GET",
    ),
    _route(
        "/v2/Services/{ServiceSid}/MessagingConfigurations/{Country}",
        messaging_configurations.update_configuration,
        "POST",
    ),
    _route(
        "/v2/Services/{ServiceSid}/MessagingConfigurations/{Country}",
        messaging_configurations.delete_configuration,
        "DELETE",
    ),
    _route("/v2/Attempts", attempts.list_attempts, "GET"),
    _route("/v2/Attempts/Summary", attempts.attempts_summary, "GET"),  # before {Sid}, which would match it
    _route("/v2/Attempts/{Sid}", attempts.fetch_attempt, "GET"),
    _route("/v2/SafeList/Numbers", safelist.create_safelist, "POST"),
    _route("/v2/SafeList/Numbers/{PhoneNumber}", safelist.fetch_safelist, "GET"),
    _route("/v2/SafeList/Numbers/{PhoneNumber}", safelist.delete_safelist, "DELETE"),
    _route("/v2/Templates", templates.list_templates, "GET"),
    _route("/v2/Services/{ServiceSid}/Webhooks", webhooks.create_webhook, "POST"),
    _route("/v2/Services/{ServiceSid}/Webhooks", webhooks.list_webhooks, "GET"),
    _route("/v2/Services/{ServiceSid}/Webhooks/{Sid}", webhooks.fetch_webhook, "GET"),
    _route("/v2/Services/{ServiceSid}/Webhooks/{Sid}", webhooks.update_webhook, "POST"),
    _route("/v2/Services/{ServiceSid}/Webhooks/{Sid}", webhooks.delete_webhook, "DELETE"),
]


async def _unrouted(request: Request) -> Response:
    """Any other /v2 request: 405 (with Allow) for a known path with another method, else 404, in
    Twilio's body (saying so when the path is a Twilio resource otp doesn't offer)."""
    refusal = not_offered.refusal(request.url.path)
    if refusal is not None:
        raise NotFound(refusal)
    allowed = {m for route in routes if route.matches(request.scope)[0] == Match.PARTIAL for m in route.methods or ()}
    if allowed:
        # RFC 9110 §15.5.6: a 405 names the methods the resource takes.
        response = error_response(MethodNotAllowed(f"{request.method} is not allowed here"))
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
    raise NotFound(f"no resource at {request.url.path}")


# Last, so the routes above match first; it keeps the app's native 404/405 bodies off /v2.
class _EveryMethod:
    """The catch-all as an ASGI app: Starlette routes a function endpoint that names no methods
    for GET only, and an ASGI app for every method, so a TRACE or a made-up method gets Twilio's
    405 too rather than falling through to the app's native one."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.app = request_response(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


routes.append(Route("/v2/{rest:path}", _EveryMethod(twilio_endpoint(_unrouted))))
