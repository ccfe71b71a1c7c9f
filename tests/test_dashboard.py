"""The /admin dashboard and GET /v1/stats/overview: the counters' arithmetic, sign-in and CSRF,
the security headers, the admin actions and their audit records, and page times with a big log."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import httpx
import jsonschema
import msgspec
import pytest
import traffic
from conftest import Clock, RecordingSender, Service, make_settings, policy, running_service

from otp.audit_fields import COUNTER_ONLY_PREFIX
from otp.core import apikeys, audit
from otp.core import stats as aggregates
from otp.dashboard import session
from otp.dashboard.headers import CONTENT_SECURITY_POLICY
from otp.devtools import synthetic
from otp.storage import keys as keyspace
from otp.web import models

HOUR = aggregates.HOUR_MS
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def svc(service: Service) -> Service:
    return service


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)


async def sign_in(svc: Service, key: str | None = None) -> str:
    """Sign in with the admin key (or ``key``); returns the session's CSRF token."""
    form = await svc.http.get("/admin/signin")
    response = await svc.http.post("/admin/signin", data={"csrf": csrf_of(form.text), "key": key or svc.admin_key})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/admin/"
    page = await svc.http.get("/admin/")
    assert page.status_code == 200
    return csrf_of(page.text)


def now_hour(svc: Service) -> int:
    return int(svc.clock() * 1000) // HOUR


async def record(svc: Service, partition: int, hour: int, event: str, times: int = 1, **fields: str) -> None:
    """``times`` audit events in ``hour``, written as the service writes them (lib.lua's ``audit()``
    makes the hourly counters), so these tests read the counters' real format."""
    at = hour * HOUR + HOUR // 2
    store = svc.app.state.store
    for done in range(0, times, 50):  # within the client's connection pool
        batch = range(done, min(times, done + 50))
        await asyncio.gather(*(store.audit_event(partition, at, {"event": event, **fields}) for _ in batch))


def to(prefix: str, country: str) -> dict[str, str]:
    """The audit context of a send to ``prefix`` in ``country``: what the destination tallies count."""
    return {COUNTER_ONLY_PREFIX: prefix, "country": country}


# -- aggregates ----------------------------------------------------------------------------------


