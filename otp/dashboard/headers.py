"""Security headers on every dashboard response, error pages and static files included, and
redirects that never name a host the client sent.

The pages need no JavaScript, load nothing from elsewhere and style only through the one
stylesheet (SVG charts take their colours from CSS classes), so the policy can deny by default.

Starlette builds the Location of its trailing-slash redirects from the request's ``Host`` header:
``Host: evil.example`` on ``/admin/fraud/`` would send the browser (or a cache) to evil.example.
Every Location leaving the dashboard is therefore kept only when it is on ``OTP_PUBLIC_URL``'s
origin and otherwise cut down to a path: relative to the host the browser already talks to.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "script-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Masked numbers are still about people: nothing keeps a copy, not even of the stylesheet
    # (3 KB; simpler than telling static files apart).
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def safe_location(location: str, public_url: str) -> str:
    """``location`` if it is on ``public_url``'s origin (scheme and host), else its path, query and
    fragment alone; a path never starts with ``//`` or ``/\\`` (which browsers read as a host)."""
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        public = urlsplit(public_url) if public_url else None
        if public and public.netloc and (parts.scheme, parts.netloc) == (public.scheme, public.netloc):
            return location
    path = parts.path
    if path[:1] in ("/", "\\"):
        path = "/" + path.lstrip("/\\\t\r\n ")
    return urlunsplit(("", "", path, parts.query, parts.fragment))


def _public_url(scope: Scope) -> str:
    app = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    return str(getattr(settings, "public_url", "") or "")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if "location" in headers:
                    headers["location"] = safe_location(headers["location"], _public_url(scope))
            await send(message)

        await self.app(scope, receive, with_headers)
