"""examples/login_app in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright as in tests/test_dashboard_e2e.py) signs users in through the app, run as its README
says (``python -m examples.login_app``), against a real `otp serve` whose SMS go through the real
twilio SDK to the Twilio stand-in; the codes are read from the messages the stand-in received, and
its signed status callbacks reach otp, so the code page can say "SMS delivered".

Covered: a wrong password, a wrong code (tries left), a resend and the one after it refused with
otp's retry_after, the delivery state before and after the callback, the approval token verified
offline against otp's JWKS, sign-out; five wrong codes locking the sign-in, with JavaScript off; a
number otp's allowed countries refuse. Screenshots go to a temporary folder, or to
``$OTP_SCREENSHOTS`` (``OTP_SCREENSHOTS=docs/screenshots`` refreshes the README's login-*.png).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import repo_root
from delivery_fixtures import ACCOUNT_SID, AUTH_TOKEN
from dev_server import running
from test_dashboard_e2e import CHROMIUM_ARGS, chromium, screenshots_dir
from test_serve import clean_env, otp_command

from examples.login_app.approval import Approvals, NotApproved
from examples.login_app.users import DEMO_PASSWORD, DEMO_USER, Users
from otp.client import AsyncClient
from otp.devtools.twilio_stub import TwilioStub
from otp.edge.embedded_redis import free_port

__all__ = ["chromium"]  # the session fixture that finds (or installs) /usr/bin/chromium

DEMO_PHONE = "+15017122661"
LOCKED_PHONE = "+15017122662"
FRENCH_PHONE = "+33612345678"  # outside OTP_ALLOWED_COUNTRIES
TOKEN_PHONE = "+15017122663"
CODE = re.compile(r"(?<!\d)\d{4,10}(?!\d)")
SECRET = "login-app-e2e-secret-" + "3" * 32


@dataclass
class Stack:
    app: str  # the login app's base URL
    otp: str
    stub: TwilioStub
    key: str  # the app's API key: the development one `otp serve` wrote

    def codes(self, to: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """The codes of the SMS the stand-in received for ``to``, once there are ``count``."""
        deadline = time.monotonic() + timeout
        while True:
            bodies = [m.body for m in self.stub.messages if m.to == to]
            if len(bodies) >= count:
                return [found.group(0) for body in bodies if (found := CODE.search(body))]
            assert time.monotonic() < deadline, f"{len(bodies)} SMS to {to}, expected {count}"
            time.sleep(0.05)


def wrong(code: str) -> str:
    return code[:-1] + str((int(code[-1]) + 1) % 10)


def otp_env(port: int, stub: TwilioStub) -> dict[str, str]:
    """The development `otp serve` (embedded Redis, generated secret) sending through the stand-in:
    what a Twilio setup needs (otp/startup.py), OTP_PUBLIC_URL on otp itself for the callbacks."""
    return clean_env(
        OTP_PORT=str(port),
        OTP_ARGON2_MEMORY_KIB="8192",
        OTP_ARGON2_TIME_COST="1",
        OTP_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        OTP_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        OTP_TWILIO_FROM="+15005550006",
        OTP_TWILIO_API_URL=stub.url,
        OTP_PUBLIC_URL=f"http://127.0.0.1:{port}",
        OTP_WEBOTP_DOMAIN="127.0.0.1",
        OTP_ALLOWED_COUNTRIES="US",
    )


def start_app(env: dict[str, str], base: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        app = subprocess.Popen(
            [sys.executable, "-m", "examples.login_app"], env=env, cwd=repo_root(), stdout=out, stderr=out
        )
    deadline = time.monotonic() + 20
    while True:
        assert app.poll() is None, f"the login app exited:\n{log.read_text()}"
        try:
            if httpx.get(base + "/signin", timeout=1).status_code == 200:
                return app
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the login app did not start:\n{log.read_text()}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("login-app")
    with TwilioStub(ACCOUNT_SID, AUTH_TOKEN) as stub:
        # Callbacks a moment after the send, so the code page first says "not delivered yet".
        stub.script(DEMO_PHONE, "delayed", delay=3.0)
        port = free_port()
        with running(otp_command("serve"), otp_env(port, stub), folder, port) as otp:
            users = Users(folder / "users.sqlite3")
            users.add("sam", "sam's password", name="Sam Locked", phone=LOCKED_PHONE)
            users.add("pierre", "pierre's password", name="Pierre Abroad", phone=FRENCH_PHONE)
            app_port = free_port()
            base = f"http://127.0.0.1:{app_port}"
            env = clean_env(
                OTP_URL=otp.base,
                # No OTP_API_KEY: the app takes the development key from otp's data folder, as
                # its README's first run does (the app runs in the repository's root, otp here).
                OTP_DATA_DIR=str(folder / ".otp"),
                OTP_ISSUER=otp.base,  # otp's OTP_PUBLIC_URL
                LOGIN_APP_SECRET=SECRET,
                LOGIN_APP_DB=str(folder / "users.sqlite3"),
                LOGIN_APP_PORT=str(app_port),
                LOGIN_APP_DEMO_PHONE=DEMO_PHONE,
            )
            app = start_app(env, base, folder / "login-app.log")
            try:
                yield Stack(base, otp.base, stub, (folder / ".otp" / "dev-api-key").read_text().strip())
            finally:
                app.terminate()
                app.wait(timeout=15)


class Browser:
    """One Chromium page on the app that records what a strict CSP or a script error would log."""

    def __init__(self, playwright: Any, executable: str, base: str, *, javascript: bool) -> None:
        self.browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = self.browser.new_context(viewport={"width": 480, "height": 800}, java_script_enabled=javascript)
        self.page = context.new_page()
        self.base = base
        self.problems: list[str] = []
        self.requested: list[str] = []
        # Refusal pages (400, 403, 429) log "Failed to load resource" for the document itself.
        self.page.on(
            "console",
            lambda msg: (
                self.problems.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                else None
            ),
        )
        self.page.on("pageerror", lambda exc: self.problems.append(str(exc)))
        self.page.on("request", lambda request: self.requested.append(request.url))

    def text(self, selector: str = "main") -> str:
        return str(self.page.inner_text(selector))

    def sign_in(self, username: str, password: str) -> None:
        self.page.goto(self.base + "/signin")
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        self.page.click("button[type=submit]")

    def enter(self, code: str) -> None:
        self.page.fill("#code", code)
        self.page.click("form[action='/code'] button[type=submit]")

    def close(self) -> None:
        self.browser.close()
        assert not self.problems, self.problems  # CSP violations and script errors show up here
        assert all(url.startswith(self.base) for url in self.requested), self.requested


@pytest.fixture
def playwright() -> Iterator[Any]:
    # Per test: while the sync API's driver runs, its event loop is this thread's, and the async
    # test below needs the thread's loop for itself.
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="needs Playwright for Python (pip install playwright, in the test extras); no browser download",
    )
    with sync_api.sync_playwright() as driver:
        yield driver


def test_a_user_signs_in_with_the_sms_code_after_a_wrong_code_and_a_resend(
    stack: Stack, playwright: Any, chromium: str, tmp_path: Path
) -> None:
    shots = screenshots_dir(tmp_path)
    browser = Browser(playwright, chromium, stack.app, javascript=True)
    page = browser.page
    page.goto(stack.app + "/")
    assert page.url == stack.app + "/signin"
    page.screenshot(path=str(shots / "login-signin.png"), full_page=True)

    browser.sign_in(DEMO_USER, "not the password")
    assert "Wrong username or password." in browser.text("#notice")
    assert not [m for m in stack.stub.messages if m.to == DEMO_PHONE]  # no SMS before the password is right

    browser.sign_in(DEMO_USER, DEMO_PASSWORD)
    page.wait_for_url(stack.app + "/code")
    assert browser.text("#to") == "+1*******2661"  # masked by otp
    assert browser.text("#delivery").startswith("SMS not delivered yet.")
    field = page.locator("#code")
    assert (field.get_attribute("autocomplete"), field.get_attribute("inputmode")) == ("one-time-code", "numeric")
    page.screenshot(path=str(shots / "login-code.png"), full_page=True)
    (first,) = stack.codes(DEMO_PHONE)

    browser.enter(wrong(first))
    assert "Wrong code. 4 tries left." in browser.text("#notice")
    page.screenshot(path=str(shots / "login-wrong-code.png"), full_page=True)
    page.locator("#code").evaluate("field => field.removeAttribute('pattern')")  # a browser that doesn't check it
    browser.enter("12ab56")
    assert "Enter the code from the SMS: digits only." in browser.text("#notice")  # otp's 400 on `code`

    page.click("#resend")  # the first resend goes out at once
    page.wait_for_url(stack.app + "/code?m=resent")
    assert "We sent a new code." in browser.text("#notice")
    resent = stack.codes(DEMO_PHONE, count=2)[-1]
    page.click("#resend")  # the next one is too soon: otp's retry_after, counted down
    page.wait_for_url(stack.app + "/code?m=wait")
    waiting = re.fullmatch(r"You can't resend yet: try again in (\d+) s\.", browser.text("#notice"))
    assert waiting and 0 < int(waiting.group(1)) <= 20, browser.text("#notice")
    assert page.locator("#resend").is_disabled()
    assert "(try again in" in browser.text("#resend")

    # The stand-in's signed callbacks reach otp; the Refresh link shows what otp knows.
    deadline = time.monotonic() + 10
    while not browser.text("#delivery").startswith("SMS delivered."):
        assert time.monotonic() < deadline, browser.text("#delivery")
        time.sleep(0.3)
        page.click("#delivery a")
    assert any(params.get("MessageStatus") == "delivered" for _, params, _ in stack.stub.callbacks_sent)
    page.screenshot(path=str(shots / "login-resend.png"), full_page=True)

    browser.enter(resent)
    page.wait_for_url(stack.app + "/")
    assert browser.text("#who") == "Demo User"
    assert "Signed in as Demo User (demo)." in browser.text()
    page.screenshot(path=str(shots / "login-signed-in.png"), full_page=True)
    cookie = next(c for c in page.context.cookies() if c["name"] == "login_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page.click("button:text-is('Sign out')")
    page.wait_for_url(stack.app + "/signin?m=signed_out")
    assert "You are signed out." in browser.text("#notice")
    page.goto(stack.app + "/")
    assert page.url == stack.app + "/signin"
    browser.close()


def test_five_wrong_codes_lock_the_sign_in_and_the_pages_need_no_javascript(
    stack: Stack, playwright: Any, chromium: str, tmp_path: Path
) -> None:
    shots = screenshots_dir(tmp_path)
    browser = Browser(playwright, chromium, stack.app, javascript=False)
    browser.sign_in("sam", "sam's password")
    browser.page.wait_for_url(stack.app + "/code")
    (code,) = stack.codes(LOCKED_PHONE)
    for left in (4, 3, 2, 1):
        browser.enter(wrong(code))
        assert f"Wrong code. {left} {'try' if left == 1 else 'tries'} left." in browser.text("#notice")
    browser.enter(wrong(code))
    assert browser.text("h1") == "Too many wrong codes"
    assert "Sign in again to get a new one." in browser.text("#refusal")
    browser.page.screenshot(path=str(shots / "login-locked.png"), full_page=True)
    browser.page.goto(stack.app + "/code")  # the locked sign-in is over: back to the password
    assert browser.page.url == stack.app + "/signin"
    browser.close()


def test_a_number_otp_refuses_gets_a_page_that_says_so(stack: Stack, playwright: Any, chromium: str) -> None:
    browser = Browser(playwright, chromium, stack.app, javascript=True)
    browser.sign_in("pierre", "pierre's password")
    assert browser.text("h1") == "We can't text your phone"
    assert "contact support" in browser.text("#refusal")
    assert not [m for m in stack.stub.messages if m.to == FRENCH_PHONE]
    browser.close()


async def test_the_approval_token_verifies_offline_only_for_our_key_otps_issuer_and_its_verification(
    stack: Stack,
) -> None:
    """What the app checks before it signs anyone in, against the JWKS otp serves."""
    async with AsyncClient(stack.otp, stack.key) as otp:
        started = await otp.start(TOKEN_PHONE)
        (code,) = await asyncio.to_thread(stack.codes, TOKEN_PHONE)
        token = (await otp.check(code, verification_id=started.id)).token
    assert token
    key_id = stack.key.split("_")[1]
    ours = Approvals(stack.otp + "/.well-known/jwks.json", audience=key_id, issuer=stack.otp)
    claims = await ours.verify(token, started.id)
    assert claims["vid"] == started.id and claims["aud"] == key_id and claims["iss"] == stack.otp
    with pytest.raises(NotApproved, match="another verification"):
        await ours.verify(token, "VE" + "0" * 32)
    with pytest.raises(NotApproved, match="Audience doesn't match"):
        await Approvals(ours.jwks_url, audience="0" * 16, issuer=stack.otp).verify(token, started.id)
    with pytest.raises(NotApproved, match="Invalid issuer"):
        await Approvals(ours.jwks_url, audience=key_id, issuer="otp").verify(token, started.id)
    forged = token.rsplit(".", 1)[0] + "." + "A" * 86  # an Ed25519 signature's length, not otp's
    with pytest.raises(NotApproved, match="Signature verification failed"):
        await ours.verify(forged, started.id)