async def test_windows_sum_whole_hours_over_every_partition(svc: Service) -> None:
    # 59 minutes into the hour: the hour's events (at its middle) are in the last 60 minutes,
    # the previous hour's (89 minutes ago) are not.
    svc.clock.advance(59 * 60)
    h = now_hour(svc)
    # Destination tallies (these sends' and approvals' prefix and country) never show up among
    # the overview's figures.
    await record(svc, 0, h, "started", 3, **to("+1415555", "US"))
    await record(svc, 0, h, "approved", 2, **to("+1415555", "US"))
    await record(svc, 0, h, "refused", rule="number_sends", reason="number_hourly_limit")
    await record(svc, 7, h, "started")
    await record(svc, 7, h, "delivery", 4, status="delivered")
    await record(svc, 7, h, "delivery", 2, status="undelivered", error_code="30003")
    await record(svc, 15, h - 1, "started", 10)
    await record(svc, 15, h - 1, "approved", 5)
    await record(svc, 15, h - 1, "expired")
    await record(svc, 15, h - 1, "delivery", status="failed", error_code="30008")
    await record(svc, 3, h - 23, "started", 98)
    await record(svc, 3, h - 23, "started", 2, flagged="prefix:unverified_hourly,country:unverified_daily")
    # Each older hour has more than all the newer ones together, so every sum tells which hours it took.
    await record(svc, 3, h - 24, "started", 200)  # just outside 24h
    await record(svc, 3, h - 24, "resent", 7)
    await record(svc, 9, h - 167, "started", 400)  # the oldest hour of 7d
    await record(svc, 9, h - 167, "canceled")
    await record(svc, 9, h - 168, "started", 800)  # outside every window

    now = int(svc.clock() * 1000)
    one = await aggregates.overview(svc.app.state.store, "1h", now)
    assert one.totals["started"] == 4 and one.totals["approved"] == 2
    assert not any("@" in name for name in one.totals)
    # The last hour, minute by minute, from the minute counters.
    assert len(one.buckets) == 60 and all(b.in_window and b.minutes == 1 for b in one.buckets)
    assert one.buckets[-30].counts["started"] == 4 and sum(b.counts["started"] for b in one.buckets) == 4
    six = await aggregates.overview(svc.app.state.store, "6h", now)
    assert len(six.buckets) == 72 and six.totals["started"] == 4 + 10 and six.totals["approved"] == 7

    day = (await aggregates.overview(svc.app.state.store, "24h", now)).as_dict()
    assert day["totals"]["started"] == 4 + 10 + 100
    assert day["totals"]["approved"] == 7
    assert day["totals"]["conversion_rate"] == round(7 / 114, 4)
    assert day["totals"]["refused"] == 1 and day["totals"]["flagged"] == 2
    assert day["refusals"] == [{"rule": "number_sends", "reason": "number_hourly_limit", "count": 1}]
    assert {(f["scope"], f["reason"]) for f in day["flagged"]} == {
        ("prefix", "unverified_hourly"),
        ("country", "unverified_daily"),
    }
    assert day["delivery"]["funnel"] == {"queued": 114, "sent": 0, "delivered": 4, "undelivered": 2, "failed": 1}
    assert [(e["status"], e["error_code"], e["count"]) for e in day["delivery"]["errors"]] == [
        ("undelivered", "30003", 2),
        ("failed", "30008", 1),
    ]
    assert day["delivery"]["errors"][0]["title"] == "Unreachable destination handset"  # the catalogue's words
    assert len(day["series"]["buckets"]) == 24 and all(b["in_window"] for b in day["series"]["buckets"])
    assert sum(b["started"] for b in day["series"]["buckets"]) == 114

    week = (await aggregates.overview(svc.app.state.store, "7d", now)).as_dict()
    assert week["totals"]["started"] == 4 + 10 + 100 + 200 + 400
    assert week["totals"]["canceled"] == 1 and week["totals"]["resent"] == 7
    assert week["series"]["bucket_hours"] == 6 and len(week["series"]["buckets"]) == 28
    assert sum(b["started"] for b in week["series"]["buckets"]) == 714

    # The API answers with the very same figures, in the documented shape.
    api = await svc.http.get("/v1/stats/overview?since=7d", headers=svc.auth(svc.admin_key))
    assert api.status_code == 200 and api.json() == week
    assert api.headers["cache-control"] == "no-store"
    for body in (week, day, (await svc.http.get("/v1/stats/overview", headers=svc.auth(svc.admin_key))).json()):
        jsonschema.validate(body, msgspec.json.schema(models.Overview))


async def test_destinations_rank_by_unverified_sends(svc: Service) -> None:
    svc.clock.advance(59 * 60)  # the hour's events are in the last 60 minutes
    h = now_hour(svc)
    store = svc.app.state.store
    # +1415555: 9 sent, 1 approved, spread over partitions and hours; one partition only approves
    # (an approval of a send from before the window) and must still count.
    await record(svc, 1, h, "started", 5, **to("+1415555", "US"))
    await record(svc, 2, h - 3, "started", 4, **to("+1415555", "US"))
    await record(svc, 4, h, "approved", 1, **to("+1415555", "US"))
    # +44207946: 3 sent, 3 approved: fully verified, so not ranked at all.
    await record(svc, 5, h, "started", 3, **to("+44207946", "GB"))
    await record(svc, 5, h, "approved", 3, **to("+44207946", "GB"))
    # +1202555: 2 unverified of 6.
    await record(svc, 6, h - 1, "started", 6, **to("+1202555", "US"))
    await record(svc, 6, h - 1, "approved", 4, **to("+1202555", "US"))
    # Outside 24h: only the week sees it.
    await record(svc, 8, h - 30, "started", 50, **to("+33612345", "FR"))

    now = int(svc.clock() * 1000)
    day = await aggregates.destinations(store, "24h", now)
    assert [(d.value, d.sent, d.approved, d.unverified) for d in day.prefixes] == [
        ("+1415555", 9, 1, 8),
        ("+1202555", 6, 4, 2),
    ]
    assert [(d.value, d.sent, d.approved) for d in day.countries] == [("US", 15, 5), ("GB", 3, 3)]
    assert day.countries[0].rate == round(5 / 15, 4)

    week = await aggregates.destinations(store, "7d", now)
    assert week.prefixes[0].value == "+33612345" and week.prefixes[0].unverified == 50
    one = await aggregates.destinations(store, "1h", now)
    assert [(d.value, d.sent, d.approved) for d in one.prefixes] == [("+1415555", 5, 1)]


