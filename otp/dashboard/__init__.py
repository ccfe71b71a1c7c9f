"""The security dashboard under ``/admin``, for admin API keys only.

``mount()`` returns a ``Mount`` of plain routes with their own middleware (security headers, the
session cookie, HTML error pages), not a Starlette app of its own: a mounted Starlette app would
set ``scope["app"]`` to itself, while plain routes keep the main application in it, so handlers
read ``request.app.state`` (store, policy, keys, clock) exactly like the API handlers do, and the
session middleware stays out of the API's way. Add it to the routes of ``create_app``::

    from otp import dashboard
    from otp.web import stats as stats_api

    routes = [..., *stats_api.routes, dashboard.mount()]
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from otp.dashboard import audit_page, bruteforce_page, fraud_page, incidents_page, overview_page, signin
from otp.dashboard.confirm import confirmed, describe_safe_list, describe_unblock
from otp.dashboard.error_pages import HANDLERS
from otp.dashboard.guard import signed_in_action, signed_in_page
from otp.dashboard.headers import SecurityHeaders
from otp.dashboard.session import MAX_AGE, DashboardSessions

PATH = "/admin"


def mount(*, https_only: bool | None = None, max_age: int = MAX_AGE) -> Mount:
    """The dashboard at ``/admin``. ``https_only``: the session cookie's Secure flag; None sets it
    when ``OTP_PUBLIC_URL`` is https."""
    routes = [
        Route("/", signed_in_page(overview_page.overview_page), methods=["GET"], name="overview"),
        Route("/signin", signin.endpoint, methods=["GET", "POST"], name="signin"),
        Route("/signout", signin.sign_out, methods=["POST"], name="signout"),
        Route("/incidents", signed_in_page(incidents_page.incidents_page), methods=["GET"], name="incidents"),
        Route("/bruteforce", signed_in_page(bruteforce_page.bruteforce_page), methods=["GET"], name="bruteforce"),
        Route("/fraud", signed_in_page(fraud_page.fraud_page), methods=["GET"], name="fraud"),
        # Each change answers with a confirmation page first (otp.dashboard.confirm).
        Route(
            "/fraud/unblock",
            signed_in_action(confirmed(fraud_page.unblock, describe_unblock, "/fraud/unblock", "/fraud")),
            methods=["POST"],
        ),
        Route(
            "/fraud/safelist",
            signed_in_action(confirmed(fraud_page.add_to_safe_list, describe_safe_list, "/fraud/safelist", "/fraud")),
            methods=["POST"],
        ),
        Route("/audit", signed_in_page(audit_page.audit_page), methods=["GET"], name="audit"),
        Route("/audit.csv", signed_in_page(audit_page.export_csv), methods=["GET"]),
        Route("/audit.jsonl", signed_in_page(audit_page.export_jsonl), methods=["GET"]),
        Mount("/static", app=StaticFiles(packages=[("otp.dashboard", "static")]), name="static"),
    ]
    return Mount(
        PATH,
        routes=routes,
        name="dashboard",
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(DashboardSessions, max_age=max_age, https_only=https_only),
            Middleware(ExceptionMiddleware, handlers=HANDLERS),
        ],
    )
