"""The Incidents and Brute force pages in Chromium (as tests/test_dashboard_e2e.py: Debian's
/usr/bin/chromium driven by Playwright, the service under uvicorn sending through the Twilio
stand-in), during a simulated pumping burst from two IPs and a brute-force run.

The attacking prefix, the two IPs and the key are at the top of their tables with first and last
seen, and their links filter the audit log to them; the brute-force list names the locked number,
its two locked verifications and the guessing IP; Unblock asks for confirmation; the pages read on
a 390 px phone and the audit table fits 1366 px. Screenshots go where test_dashboard_e2e's go
(``OTP_SCREENSHOTS=docs/screenshots`` refreshes the README's): incidents.png, bruteforce.png,
incidents-phone.png, confirm-unblock.png.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import policy
from test_dashboard_e2e import CHROMIUM_ARGS, INSTALL_SECONDS, Live, live_dashboard, screenshots_dir
from test_dashboard_e2e import chromium as chromium  # the fixture that installs it

IP_A, IP_B, GUESSER, USER_IP = "203.0.113.7", "203.0.113.8", "198.51.100.66", "192.0.2.10"
PUMPED = [f"+141555501{n:02d}" for n in range(12)]
LEGIT = ["+12025550143", "+33612345678"]
TARGET = "+13125550199"  # the brute-force run's number: masked +1*********99
# The prefix's own threshold blocks the burst (the tenant's unproven budgets out of the way), and
# no resend cooldown stands between the brute-force run's verifications of one number.
POLICY = policy(unproven_country_floor=1000, unproven_tenant_floor=1000, resend_cooldown=0)


def live_service(redis_url: str) -> contextlib.AbstractAsyncContextManager[Live]:
    return live_dashboard(redis_url, POLICY)


async def attack(live: Live) -> None:
    """Two real users approve; a pumping burst under +1415555 alternates two IPs (the 7th start on
    is refused: the prefix is blocked); then a brute-force run on TARGET from one IP: two
    verifications run out of attempts, and the third's check is refused (the number is locked)."""
    for to in LEGIT:
        vid = (await live.http.post("/v1/verifications", json={"to": to, "ip": USER_IP}, headers=live.auth())).json()
        check = {"id": vid["id"], "code": await live.code_for(to), "ip": USER_IP}
        assert (await live.http.post("/v1/verifications/check", json=check, headers=live.auth())).json()["approved"]
    statuses = []
    for n, to in enumerate(PUMPED):
        body = {"to": to, "ip": IP_A if n % 2 == 0 else IP_B}
        statuses.append((await live.http.post("/v1/verifications", json=body, headers=live.auth())).status_code)
    assert statuses[:6] == [201] * 6 and all(s in (403, 429) for s in statuses[6:]), statuses
    for round_ in range(3):
        start = await live.http.post("/v1/verifications", json={"to": TARGET}, headers=live.auth())
        assert start.status_code == 201, start.text
        for _ in range(5 if round_ < 2 else 1):
            guess = {"id": start.json()["id"], "code": "000000", "ip": GUESSER}
            answer = await live.http.post("/v1/verifications/check", json=guess, headers=live.auth())
            assert answer.status_code == (200 if round_ < 2 else 429), answer.text


async def audit_column(page: Any, header: str) -> list[str]:
    """The values of one column of the audit table on the page."""
    headers = [h.strip() for h in await page.locator("#events thead th").all_inner_texts()]
    index = headers.index(header) + 1
    cells = page.locator(f"#events tbody tr > :nth-child({index})")
    return [c.strip() for c in await cells.all_inner_texts()]


async def first_row(page: Any, table: str) -> list[str]:
    return [c.strip() for c in await page.locator(f"#{table} tbody tr:first-child > *").all_inner_texts()]