async def test_counters_of_real_traffic_reach_the_overview(svc: Service) -> None:
    vid = (await svc.start("+15017122661")).json()["id"]
    await svc.start("+15017122662")
    assert (await svc.check(await svc.last_code("+15017122661"), id=vid)).json()["approved"]
    data = (await svc.http.get("/v1/stats/overview?since=1h", headers=svc.auth(svc.admin_key))).json()
    assert data["totals"]["started"] == 2 and data["totals"]["approved"] == 1
    assert data["totals"]["conversion_rate"] == 0.5
    found = await aggregates.destinations(svc.app.state.store, "1h", int(svc.clock() * 1000))
    assert [(d.value, d.sent, d.approved) for d in found.countries] == [("US", 2, 1)]


async def test_stats_api_is_for_admin_keys_and_checks_its_parameters(svc: Service) -> None:
    assert (await svc.http.get("/v1/stats/overview")).status_code == 401
    assert (await svc.http.get("/v1/stats/overview", headers=svc.auth())).status_code == 403
    bad = await svc.http.get("/v1/stats/overview?since=2h", headers=svc.auth(svc.admin_key))
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "since"
    typo = await svc.http.get("/v1/stats/overview?sinse=1h", headers=svc.auth(svc.admin_key))
    assert typo.status_code == 400 and typo.json()["error"]["field"] == "sinse"


# -- sign-in, session, CSRF ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/fraud",
        "/admin/audit",
        "/admin/audit.csv",
        "/admin/audit.jsonl",
        "/admin/incidents",
        "/admin/bruteforce",
    ],
)
async def test_no_session_redirects_to_sign_in(svc: Service, path: str) -> None:
    response = await svc.http.get(path)
    assert response.status_code == 303 and response.headers["location"] == "/admin/signin"


async def test_sign_in_refuses_bad_and_non_admin_keys(svc: Service) -> None:
    csrf = csrf_of((await svc.http.get("/admin/signin")).text)
    for bad in ("", "nonsense", "otpk_0000000000000000_" + "0" * 64, svc.admin_key + "x"):
        response = await svc.http.post("/admin/signin", data={"csrf": csrf, "key": bad})
        assert response.status_code == 401 and "Unknown or revoked API key" in response.text
    response = await svc.http.post("/admin/signin", data={"csrf": csrf, "key": svc.key})
    assert response.status_code == 403 and "not an admin key" in response.text
    assert (await svc.http.get("/admin/")).status_code == 303  # still signed out


async def test_sign_in_needs_the_forms_csrf_token(svc: Service) -> None:
    await svc.http.get("/admin/signin")
    assert (await svc.http.post("/admin/signin", data={"key": svc.admin_key})).status_code == 403
    wrong = await svc.http.post("/admin/signin", data={"csrf": "x" * 43, "key": svc.admin_key})
    assert wrong.status_code == 403
    # A forged form from another site comes without the cookie at all.
    svc.http.cookies.clear()
    assert (await svc.http.post("/admin/signin", data={"csrf": "x" * 43, "key": svc.admin_key})).status_code == 403
    assert (await svc.http.get("/admin/")).status_code == 303


