"""examples/login_app without a browser: the page each refusal from otp gets (from otp's own error
bodies, decoded by otp.client as the app sees them), the app when otp is down, its forms' CSRF
check, its settings and its user store. The whole sign-in, in Chromium against a real `otp serve`,
is tests/test_login_app_e2e.py."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.responses import Response

from examples.login_app import pages, refusals
from examples.login_app.app import create_app
from examples.login_app.config import Config, ConfigError, from_env
from examples.login_app.users import DEMO_PASSWORD, DEMO_USER, Users
from otp.client import CheckResult, OtpError, WrongCode, errors
from otp.core import refusals as core_refusals
from otp.core.policy import Decision
from otp.edge.embedded_redis import free_port
from otp.web import errors as web_errors

KEY = "otpk_3f2a9c0011223344_" + "5" * 64
SECRET = "login-app-test-secret-" + "6" * 32


def otp_said(status: int, code: str, *, field: str | None = None, retry_after: int | None = None) -> OtpError:
    """The error otp.client raises for otp's JSON error answer."""
    body = {"error": {"code": code, "message": code.replace("_", " "), "field": field, "retry_after": retry_after}}
    headers = {"retry-after": str(retry_after)} if retry_after else {}
    return errors.from_answer(status, headers, json.dumps(body).encode())


def otp_refused(rule: str, reason: str, retry_after: int) -> OtpError:
    """The error otp.client raises for otp's own answer to a send its policy refused: the refusal
    otp.core builds, rendered by otp.web as /v1 answers it (its rule in the body)."""
    answer = web_errors.json_response(
        web_errors.failure(core_refusals.rate_limited(Decision(False, rule, reason, retry_after)))
    )
    return errors.from_answer(answer.status_code, dict(answer.headers), bytes(answer.body))


def shown(page: Response) -> str:
    """The page's HTML with its entities decoded (an apostrophe is escaped as &#x27;)."""
    return html.unescape(bytes(page.body).decode())


def not_approving(status: str) -> WrongCode:
    return WrongCode(CheckResult(id="VE" + "1" * 32, status=status, approved=False, attempts_left=0, delivery=None))


START_REFUSALS = [
    (otp_said(429, "resend_too_soon", retry_after=12), 429, "Too many codes", "Try again in 12 s."),
    (otp_refused("number_sends", "number_hourly_limit", 2880), 429, "Too many codes", "Try again in 48 min."),
    (otp_refused("number_sends", "number_hourly_limit", 90), 429, "Too many codes", "Try again in 90 s."),
    (otp_refused("number_sends", "number_hourly_limit", 91), 429, "Too many codes", "Try again in 2 min."),
    (
        otp_refused("sms_pumping_tenant_country", "pumping_unproven_budget", 3600),
        403,
        "We can't text your phone",
        "contact support",
    ),
    (otp_refused("sms_pumping_prefix", "prefix_blocked", 1800), 403, "We can't text your phone", "contact support"),
    (otp_refused("sms_pumping_prefix", "pumping_in_flight", 2), 429, "Too many codes", "Try again in 2 s."),
    (otp_said(403, "country_not_allowed", field="to"), 403, "We can't text your phone", "contact support"),
    (otp_said(403, "number_blocked", field="to"), 403, "We can't text your phone", "contact support"),
    (otp_said(400, "invalid_number", field="to"), 403, "We can't text your phone", "contact support"),
    (otp_said(401, "unauthorized", field="Authorization"), 503, "Sign-in is unavailable", "try again in 30"),
    (otp_said(503, "unavailable", retry_after=5), 503, "Sign-in is unavailable", "try again in 5 seconds"),
]
CHECK_REFUSALS = [
    (not_approving("max_attempts_reached"), 403, "Too many wrong codes", "Sign in again to get a new one."),
    (not_approving("expired"), 410, "The code has expired", "Sign in again"),
    (not_approving("canceled"), 410, "The code has expired", "Sign in again"),
    (otp_said(409, "already_approved"), 410, "The code has expired", "Sign in again"),
    (otp_said(404, "not_found", field="id"), 410, "The code has expired", "Sign in again"),
    (otp_said(429, "too_many_failed_checks", retry_after=1800), 429, "Too many tries", "Try again in 30 min."),
    (errors.Unavailable("no answer", status=None, code="unreachable"), 503, "Sign-in is unavailable", "try again"),
]


@pytest.mark.parametrize(("error", "status", "title", "says"), START_REFUSALS)
def test_each_refused_send_has_a_page_that_says_what_happened(
    error: OtpError, status: int, title: str, says: str
) -> None:
    page = pages.refused(refusals.for_start(error))
    assert page.status_code == status
    assert f"<h1>{title}</h1>" in shown(page) and says in shown(page)


@pytest.mark.parametrize(("error", "status", "title", "says"), CHECK_REFUSALS)
def test_each_refused_check_has_a_page_that_says_what_happened(
    error: OtpError, status: int, title: str, says: str
) -> None:
    page = pages.refused(refusals.for_check(error))
    assert page.status_code == status
    assert f"<h1>{title}</h1>" in shown(page) and says in shown(page)


