"""``GET /docs``: the OpenAPI document (/openapi.json) rendered by Redoc, from otp itself.

Redoc's standalone bundle is vendored into the package (``static/``, by ``scripts/vendor-redoc``),
so the page makes no request to any other host: no CDN, no web fonts (the theme names system
fonts), no search worker (``disable-search``). The page's own policy says so to the browser:
scripts from otp only; styles from otp and inline, because Redoc (styled-components) writes its
styles into ``<style>`` elements as it renders; images from otp and ``data:`` (Redoc's icons);
fetches to otp only (the document). Nothing else loads, and no other site may frame the page.
"""

from __future__ import annotations

import html
import json
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PATH: Final = "/docs"
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidated each time (the bundle's ETag makes that a 304): a new release's page never runs
    # an old bundle.
    "Cache-Control": "no-cache",
}
SYSTEM_FONTS: Final = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
THEME: Final = {
    "typography": {
        "fontFamily": SYSTEM_FONTS,
        "headings": {"fontFamily": SYSTEM_FONTS},
        "code": {"fontFamily": "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"},
    }
}
# Relative URLs (to /docs): the page works as well behind a proxy that serves otp under a prefix.
PAGE: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>otp API reference</title>
<link rel="icon" href="data:,">
</head>
<body>
<redoc spec-url="openapi.json" disable-search hide-hostname expand-responses="200,201"
  theme="{html.escape(json.dumps(THEME))}"></redoc>
<script src="docs/static/redoc.standalone.js"></script>
</body>
</html>
"""


class DocsHeaders:
    """The page's policy and headers, on the page and on the bundle alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


routes: list[BaseRoute] = [
    Route(PATH, page, methods=["GET"], middleware=[Middleware(DocsHeaders)]),
    Mount(
        f"{PATH}/static",
        app=StaticFiles(packages=[("otp.web", "static")]),
        middleware=[Middleware(DocsHeaders)],
    ),
]