async def test_session_cookie_is_signed_httponly_strict_and_holds_no_key(svc: Service) -> None:
    form = await svc.http.get("/admin/signin")
    response = await svc.http.post("/admin/signin", data={"csrf": csrf_of(form.text), "key": svc.admin_key})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{session.COOKIE}=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/admin" in lowered
    assert "secure" not in lowered  # plain-http test server; see the https test below
    secret = svc.admin_key.rsplit("_", 1)[1]
    assert secret not in cookie
    # Tampering with the signed value loses the session.
    name, value = cookie.split(";")[0].split("=", 1)
    svc.http.cookies.clear()
    svc.http.cookies.set(name, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"), domain="otp.test", path="/admin")
    assert (await svc.http.get("/admin/")).status_code == 303


async def test_secure_cookie_when_public_url_is_https(redis_url: str) -> None:
    settings = make_settings(redis_url, public_url="https://otp.example.com")
    async with running_service(settings, Clock(), RecordingSender()) as service:
        form = await service.http.get("/admin/signin")
        assert "secure" in form.headers["set-cookie"].lower()


async def test_actions_need_a_valid_csrf_token(svc: Service) -> None:
    csrf = await sign_in(svc)
    for data in ({"entry": "+1415555"}, {"entry": "+1415555", "csrf": ""}, {"entry": "+1415555", "csrf": csrf[:-1]}):
        response = await svc.http.post("/admin/fraud/safelist", data=data)
        assert response.status_code == 403
    assert await svc.app.state.policy.safe_list.entries() == frozenset()
    assert (await svc.http.post("/admin/signout", data={})).status_code == 403
    assert (await svc.http.get("/admin/")).status_code == 200  # still signed in
    # The right token goes through.
    ok = await svc.http.post("/admin/fraud/safelist", data={"entry": "+1415555", "csrf": csrf, "confirm": "yes"})
    assert ok.status_code == 303


async def test_forms_other_than_urlencoded_are_refused(svc: Service) -> None:
    csrf = await sign_in(svc)
    response = await svc.http.post("/admin/fraud/safelist", json={"entry": "+1415555", "csrf": csrf})
    assert response.status_code == 415 and "text/html" in response.headers["content-type"]


async def test_sign_out_then_refused(svc: Service) -> None:
    csrf = await sign_in(svc)
    old_cookie = dict(svc.http.cookies)
    response = await svc.http.post("/admin/signout", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/admin/signin?m=signed_out"
    assert (await svc.http.get("/admin/")).status_code == 303
    assert (await svc.http.post("/admin/fraud/safelist", data={"entry": "+1415555", "csrf": csrf})).status_code == 403
    assert "You are signed out" in (await svc.http.get("/admin/signin?m=signed_out")).text
    # A copy of the cookie from before the sign-out still works until it expires (it is stateless),
    # which is why every request re-checks the key and the expiry.
    assert old_cookie


async def test_revoked_or_demoted_key_is_signed_out(svc: Service) -> None:
    await sign_in(svc)
    key_id = svc.admin_key.split("_")[1]
    await svc.redis.hset(keyspace.api_key(key_id), "admin", 0)
    response = await svc.http.get("/admin/fraud")
    assert response.status_code == 303 and response.headers["location"] == "/admin/signin?m=revoked"
    assert (await svc.http.get("/admin/")).status_code == 303  # the session is gone
    _, other = await apikeys.create(svc.app.state.store, "second-admin", admin=True)
    await sign_in(svc, other)
    await apikeys.revoke(svc.app.state.store, other.split("_")[1])
    assert (await svc.http.get("/admin/")).headers["location"] == "/admin/signin?m=revoked"


async def test_session_expires_after_eight_hours(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    await sign_in(svc)
    start = time.time()
    monkeypatch.setattr(session, "wall_clock", lambda: start + session.MAX_AGE + 1)
    response = await svc.http.get("/admin/")
    assert response.status_code == 303 and response.headers["location"] == "/admin/signin?m=expired"


async def test_signed_in_visit_to_sign_in_page_goes_to_overview(svc: Service) -> None:
    await sign_in(svc)
    response = await svc.http.get("/admin/signin")
    assert response.status_code == 303 and response.headers["location"] == "/admin/"


# -- headers and page content --------------------------------------------------------------------


async def all_pages(svc: Service) -> list[httpx.Response]:
    csrf = await sign_in(svc)
    paths = ["/admin/", "/admin/?since=1h", "/admin/?since=7d", "/admin/fraud", "/admin/fraud?since=7d"]
    paths += ["/admin/audit", "/admin/audit?event=started", "/admin/static/dashboard.css", "/admin/audit.csv"]
    paths += ["/admin/nope", "/admin/audit?since=yesterday", "/admin/?since=2h"]
    paths += [
        "/admin/incidents",
        "/admin/incidents?window=6h",
        "/admin/bruteforce?window=7d",
        "/admin/incidents?window=2h",
    ]
    responses = [await svc.http.get(p) for p in paths]
    responses.append(await svc.http.post("/admin/fraud/unblock", data={"csrf": "wrong"}))
    responses.append(await svc.http.post("/admin/fraud/unblock", data={"csrf": csrf, "kind": "prefix", "value": "x"}))
    # A confirmation page, for the same headers.
    responses.append(await svc.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": "+1415555"}))
    responses.append(await svc.http.put("/admin/signin"))
    svc.http.cookies.clear()
    responses += [await svc.http.get("/admin/"), await svc.http.get("/admin/signin")]
    return responses


async def test_every_response_carries_the_security_headers(svc: Service) -> None:
    await svc.start("+15017122661")
    for response in await all_pages(svc):
        where = f"{response.request.method} {response.request.url} → {response.status_code}"
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, where
        assert response.headers["x-content-type-options"] == "nosniff", where
        assert response.headers["referrer-policy"] == "no-referrer", where
        assert response.headers["cache-control"] == "no-store", where
        assert response.headers["x-frame-options"] == "DENY", where
    policy = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == "'self'" and policy["base-uri"] == "'none'"
    assert policy["script-src"] == "'none'" and policy["style-src"] == "'self'"


async def test_error_pages_are_html_with_the_right_status(svc: Service) -> None:
    responses = {
        f"{r.request.method} {r.request.url.path}?{r.request.url.query.decode()}": r for r in await all_pages(svc)
    }
    assert responses["GET /admin/nope?"].status_code == 404
    assert responses["GET /admin/audit?since=yesterday"].status_code == 400
    assert "since:" in responses["GET /admin/audit?since=yesterday"].text
    assert responses["GET /admin/?since=2h"].status_code == 400
    assert responses["PUT /admin/signin?"].status_code == 405
    for response in responses.values():
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("text/html")


async def test_no_external_urls_no_scripts_no_inline_styles(svc: Service) -> None:
    await svc.start("+15017122661")
    for response in await all_pages(svc):
        text = response.text
        assert not re.search(r"(?i)\b(?:https?:)?//[a-z0-9.-]+", text), response.request.url
        assert "<script" not in text.lower()
        assert not re.search(r"(?i)\sstyle=", text)
        assert not re.search(r"(?i)\son[a-z]+=", text)  # no inline event handlers either
        for link in re.findall(r'(?:href|src|action)="([^"]*)"', text):
            assert link.startswith(("/admin", "#")), link


async def test_charts_are_accessible_svg_with_the_numbers_in_tables(svc: Service) -> None:
    await sign_in(svc)
    h = now_hour(svc)
    await record(svc, 2, h, "started", 12)
    await record(svc, 2, h, "approved", 9)
    await record(svc, 2, h, "delivery", status="undelivered", error_code="30003")
    html = (await svc.http.get("/admin/?since=24h")).text
    charts = re.findall(r"<svg [^>]*>", html)
    assert len(charts) >= 5
    for svg in charts:
        assert 'role="img"' in svg and "aria-labelledby" in svg
    assert html.count("<title") >= len(charts) and "<caption>" in html and 'scope="col"' in html
    assert 'data-metric="started">12<' in html and 'data-metric="conversion_rate">75.0 %<' in html
    assert "30003" in html
    for label in re.findall(r'<label for="([^"]+)"', (await svc.http.get("/admin/audit")).text):
        assert f'id="{label}"' in (await svc.http.get("/admin/audit")).text


# -- fraud actions -------------------------------------------------------------------------------


async def pump(svc: Service, prefix: str = "+1415555", count: int = 8) -> list[int]:
    """Starts to ``count`` numbers under one prefix, none verified: the default floors block the
    prefix at the seventh (with the tenant's unproven budgets out of the way, see ``budgets_off``)."""
    return [(await svc.start(f"{prefix}{n:04d}")).status_code for n in range(100, 100 + count)]


@pytest.fixture
async def budgets_off(redis_url: str, clock: Clock, sender: RecordingSender) -> AsyncIterator[Service]:
    settings = make_settings(redis_url, policy=policy(unproven_country_floor=1000, unproven_tenant_floor=1000))
    async with running_service(settings, clock, sender) as service:
        yield service


async def test_blocked_prefix_shows_and_unblock_is_audited(budgets_off: Service) -> None:
    svc = budgets_off
    csrf = await sign_in(svc)
    statuses = await pump(svc)
    assert statuses[:6] == [201] * 6 and all(s in (403, 429) for s in statuses[6:]), statuses
    page = (await svc.http.get("/admin/fraud")).text
    blocked = page.split('id="blocked"', 1)[1].split("</table>", 1)[0]
    assert "+1415555" in blocked and "prefix" in blocked and "Unblock" in blocked
    assert "6 unverified verifications in the last hour" in blocked  # why it is blocked
    ranking = page.split('id="prefixes"', 1)[1].split("</table>", 1)[0]
    assert "+1415555" in ranking

    response = await svc.http.post(
        "/admin/fraud/unblock",
        data={"csrf": csrf, "kind": "prefix", "value": "+1415555", "since": "24h", "confirm": "yes"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/fraud?window=24h&done=unblock&entry=%2B1415555"
    assert "Unblocked +1415555." in (await svc.http.get(response.headers["location"])).text
    assert await svc.app.state.policy.blocked(int(svc.clock() * 1000)) == []
    page = (await svc.http.get("/admin/fraud")).text
    assert "+1415555" not in page.split('id="blocked"', 1)[1].split("</table>", 1)[0]

    events, _ = await audit.read(svc.app.state.store, audit.AuditFilter(event="admin"))
    assert [(e.get("action"), e.get("entry"), e.get("key_name")) for e in events] == [
        ("unblock", "+1415555", "test-admin"),
        ("dashboard_sign_in", "", "test-admin"),  # newest first: the sign-in that made it
    ]
    assert events[0].get("key") == svc.admin_key.split("_")[1]


async def test_add_to_safe_list_is_validated_and_audited(svc: Service) -> None:
    csrf = await sign_in(svc)
    bad = await svc.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": "1415555<b>"})
    assert bad.status_code == 400 and "<b>" not in bad.text
    response = await svc.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": "+1415555", "confirm": "yes"})
    assert response.status_code == 303
    assert await svc.app.state.policy.safe_list.entries() == frozenset({"+1415555"})
    assert "<code>+1415555</code>" in (await svc.http.get("/admin/fraud")).text
    events, _ = await audit.read(svc.app.state.store, audit.AuditFilter(event="admin"))
    assert [(e.get("action"), e.get("entry"), e.get("key_name")) for e in events] == [
        ("safelist_add", "+1415555", "test-admin"),
        ("dashboard_sign_in", "", "test-admin"),
    ]
    # A country can be unblocked but not safe-listed.
    assert (await svc.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": "US"})).status_code == 400
    unblock = await svc.http.post(
        "/admin/fraud/unblock", data={"csrf": csrf, "kind": "country", "value": "us", "confirm": "yes"}
    )
    assert unblock.headers["location"].endswith("done=not_blocked&entry=US")


# -- audit page ----------------------------------------------------------------------------------


async def test_audit_page_filters_pages_and_exports(svc: Service) -> None:
    await sign_in(svc)
    store = svc.app.state.store
    await synthetic.fill(store, 160, now_ms=int(svc.clock() * 1000), span_ms=3_600_000)
    first = await svc.http.get("/admin/audit")
    rows = re.findall(r"<tr><th scope=\"row\">", first.text)
    assert len(rows) == 50
    seen: list[str] = []
    url: str | None = "/admin/audit"
    while url:
        page = (await svc.http.get(url)).text
        seen += re.findall(r"<tr><th scope=\"row\">.*?</tr>", page.split('id="events"', 1)[1])
        nxt = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert len(seen) == len(set(seen)) == 160 + 1  # and the sign-in's own admin event

    refused = (await svc.http.get("/admin/audit?event=refused&decision=refused")).text
    body = refused.split('id="events"', 1)[1]
    assert body.count("<tr>") - 1 == body.count(">refused<") // 2 > 0
    assert '<option value="refused" selected="True">' in refused or 'value="refused" selected' in refused

    csv_text = (await svc.http.get("/admin/audit.csv?event=approved")).text
    lines = csv_text.strip().split("\n")
    assert lines[0] == audit.csv_header() and all(",approved," in line for line in lines[1:])
    jsonl = await svc.http.get("/admin/audit.jsonl?event=started")
    assert jsonl.headers["content-disposition"] == 'attachment; filename="otp-audit.jsonl"'
    assert all('"event":"started"' in line for line in jsonl.text.strip().split("\n"))

    bad = await svc.http.get("/admin/audit?cursor=nope")
    assert bad.status_code == 400 and "cursor" in bad.text


async def test_audit_page_masks_numbers_and_escapes_everything(svc: Service) -> None:
    await sign_in(svc)
    await svc.start("+15017122661")
    await svc.app.state.store.audit_event(
        0, int(svc.clock() * 1000), {"event": "admin", "action": "<script>alert(1)</script>", "entry": '"><b>'}
    )
    page = (await svc.http.get("/admin/audit")).text
    assert "+15017122661" not in page and "+1*********61" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and '"><b>' not in page
    by_number = (await svc.http.get("/admin/audit?number=%2B15017122661")).text
    assert by_number.count("+1*********61") >= 1 and "&lt;script&gt;" not in by_number


# -- speed ---------------------------------------------------------------------------------------


@pytest.fixture
async def big_log(redis_url: str) -> AsyncIterator[Service]:
    settings = make_settings(redis_url)
    async with running_service(settings, Clock(), RecordingSender()) as service:
        await traffic.fill(service.app.state.store, 50_000, now_ms=int(service.clock() * 1000))
        yield service


async def test_pages_load_fast_with_50k_events(big_log: Service) -> None:
    """bench/dashboard_load.py measures the same pages against a million events."""
    await sign_in(big_log)
    first = await big_log.http.get("/admin/audit")
    cursor = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert cursor
    paths = ["/admin/?since=1h", "/admin/?since=24h", "/admin/?since=7d", "/admin/fraud?since=24h"]
    paths += ["/admin/fraud?since=7d", "/admin/audit", cursor.group(1).replace("&amp;", "&")]
    paths += ["/admin/audit?event=refused&rule=ip_sends", "/admin/audit?country=NG&event=approved"]
    paths += ["/admin/incidents?window=6h", "/admin/incidents?window=7d", "/admin/bruteforce?window=7d"]
    for path in paths:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            response = await big_log.http.get(path)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, path
        print(f"{path}: {min(timings) * 1000:.0f} ms")
        # Not a speed target (bench/dashboard_load.py has those): a bound that catches a page
        # gone slow by far. The 7-day Incidents page takes 0.9-1.1 s here on a 2-core box, so a
        # 1 s bound failed CI by chance.
        assert min(timings) < 2.5, (path, timings)
    figures = (await big_log.http.get("/v1/stats/overview?since=7d", headers=big_log.auth(big_log.admin_key))).json()
    assert figures["totals"]["started"] > 10_000