def test_waits_are_sent_as_retry_after_and_finished_sign_ins_link_to_the_password_form() -> None:
    limited = pages.refused(refusals.for_start(otp_said(429, "resend_too_soon", retry_after=12)))
    assert limited.headers["retry-after"] == "12" and 'href="/signin"' in shown(limited)
    # otp unavailable while checking: the code still works once it answers, so "Try again" goes back to it.
    down = pages.refused(refusals.for_check(otp_said(503, "unavailable", retry_after=5)))
    assert down.headers["retry-after"] == "5" and 'href="/code">Try again' in shown(down)


def test_values_on_the_pages_are_escaped() -> None:
    page = pages.sign_in("t", username='<script>alert("x")</script>', message="Wrong username or password.")
    assert "<script>alert" not in bytes(page.body).decode() and "&lt;script&gt;" in bytes(page.body).decode()


# -- the app, in-process ---------------------------------------------------------------------------


def config(tmp_path: Path, otp_url: str) -> Config:
    return Config(
        otp_url=otp_url,
        otp_api_key=KEY,
        otp_issuer="otp",
        secret=SECRET,
        database=tmp_path / "users.sqlite3",
        demo_phone="+15017122661",
    )


@pytest.fixture
async def app_without_otp(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, through its lifespan, with nothing listening at OTP_URL."""
    app = create_app(config(tmp_path, f"http://127.0.0.1:{free_port()}"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def csrf_of(client: httpx.AsyncClient, path: str = "/signin") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', (await client.get(path)).text)
    assert found
    return found.group(1)


async def test_when_otp_does_not_answer_the_sign_in_says_it_is_unavailable(app_without_otp: httpx.AsyncClient) -> None:
    csrf = await csrf_of(app_without_otp)
    answer = await app_without_otp.post(
        "/signin", data={"csrf": csrf, "username": DEMO_USER, "password": DEMO_PASSWORD}
    )
    assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
    assert "<h1>Sign-in is unavailable</h1>" in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_wrong_password_is_refused_without_saying_whether_the_user_exists(
    app_without_otp: httpx.AsyncClient,
) -> None:
    csrf = await csrf_of(app_without_otp)
    for username in (DEMO_USER, "nobody"):
        answer = await app_without_otp.post("/signin", data={"csrf": csrf, "username": username, "password": "guess"})
        assert answer.status_code == 401 and "Wrong username or password." in answer.text


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(app_without_otp: httpx.AsyncClient) -> None:
    await csrf_of(app_without_otp)  # the session has a token; the forged forms don't carry it
    for path in ("/signin", "/code", "/code/resend", "/signout"):
        answer = await app_without_otp.post(
            path, data={"csrf": "forged", "username": DEMO_USER, "password": DEMO_PASSWORD}
        )
        assert answer.status_code == 403 and "<h1>Form expired</h1>" in answer.text, path


async def test_an_oversized_form_is_refused_with_a_page(app_without_otp: httpx.AsyncClient) -> None:
    answer = await app_without_otp.post(
        "/signin", data={"csrf": await csrf_of(app_without_otp), "username": "x" * 5000}
    )
    assert answer.status_code == 403 and "<h1>Form expired</h1>" in answer.text


async def test_without_a_pending_sign_in_the_code_page_sends_to_the_password_form(
    app_without_otp: httpx.AsyncClient,
) -> None:
    answer = await app_without_otp.get("/code")
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"


# -- settings and users ----------------------------------------------------------------------------


def test_settings_name_what_is_missing_or_wrong(tmp_path: Path) -> None:
    none_here = {"OTP_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="OTP_API_KEY"):
        from_env(none_here)
    with pytest.raises(ConfigError, match="OTP_API_KEY"):
        from_env({**none_here, "OTP_API_KEY": "not-a-key"})
    with pytest.raises(ConfigError, match="LOGIN_APP_SECRET"):
        from_env({**none_here, "OTP_API_KEY": KEY, "LOGIN_APP_SECRET": "short"})
    with pytest.raises(ConfigError, match="OTP_URL"):
        from_env({**none_here, "OTP_API_KEY": KEY, "OTP_URL": "ftp://otp"})
    (tmp_path / "dev-api-key").write_text(KEY + "\n")  # beside a development `otp serve`
    found = from_env({**none_here, "OTP_URL": "http://127.0.0.1:8000/"})
    assert found.audience == "3f2a9c0011223344" and found.jwks_url == "http://127.0.0.1:8000/.well-known/jwks.json"


def test_passwords_are_checked_against_argon2_hashes(tmp_path: Path) -> None:
    users = Users(tmp_path / "users.sqlite3")
    users.seed_demo("+15017122661")
    assert users.authenticate(DEMO_USER, DEMO_PASSWORD) == users.get(DEMO_USER)
    assert users.authenticate(DEMO_USER, "wrong") is None and users.authenticate("nobody", DEMO_PASSWORD) is None
    users.add(DEMO_USER, "a new password", name="Demo User", phone="+15017122661")
    users.seed_demo("+15017122661")  # seeding again keeps the changed password
    assert users.authenticate(DEMO_USER, "a new password") is not None
    stored = (tmp_path / "users.sqlite3").read_bytes()
    assert b"a new password" not in stored and b"$argon2id$" in stored