@pytest.mark.timeout(INSTALL_SECONDS + 120)
async def test_incidents_and_bruteforce_in_chromium(redis_url: str, chromium: str, tmp_path: Path) -> None:
    pw = pytest.importorskip("playwright.async_api", reason="needs Playwright for Python (the test extras)")
    shots = screenshots_dir(tmp_path)
    async with live_service(redis_url) as live, pw.async_playwright() as playwright:
        await attack(live)
        key_id = live.key.split("_")[1]
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

        await page.goto(live.base + "/admin/signin")
        await page.fill("#key", live.admin_key)
        await page.click("button[type=submit]")
        await page.wait_for_url(live.base + "/admin/")
        await page.click("header nav a:text-is('Incidents')")
        await page.click("nav.windows a:text-is('1h')")
        await page.wait_for_url(live.base + "/admin/incidents?window=1h")

        # The attacking prefix, the two IPs and the key at the top, with first and last seen.
        prefix = await first_row(page, "incidents-prefix")
        assert prefix[:4] == ["+1415555", "6", "6", "0.0 %"], prefix
        assert re.fullmatch(r"\d\d \w{3} \d\d:\d\d", prefix[4]) and re.fullmatch(r"\d\d \w{3} \d\d:\d\d", prefix[5])
        ips = [await first_row(page, "incidents-ip"), (await page.locator("#incidents-ip tbody tr").all())[1]]
        second = [c.strip() for c in await ips[1].locator("> *").all_inner_texts()]
        assert {ips[0][0], second[0]} == {IP_A, IP_B} and ips[0][1] == second[1] == "3", (ips[0], second)
        assert ips[0][4] != "–" and second[5] != "–"
        key = await first_row(page, "incidents-key")
        assert key[0] == key_id and int(key[1]) >= 7, key  # 6 pumping refusals and the locked number's
        rule = await first_row(page, "incidents-rule")
        assert rule[0] == "sms_pumping_prefix" and rule[1] == "6"
        assert await page.locator("#incidents-prefix svg.spark").count() >= 1
        assert await page.locator("dd[data-metric=top_prefix]").inner_text() == "+1415555"
        await page.screenshot(path=str(shots / "incidents.png"), full_page=True)

        # Each link filters the audit log to its row.
        await page.click(f"#incidents-ip a:text-is('{IP_A}')")
        await page.wait_for_url(re.compile(r".*/admin/audit\?ip=203\.0\.113\.7.*"))
        shown = await audit_column(page, "IP")
        assert shown and set(shown) == {IP_A}, shown
        assert "refused" in await audit_column(page, "Event")
        await page.go_back()
        await page.click("#incidents-prefix a:text-is('+1415555')")
        await page.wait_for_url(re.compile(r".*/admin/audit\?prefix=%2B1415555.*"))
        numbers = await audit_column(page, "Number")
        assert len(numbers) >= 12 and all(n.startswith("+1*********") for n in numbers), numbers
        assert set(await audit_column(page, "IP")) == {IP_A, IP_B}
        await page.go_back()
        await page.click(f"#incidents-key a:text-is('{key_id}')")
        await page.wait_for_url(re.compile(r".*/admin/audit\?key=.*"))
        assert set(await audit_column(page, "Key")) == {key_id}

        # The brute-force run: the locked number with the guessing IP, its two locked verifications.
        await page.click("header nav a:text-is('Brute force')")
        number = await first_row(page, "locked-numbers")
        assert number[0] == "+1*********99" and number[3] == GUESSER and number[-1].startswith("until"), number
        assert await page.locator("#locked-verifications tbody tr").count() == 2
        assert await page.locator("dd[data-metric=locked_verifications]").inner_text() == "2"
        await page.screenshot(path=str(shots / "bruteforce.png"), full_page=True)
        await page.click(f"#locked-numbers a:text-is('{GUESSER}')")
        await page.wait_for_url(re.compile(r".*/admin/audit\?ip=198\.51\.100\.66.*"))
        events = await audit_column(page, "Event")
        assert {"check_failed", "max_attempts", "refused"} <= set(events) and set(await audit_column(page, "IP")) == {
            GUESSER
        }

        # Blocks say since when and why; Unblock asks first.
        await page.click("header nav a:text-is('Fraud')")
        blocked = await page.inner_text("#blocked")
        assert "+1415555" in blocked and "6 sent, 0 approved" in blocked
        await page.click("button[aria-label='Unblock +1415555']")
        assert await page.inner_text("h1") == "Unblock +1415555?"
        await page.screenshot(path=str(shots / "confirm-unblock.png"), full_page=True)
        await page.click("form.confirm button[type=submit]")
        await page.wait_for_url(re.compile(r".*/admin/fraud\?.*done=unblock.*"))
        assert "+1415555" not in await page.inner_text("#blocked")

        # The audit table at 1366 px: every column is on screen, nothing scrolls sideways.
        await page.set_viewport_size({"width": 1366, "height": 900})
        await page.goto(live.base + "/admin/audit")
        box = page.locator("#events")
        assert await box.evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")
        last_header = await page.locator("#events thead th:last-child").bounding_box()
        assert last_header and last_header["x"] + last_header["width"] <= 1366

        # A 390 px phone: no page scrolls sideways, the tables and charts scroll in their boxes.
        phone = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        mobile = await phone.new_page()
        mobile.on("pageerror", lambda exc: problems.append(str(exc)))
        await mobile.goto(live.base + "/admin/signin")
        await mobile.fill("#key", live.admin_key)
        await mobile.click("button[type=submit]")
        for path in ("/admin/?window=1h", "/admin/incidents?window=1h", "/admin/bruteforce", "/admin/fraud"):
            await mobile.goto(live.base + path)
            width = await mobile.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)
        await mobile.goto(live.base + "/admin/incidents?window=1h")
        await mobile.screenshot(path=str(shots / "incidents-phone.png"), full_page=True)
        await mobile.goto(live.base + "/admin/?window=1h")
        # Chart labels keep a readable size: the chart scrolls rather than shrinks below 560 px.
        chart = await mobile.locator("#chart-verifications").bounding_box()
        assert chart and chart["width"] >= 560
        await browser.close()
    assert not problems, problems
