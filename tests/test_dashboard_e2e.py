"""The dashboard in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright, against the service under uvicorn with its SMS worker sending through the Twilio
stand-in (signed status callbacks, an undelivered and a failed message included).

Flow: sign in; the overview's SVG charts render and its figures match GET /v1/stats/overview; a
pumping burst under +1415555 gets the prefix blocked, the Fraud page shows it, Unblock lifts it;
the audit log shows the unblock with the admin key's name; sign out, and the dashboard refuses.

Needs Playwright for Python (in the test extras; never ``playwright install``: it drives the
system Chromium) and /usr/bin/chromium: as root the test installs it with apt-get (Debian's
``chromium`` package, up to 5 minutes), otherwise it skips saying what to install.
Screenshots go to a temporary folder, or to ``$OTP_SCREENSHOTS`` (``OTP_SCREENSHOTS=docs/screenshots``
refreshes the README's) as signin.png, overview.png, fraud.png, audit.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import make_settings, policy, repo_root
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN, serving, twilio_options

from otp.app import create_app
from otp.core import apikeys
from otp.core.policy import PolicyConfig
from otp.devtools.twilio_stub import TwilioStub
from otp.edge.embedded_redis import free_port
from otp.storage.client import connect
from otp.storage.store import Store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_SECONDS = 300
FINAL = {"delivered", "undelivered", "failed"}
APPROVED = ["+12025550143", "+13125550143", "+33612345678", "+919876543210"]
UNDELIVERED, FAILED = "+4915112345678", "+5511987654321"
PUMPED = [f"+141555501{n:02d}" for n in range(8)]
# The prefix's own threshold (6 unverified an hour) blocks it; the tenant's unproven budgets,
# which would refuse first without a block to show, are out of the way.
BUDGETS_OFF = policy(unproven_country_floor=1000, unproven_tenant_floor=1000)


def _install_chromium() -> str | None:
    """Why Chromium is still missing after trying to install it, or None when it is there."""
    if os.path.exists(CHROMIUM):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"needs {CHROMIUM}: run `apt-get install -y chromium` as root (Debian's package)"
    deadline = time.monotonic() + INSTALL_SECONDS
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
            left = deadline - time.monotonic()
            subprocess.run(command, check=True, capture_output=True, timeout=max(1.0, left), env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"could not install Debian's chromium within {INSTALL_SECONDS} s: {exc}"
    return None if os.path.exists(CHROMIUM) else f"apt-get installed chromium, but {CHROMIUM} is missing"


@pytest.fixture(scope="session")
def chromium() -> str:
    why = _install_chromium()
    if why:
        pytest.skip(why)
    return CHROMIUM


@dataclass
class Live:
    base: str
    http: httpx.AsyncClient
    stub: TwilioStub
    key: str
    admin_key: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def start(self, to: str) -> httpx.Response:
        return await self.http.post("/v1/verifications", json={"to": to}, headers=self.auth())

    async def code_for(self, to: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            bodies = [m.body for m in self.stub.messages if m.to == to]
            if bodies:
                match = re.search(r"(?<!\d)\d{4,10}(?!\d)", bodies[-1])
                assert match
                return match.group(0)
            assert time.monotonic() < deadline, f"no SMS to {to}"
            await asyncio.sleep(0.05)

    async def settled(self, vid: str, timeout: float = 15.0) -> str:
        """Wait for the last send's final delivery state."""
        deadline = time.monotonic() + timeout
        while True:
            body = (await self.http.get(f"/v1/verifications/{vid}", headers=self.auth())).json()
            status = str(body["send_attempts"][-1]["delivery"]["status"])
            if status in FINAL:
                return status
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def live_dashboard(redis_url: str, rules: PolicyConfig = BUDGETS_OFF) -> AsyncIterator[Live]:
    """The app served on a free port, sending through the Twilio stand-in, with a client key and
    an admin key."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as stub:
        settings = make_settings(redis_url, policy=rules, **twilio_options(base, stub))
        async with serving(create_app(settings), port):
            client = connect(redis_url)
            _, key = await apikeys.create(Store(client, partitions=16), "e2e-client")
            _, admin_key = await apikeys.create(Store(client, partitions=16), "e2e-admin", admin=True)
            await client.aclose()
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                yield Live(base, http, stub, key, admin_key)


async def make_traffic(live: Live) -> None:
    """Approved verifications in four countries, an undelivered and a rejected SMS, a wrong code,
    then a pumping burst: eight unverified starts under +1415555 (the 7th is over the floor)."""
    live.stub.script(UNDELIVERED, "undelivered", error_code=30003)
    live.stub.script(FAILED, "reject", code=21211)  # refused at send time: the worker records the code
    vids = {}
    for to in [*APPROVED, UNDELIVERED, FAILED]:
        response = await live.start(to)
        assert response.status_code == 201, response.text
        vids[to] = response.json()["id"]
    wrong = await live.http.post(
        "/v1/verifications/check", json={"id": vids[APPROVED[0]], "code": "000000"}, headers=live.auth()
    )
    assert wrong.json()["approved"] is False
    for to in APPROVED:
        check = {"id": vids[to], "code": await live.code_for(to)}
        assert (await live.http.post("/v1/verifications/check", json=check, headers=live.auth())).json()["approved"]
    statuses = []
    for to in PUMPED:
        response = await live.start(to)
        statuses.append(response.status_code)
        if response.status_code == 201:
            vids[to] = response.json()["id"]
    assert statuses[:6] == [201] * 6 and all(s in (403, 429) for s in statuses[6:]), statuses
    settled = {to: await live.settled(vid) for to, vid in vids.items()}
    assert settled[UNDELIVERED] == "undelivered" and settled[FAILED] == "failed"


def screenshots_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get("OTP_SCREENSHOTS")
    folder = (repo_root() / chosen) if chosen and not os.path.isabs(chosen) else Path(chosen or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.timeout(INSTALL_SECONDS + 120)
async def test_dashboard_in_chromium(redis_url: str, chromium: str, tmp_path: Path) -> None:
    pw = pytest.importorskip(
        "playwright.async_api",
        reason="needs Playwright for Python (pip install playwright, in the test extras); no browser download",
    )
    shots = screenshots_dir(tmp_path)
    async with live_dashboard(redis_url) as live, pw.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        problems: list[str] = []
        requested: list[str] = []
        # Refused pages (a 403 for a non-admin key) log "Failed to load resource": only
        # subresources must load, and CSP violations or script errors are problems.
        page.on(
            "console",
            lambda msg: (
                problems.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on(
            "response",
            lambda r: (
                problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and r.request.resource_type != "document"
                else None
            ),
        )
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("request", lambda request: requested.append(request.url))

        # Signed out: the dashboard sends us to sign in.
        await page.goto(live.base + "/admin/")
        assert page.url == live.base + "/admin/signin"
        assert await page.evaluate("getComputedStyle(document.body).marginTop") == "0px"  # the stylesheet loaded
        await page.screenshot(path=str(shots / "signin.png"), full_page=True)
        await page.fill("#key", live.key)  # a non-admin key is refused
        await page.click("button[type=submit]")
        assert "not an admin key" in await page.inner_text("main")

        await make_traffic(live)

        await page.fill("#key", live.admin_key)
        await page.click("button[type=submit]")
        await page.wait_for_url(live.base + "/admin/")
        await page.click("nav.windows a:text-is('1h')")
        await page.wait_for_url(live.base + "/admin/?window=1h")
        assert await page.locator("svg.chart").count() >= 5
        assert await page.locator("svg.chart > title").count() == await page.locator("svg.chart").count()
        assert await page.locator("#chart-verifications circle").count() > 0
        assert await page.locator("#chart-funnel rect").count() == 5
        api = (await live.http.get("/v1/stats/overview?since=1h", headers=live.auth(live.admin_key))).json()
        totals = api["totals"]
        # 4 approved, 1 undelivered, 1 failed, 6 of the 8 pumped
        assert totals["started"] == 12 and totals["approved"] == 4
        for metric in ("started", "approved", "expired", "resent", "refused", "canceled"):
            assert await page.inner_text(f"dd[data-metric={metric}]") == f"{totals[metric]:,}", metric
        assert await page.inner_text("dd[data-metric=conversion_rate]") == f"{totals['conversion_rate'] * 100:.1f} %"
        errors = await page.inner_text("#delivery-errors")
        assert "21211" in errors and "undelivered" in errors
        for row in api["delivery"]["errors"]:
            assert f"{row['status']}\t{row['error_code'] or '(none)'}\t{row['count']:,}" in errors
        funnel = api["delivery"]["funnel"]
        assert funnel["undelivered"] == 1 and funnel["failed"] == 1 and funnel["delivered"] >= 7
        await page.screenshot(path=str(shots / "overview.png"), full_page=True)

        await page.click("header nav a:text-is('Fraud')")
        blocked = page.locator("#blocked")
        assert "+1415555" in await blocked.inner_text()
        assert "+1415555" in await page.inner_text("#prefixes")
        assert await page.locator("#chart-country-conversion rect").count() >= 4
        await page.screenshot(path=str(shots / "fraud.png"), full_page=True)
        await page.click("button[aria-label='Unblock +1415555']")
        await page.click("form.confirm button[type=submit]")  # the confirmation page's second step
        await page.wait_for_url(re.compile(r".*/admin/fraud\?.*done=unblock.*"))
        assert "Unblocked +1415555." in await page.inner_text("main")
        assert "+1415555" not in await page.inner_text("#blocked")

        await page.click("header nav a:text-is('Audit log')")
        await page.wait_for_url(live.base + "/admin/audit")
        newest = await page.inner_text("#events tbody tr:first-child")
        assert "admin" in newest and "unblock +1415555 by e2e-admin" in newest
        await page.screenshot(path=str(shots / "audit.png"), full_page=True)
        await page.select_option("#f-event", "admin")
        await page.click("form.filters button[type=submit]")
        await page.wait_for_url(re.compile(r".*/admin/audit\?.*event=admin.*"))
        # The unblock, the sign-in before it and the refused non-admin key's attempt.
        assert await page.locator("#events tbody tr").count() == 3
        async with page.expect_download() as download:
            await page.click("a:text-is('Export CSV')")
        exported = await asyncio.to_thread(Path(await (await download.value).path()).read_text)
        assert "unblock" not in exported.split("\n")[0] and ",admin," in exported

        await page.click("header .who button")
        await page.wait_for_url(re.compile(r".*/admin/signin\?m=signed_out"))
        assert "You are signed out." in await page.inner_text("main")
        await page.goto(live.base + "/admin/fraud")
        assert page.url == live.base + "/admin/signin"
        await browser.close()

    assert not problems, problems  # CSP violations and script errors show up here
    assert requested and all(url.startswith(live.base + "/admin") for url in requested), requested
