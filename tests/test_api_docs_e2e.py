"""/docs in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by Playwright as in
tests/test_dashboard_e2e.py) renders the served OpenAPI document with the vendored Redoc, asks no
host but otp's for anything, and meets no CSP violation or script error.

The screenshot goes to a temporary folder, or to ``$OTP_SCREENSHOTS`` as api-docs.png
(``OTP_SCREENSHOTS=docs/screenshots`` refreshes the README's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import make_settings
from delivery_fixtures import serving
from test_dashboard_e2e import CHROMIUM_ARGS, INSTALL_SECONDS, chromium, screenshots_dir

from otp.app import create_app
from otp.edge.embedded_redis import free_port
from otp.web import docs

__all__ = ["chromium"]  # the fixture, imported for this module's tests


async def _opened(page: Any, operation_id: str, status: str, code: str) -> None:
    """Open ``status``'s answer of the operation (Redoc's deep link names it by operationId) and
    see ``code`` listed."""
    await page.evaluate(f"location.hash = 'operation/{operation_id}'")
    operation = page.locator(f"[data-section-id='operation/{operation_id}']")
    await operation.get_by_role("button", name=status).click()
    await operation.get_by_text(code).first.wait_for()


@pytest.mark.timeout(INSTALL_SECONDS + 60)
async def test_the_docs_page_renders_every_surface_from_otp_alone(
    redis_url: str, chromium: str, tmp_path: Path
) -> None:
    pw = pytest.importorskip("playwright.async_api", reason="needs Playwright for Python (in the test extras)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with serving(create_app(make_settings(redis_url)), port), pw.async_playwright() as playwright:
        async with httpx.AsyncClient(base_url=base) as http:
            served = await http.get(docs.PATH)
        assert served.headers["content-security-policy"] == docs.CONTENT_SECURITY_POLICY
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await (await browser.new_context(viewport={"width": 1366, "height": 900})).new_page()
        requested: list[str] = []
        problems: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        # A CSP violation is a console error ("Refused to load …"); so is a failed request.
        page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        await page.goto(base + docs.PATH)
        # Redoc has fetched and rendered the document: the tag groups, a /v1 operation and a /v2 one
        # (in Twilio's words), each error answer opening on the codes it lists.
        await page.get_by_role("heading", name="Start (or resend) a verification").wait_for(timeout=30_000)
        text = (await page.inner_text("body")).casefold()  # the sidebar shows group names in capitals
        assert "/v1: otp's api" in text and "/v2: twilio verify compatible" in text
        await _opened(page, "CreateVerification", "403", "60410")
        await _opened(page, "startVerification", "429", "pumping_unproven_budget")
        # The screenshot: the start operation with its request and answer samples.
        await page.evaluate("location.hash = ''")
        await page.evaluate("location.hash = 'operation/startVerification'")
        await page.screenshot(path=str(screenshots_dir(tmp_path) / "api-docs.png"))
        await browser.close()

    assert not problems, problems
    elsewhere = [url for url in requested if urlsplit(url).scheme != "data" and not url.startswith(base + "/")]
    assert not elsewhere, elsewhere
    assert {urlsplit(url).path for url in requested if url.startswith(base)} == {
        docs.PATH,
        f"{docs.PATH}/static/redoc.standalone.js",
        "/openapi.json",
    }
