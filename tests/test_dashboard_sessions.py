"""Dashboard sessions under attack: a cookie kept after sign-out, guessing admin keys from one
address, and redirects built from a Host header the client chose."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from conftest import Service

from otp.dashboard import session, signin
from otp.storage import keys as keyspace

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ATTACKER = "203.0.113.7"


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)


async def sign_in(http: httpx.AsyncClient, key: str) -> str:
    form = await http.get("/admin/signin")
    response = await http.post("/admin/signin", data={"csrf": csrf_of(form.text), "key": key})
    assert response.status_code == 303, response.text
    return csrf_of((await http.get("/admin/")).text)


@asynccontextmanager
async def client_from(svc: Service, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser at another address, on the same running app."""
    transport = httpx.ASGITransport(app=svc.app, client=(ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://otp.test") as http:
        yield http


async def attempt(http: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await http.get("/admin/signin")
    if form.status_code == 303:  # already signed in: the dashboard's pages carry the token
        form = await http.get("/admin/")
    return await http.post("/admin/signin", data={"csrf": csrf_of(form.text), "key": key})


# -- 1. sign-out revokes the session on the server -----------------------------------------------


async def test_cookie_captured_before_sign_out_is_dead_after_it(service: Service) -> None:
    http = service.http
    csrf = await sign_in(http, service.admin_key)
    stolen = http.cookies[session.COOKIE]
    assert (await http.post("/admin/signout", data={"csrf": csrf})).status_code == 303

    # The attacker replays the copy: pages and state-changing forms alike are refused.
    http.cookies.clear()
    http.cookies.set(session.COOKIE, stolen, domain="otp.test", path="/admin")
    page = await http.get("/admin/")
    assert page.status_code == 303 and page.headers["location"].startswith("/admin/signin")
    http.cookies.set(session.COOKIE, stolen, domain="otp.test", path="/admin")
    post = await http.post("/admin/fraud/safelist", data={"entry": "+1415555", "csrf": csrf})
    assert post.status_code == 303 and post.headers["location"].startswith("/admin/signin")
    assert await service.app.state.policy.safe_list.entries() == frozenset()


async def test_session_is_a_redis_record_with_a_ttl_that_holds_no_cookie_secret(service: Service) -> None:
    await sign_in(service.http, service.admin_key)
    names = [k.decode() async for k in service.redis.scan_iter(match=keyspace.dashboard_session("*"))]
    assert len(names) == 1
    ttl = await service.redis.ttl(names[0])
    assert 0 < ttl <= session.MAX_AGE
    cookie = service.http.cookies[session.COOKIE]
    # Only a digest of the session id is stored: a Redis dump names no live session.
    dump = "".join(names) + "".join([str(await service.redis.get(n)) for n in names])
    assert dump.count(service.admin_key.split("_")[1]) == 1  # the key id, as the record's value
    session_id = json.loads(base64.b64decode(cookie.split(".")[0] + "==="))[session.SESSION_ID]
    assert session_id and session_id not in dump
    # Sign-out deletes it.
    csrf = csrf_of((await service.http.get("/admin/")).text)
    await service.http.post("/admin/signout", data={"csrf": csrf})
    assert [k async for k in service.redis.scan_iter(match=keyspace.dashboard_session("*"))] == []


async def test_signing_in_again_retires_the_earlier_session(service: Service) -> None:
    http = service.http
    await sign_in(http, service.admin_key)
    first = http.cookies[session.COOKIE]
    # Signing in from a signed-in browser (the form is still reachable by POST) replaces the session.
    csrf = csrf_of((await http.get("/admin/")).text)
    assert (await http.post("/admin/signin", data={"csrf": csrf, "key": service.admin_key})).status_code == 303
    assert http.cookies[session.COOKIE] != first
    assert (await http.get("/admin/")).status_code == 200
    http.cookies.clear()
    http.cookies.set(session.COOKIE, first, domain="otp.test", path="/admin")
    assert (await http.get("/admin/")).status_code == 303


# -- 2. sign-in attempts are throttled per address -----------------------------------------------


async def test_ten_failed_sign_ins_then_429_even_for_the_right_key_until_the_window_passes(service: Service) -> None:
    async with client_from(service, ATTACKER) as attacker, client_from(service, "198.51.100.2") as colleague:
        for i in range(signin.SIGNIN_FAILURES):
            response = await attempt(attacker, f"otpk_{i:016x}_" + "0" * 64)
            assert response.status_code == 401, i
        refused = await attempt(attacker, service.admin_key)
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= signin.SIGNIN_WINDOW_MS // 1000
        assert "Too many failed sign-ins" in refused.text
        assert refused.headers["content-security-policy"]  # an ordinary dashboard page
        assert (await attacker.get("/admin/")).status_code == 303  # not signed in
        # Another address is not affected.
        assert (await attempt(colleague, service.admin_key)).status_code == 303
        # Refusals don't count: once the window has passed, the address may try again.
        service.clock.advance(signin.SIGNIN_WINDOW_MS / 1000 - 1)
        assert (await attempt(attacker, service.admin_key)).status_code == 429
        service.clock.advance(1)
        assert (await attempt(attacker, service.admin_key)).status_code == 303


async def test_a_success_neither_counts_nor_refunds_earlier_failures(service: Service) -> None:
    async with client_from(service, ATTACKER) as http:
        for _ in range(signin.SIGNIN_FAILURES - 1):
            assert (await attempt(http, "otpk_0000000000000000_" + "1" * 64)).status_code == 401
        for _ in range(3):  # successes are not failures
            assert (await attempt(http, service.admin_key)).status_code == 303
        assert (await attempt(http, service.key)).status_code == 403  # not an admin key: a failure
        assert (await attempt(http, service.admin_key)).status_code == 429


async def test_thirty_parallel_guesses_get_exactly_ten_answers(service: Service) -> None:
    async with client_from(service, ATTACKER) as http:
        form = await http.get("/admin/signin")
        csrf = csrf_of(form.text)
        guesses = [
            http.post("/admin/signin", data={"csrf": csrf, "key": f"otpk_{i:016x}_" + "2" * 64}) for i in range(30)
        ]
        statuses = sorted(r.status_code for r in await asyncio.gather(*guesses))
        assert statuses == [401] * signin.SIGNIN_FAILURES + [429] * (30 - signin.SIGNIN_FAILURES)


async def test_ipv6_addresses_of_one_64_share_a_budget(service: Service) -> None:
    for i in range(signin.SIGNIN_FAILURES):
        async with client_from(service, f"2001:db8:1:2::{i + 1:x}") as http:
            assert (await attempt(http, "otpk_0000000000000000_" + "3" * 64)).status_code == 401
    async with client_from(service, "2001:db8:1:2:ffff::9") as http:
        assert (await attempt(http, service.admin_key)).status_code == 429
    async with client_from(service, "2001:db8:1:3::1") as http:
        assert (await attempt(http, service.admin_key)).status_code == 303


async def test_csrf_failures_are_not_guesses_and_the_counter_has_a_ttl(service: Service) -> None:
    async with client_from(service, ATTACKER) as http:
        await http.get("/admin/signin")
        for _ in range(signin.SIGNIN_FAILURES + 5):
            assert (await http.post("/admin/signin", data={"csrf": "x" * 43, "key": "nope"})).status_code == 403
        assert (await attempt(http, "nope")).status_code == 401
        names = [k async for k in service.redis.scan_iter(match="otp:{signin:*")]
        assert names and all([0 < await service.redis.pttl(n) <= signin.SIGNIN_WINDOW_MS for n in names])
        assert (await attempt(http, service.admin_key)).status_code == 303


# -- 3. redirects never name a host the client sent ---------------------------------------------


@pytest.mark.parametrize("path", ["/admin", "/admin/fraud/", "/admin/signin/", "/admin/audit/"])
async def test_trailing_slash_redirects_ignore_the_host_header(service: Service, path: str) -> None:
    response = await service.http.get(path, headers={"Host": "evil.example"})
    assert response.status_code in (301, 302, 303, 307, 308)
    location = response.headers["location"]
    assert "evil.example" not in location
    assert not urlsplit(location).netloc and not location.startswith(("//", "/\\"))
    # Resolved against the page it answers, it stays on this site.
    target = urljoin(f"http://otp.test{path}", location)
    assert urlsplit(target).netloc == "otp.test"
    assert (await service.http.get(target)).status_code in (200, 303)


async def test_sign_in_and_sign_out_redirects_ignore_the_host_header(service: Service) -> None:
    http, evil = service.http, {"Host": "evil.example"}
    form = await http.get("/admin/signin", headers=evil)
    response = await http.post(
        "/admin/signin", data={"csrf": csrf_of(form.text), "key": service.admin_key}, headers=evil
    )
    assert response.status_code == 303 and response.headers["location"] == "/admin/"
    assert (await http.get("/admin/signin", headers=evil)).headers["location"] == "/admin/"
    page = await http.get("/admin/", headers=evil)
    done = await http.post("/admin/signout", data={"csrf": csrf_of(page.text)}, headers=evil)
    assert done.headers["location"] == "/admin/signin?m=signed_out"
    assert (await http.get("/admin/fraud", headers=evil)).headers["location"] == "/admin/signin"


def test_public_url_host_is_kept_and_others_become_relative() -> None:
    from otp.dashboard.headers import safe_location

    assert safe_location("http://evil.example/admin/fraud?x=1", "https://otp.example.com") == "/admin/fraud?x=1"
    assert (
        safe_location("https://otp.example.com/admin/", "https://otp.example.com") == "https://otp.example.com/admin/"
    )
    assert safe_location("http://otp.example.com/admin/", "https://otp.example.com") == "/admin/"  # scheme too
    assert safe_location("http://evil.example//evil.example/x", "") == "/evil.example/x"
    assert safe_location("http://evil.example/\\evil.example/x", "") == "/evil.example/x"
    assert safe_location("/admin/", "") == "/admin/"
    assert safe_location("admin/", "") == "admin/"
