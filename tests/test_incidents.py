"""The Incidents view's data without a browser: the minute counters and the refusal and source
tallies beside the hourly ones (exact counts, their keys and lifetimes), ``ip`` on checks, the
rankings by refused attempts, the brute-force list, blocks that say when and why, confirmations
before any change, and one ``window`` parameter across the pages."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Clock, RecordingSender, Service, hash_fields, make_settings, policy, running_service
from test_audit import run_cli

from otp.audit_fields import COUNTER_ONLY_PREFIX
from otp.core import apikeys, audit, bruteforce, incidents
from otp.core import stats as aggregates
from otp.dashboard.charts import sparkline
from otp.storage import keys as keyspace

MINUTE = 60_000
HOUR = 3_600_000


def now_ms(svc: Service) -> int:
    return int(svc.clock() * 1000)


def decoded(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}


async def write(svc: Service, partition: int, at: int, event: str, **fields: Any) -> None:
    """One audit event as the service writes it (lib.lua's ``audit()``)."""
    await svc.app.state.store.audit_event(partition, at, {"event": event, **fields})


def send_to(prefix: str, country: str, ip: str, key: str) -> dict[str, str]:
    return {COUNTER_ONLY_PREFIX: prefix, "country": country, "ip": ip, "key": key}


# -- counters --------------------------------------------------------------------------------------


async def test_minute_counters_and_tallies_count_exactly(service: Service) -> None:
    svc = service
    at = now_ms(svc) + 5 * MINUTE + 7_000
    minute, hour = at // MINUTE, at // HOUR
    a = send_to("+1415555", "US", "203.0.113.7", "k1")
    await write(svc, 3, at, "started", **a)
    await write(svc, 3, at, "started", **a)
    await write(svc, 3, at, "approved", **a)
    await write(svc, 3, at, "refused", rule="sms_pumping_prefix", reason="prefix_blocked", decision="refused", **a)
    svc_key = "VA" + "0" * 32
    await write(
        svc,
        3,
        at,
        "refused",
        rule="ip_sends",
        reason="ip_hourly_limit",
        decision="refused",
        **send_to("+1415555", "US", "198.51.100.9", svc_key),
    )
    # A check refused by id: no number in its context, so no destination tallies.
    await write(
        svc, 3, at, "refused", rule="number_failed_checks", reason="too_many_failed_checks", ip="198.51.100.9", key="k1"
    )
    await write(svc, 3, at, "check_failed", ip="198.51.100.9", key="k1", attempt="1")
    # Another minute of the same hour.
    await write(svc, 3, at + MINUTE, "started", **a)

    minute_hash = decoded(await hash_fields(svc.redis, keyspace.audit_minute_counter_of(3, minute)))
    assert minute_hash == {
        "started": 2,
        "approved": 1,
        "refused:sms_pumping_prefix:prefix_blocked": 1,
        "refused:ip_sends:ip_hourly_limit": 1,
        "refused:number_failed_checks:too_many_failed_checks": 1,
        "check_failed": 1,
        "sent@prefix:+1415555": 2,
        "sent@country:US": 2,
        "approved@prefix:+1415555": 1,
        "approved@country:US": 1,
        "sent@ip:203.0.113.7": 2,
        "sent@key:k1": 2,
        "approved@ip:203.0.113.7": 1,
        "approved@key:k1": 1,
        "refused@rule:sms_pumping_prefix": 1,
        "refused@rule:ip_sends": 1,
        "refused@rule:number_failed_checks": 1,
        "refused@prefix:+1415555": 2,
        "refused@country:US": 2,
        "refused@ip:203.0.113.7": 1,
        "refused@ip:198.51.100.9": 2,
        "refused@key:k1": 2,
        f"refused@key:{svc_key}": 1,
        # The distinct refusal tallies by prefix and IP (capped: test_v17_attacks.py).
        "refused~tallies": 3,
    }
    refusals = decoded(await hash_fields(svc.redis, keyspace.audit_refusal_counter_of_hour(3, hour)))
    assert refusals == {k: v for k, v in minute_hash.items() if k.startswith(("refused@", "refused~"))}
    sources = decoded(await hash_fields(svc.redis, keyspace.audit_source_counter_of_hour(3, hour)))
    assert sources == {"sent@ip:203.0.113.7": 3, "sent@key:k1": 3, "approved@ip:203.0.113.7": 1, "approved@key:k1": 1}
    hourly = decoded(await hash_fields(svc.redis, keyspace.audit_counter_of_hour(3, hour)))
    # The hourly hash keeps what it had: no source or refusal tallies join it.
    assert not any(
        name.startswith(("refused@", "sent@ip", "sent@key", "approved@ip", "approved@key")) for name in hourly
    )
    assert hourly["started"] == 3 and hourly["sent@prefix:+1415555"] == 3
    # Minute counters live hours, the hourly ones days.
    minute_ttl = await svc.redis.pttl(keyspace.audit_minute_counter_of(3, minute))
    assert keyspace.MINUTE_COUNTER_TTL_MS - 5_000 < minute_ttl <= keyspace.MINUTE_COUNTER_TTL_MS
    for key in (keyspace.audit_refusal_counter_of_hour(3, hour), keyspace.audit_source_counter_of_hour(3, hour)):
        assert await svc.redis.pttl(key) > 7 * 86_400_000
    assert decoded(await hash_fields(svc.redis, keyspace.audit_minute_counter_of(3, minute + 1)))["started"] == 1


async def test_a_minute_of_traffic_costs_a_few_hundred_bytes(service: Service) -> None:
    """What one partition's minute hash holds with twenty starts, sixteen approvals and four
    refusals from a handful of IPs (the README's per-minute figure)."""
    svc = service
    at = now_ms(svc)
    for n in range(20):
        ctx = send_to(f"+1415555{n % 5}", "US", f"203.0.113.{n % 4}", "k1")
        await write(svc, 0, at, "started", **ctx)
        if n < 16:
            await write(svc, 0, at, "approved", **ctx)
        elif n < 20:
            await write(svc, 0, at, "refused", rule="ip_sends", reason="ip_hourly_limit", **ctx)
    used = await svc.redis.memory_usage(keyspace.audit_minute_counter_of(0, at // MINUTE))
    assert used is not None and used < 1_500, used
    print(f"minute hash: {used} bytes")


# -- ip on checks ----------------------------------------------------------------------------------


async def audit_events(svc: Service, **flt: Any) -> list[Any]:
    events, _ = await audit.read(svc.app.state.store, audit.AuditFilter(**flt))
    return events


async def test_v1_checks_take_ip_and_their_events_record_it(no_cooldown: Service) -> None:
    svc = no_cooldown
    vid = (await svc.start("+15017122661", ip="203.0.113.5")).json()["id"]
    assert (await svc.check("000000", id=vid, ip="198.51.100.7")).status_code == 200
    bad = await svc.check("000000", id=vid, ip="not-an-ip")
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "ip"
    for _ in range(4):  # the default 5 attempts: the fifth wrong one locks it
        await svc.check("000000", id=vid, ip="2001:DB8::1")
    failed = await audit_events(svc, event="check_failed")
    assert {e.get("ip") for e in failed} == {"198.51.100.7", "2001:db8::1"}  # canonical, as stored
    locked = await audit_events(svc, event="max_attempts")
    assert [e.get("ip") for e in locked] == ["2001:db8::1"]
    vid = (await svc.start("+15017122662")).json()["id"]
    code = await svc.last_code("+15017122662")
    assert (await svc.check(code, id=vid, ip="198.51.100.8")).json()["approved"]
    assert [e.get("ip") for e in await audit_events(svc, event="approved")] == ["198.51.100.8"]


async def test_v2_checks_take_device_ip(service: Service) -> None:
    svc = service
    _, secret = await apikeys.create(svc.app.state.store, "acme", twilio=True)
    sid, token = secret.split("_")[1], secret.split("_")[2]
    auth = httpx.BasicAuth(sid, token)
    created = await svc.http.post("/v2/Services", data={"FriendlyName": "Acme"}, auth=auth)
    va = created.json()["sid"]
    start = await svc.http.post(
        f"/v2/Services/{va}/Verifications", data={"To": "+15017122661", "Channel": "sms"}, auth=auth
    )
    assert start.status_code == 201, start.text
    check = await svc.http.post(
        f"/v2/Services/{va}/VerificationCheck",
        data={"To": "+15017122661", "Code": "000000", "DeviceIp": "198.51.100.7"},
        auth=auth,
    )
    assert check.status_code == 200, check.text
    bad = await svc.http.post(
        f"/v2/Services/{va}/VerificationCheck",
        data={"To": "+15017122661", "Code": "000000", "DeviceIp": "nope"},
        auth=auth,
    )
    assert bad.status_code == 400 and "DeviceIp" in bad.text
    [failed] = await audit_events(svc, event="check_failed")
    assert failed.get("ip") == "198.51.100.7" and failed.get("key") == va


# -- the Incidents view ------------------------------------------------------------------------------

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(svc: Service) -> str:
    form = await svc.http.get("/admin/signin")
    csrf = CSRF.search(form.text)
    assert csrf
    response = await svc.http.post("/admin/signin", data={"csrf": csrf.group(1), "key": svc.admin_key})
    assert response.status_code == 303
    found = CSRF.search((await svc.http.get("/admin/")).text)
    assert found
    return found.group(1)


def table_of(page: str, id_: str) -> str:
    return page.split(f'id="{id_}"', 1)[1].split("</table>", 1)[0]


async def burst(svc: Service, at: int) -> None:
    """A pumping burst as the counters see it: refusals to +1415555 from two IPs through one key,
    a few starts let through, and quiet traffic elsewhere."""
    attack = [send_to("+1415555", "US", ip, "k-attacker") for ip in ("203.0.113.7", "203.0.113.8")]
    for n in range(6):
        await write(svc, n % 16, at + n * MINUTE, "started", **attack[n % 2])
    for n in range(30):
        await write(
            svc,
            n % 16,
            at + (6 + n // 3) * MINUTE,
            "refused",
            rule="sms_pumping_prefix",
            reason="prefix_blocked",
            decision="refused",
            **attack[n % 2],
        )
    quiet = send_to("+4420794", "GB", "198.51.100.1", "k-quiet")
    await write(svc, 5, at, "started", **quiet)
    await write(svc, 5, at + MINUTE, "approved", **quiet)
    await write(svc, 5, at + MINUTE, "refused", rule="resend_cooldown", reason="resend_too_soon", **quiet)


async def test_incidents_rank_by_refused_with_first_and_last_seen(service: Service) -> None:
    svc = service
    now = now_ms(svc)
    start = now - 30 * MINUTE
    await burst(svc, start)
    for name in ("1h", "6h", "24h", "7d"):
        found = await incidents.incidents(svc.app.state.store, aggregates.WINDOWS[name], now)
        prefix, quiet = found.tables["prefix"]
        assert (prefix.value, prefix.refused, prefix.allowed, prefix.approved) == ("+1415555", 30, 6, 0), name
        assert (quiet.value, quiet.refused, quiet.allowed, quiet.conversion) == ("+4420794", 1, 1, 1.0)
        assert [(r.value, r.refused, r.allowed) for r in found.tables["ip"]] == [
            ("203.0.113.7", 15, 3),
            ("203.0.113.8", 15, 3),
            ("198.51.100.1", 1, 1),
        ]
        assert [(r.value, r.refused) for r in found.tables["key"]] == [("k-attacker", 30), ("k-quiet", 1)]
        assert [(r.value, r.refused, r.allowed) for r in found.tables["rule"]] == [
            ("sms_pumping_prefix", 30, None),
            ("resend_cooldown", 1, None),
        ]
        # To the minute: the burst's first start, its last refusal (minute 6 + 29 // 3).
        assert prefix.first == incidents.Seen(start, True) and prefix.last == incidents.Seen(start + 15 * MINUTE, True)
        assert sum(prefix.series) == 30 and len(prefix.series) == {"1h": 60, "6h": 360, "24h": 24, "7d": 168}[name]
    one = await incidents.incidents(svc.app.state.store, aggregates.WINDOWS["1h"], now)
    assert max(one.tables["prefix"][0].series) == 3


async def test_first_seen_before_the_minute_counters_is_to_the_hour(service: Service) -> None:
    svc = service
    now = now_ms(svc)
    early = now - 10 * HOUR + 20 * MINUTE  # outside the 6 hours of minute counters
    ctx = send_to("+1415555", "US", "203.0.113.7", "k1")
    await write(svc, 1, early, "refused", rule="ip_sends", reason="ip_hourly_limit", **ctx)
    await write(svc, 1, now - 5 * MINUTE, "refused", rule="ip_sends", reason="ip_hourly_limit", **ctx)
    found = await incidents.incidents(svc.app.state.store, aggregates.WINDOWS["24h"], now)
    [row] = found.tables["ip"]
    assert row.first == incidents.Seen(early // HOUR * HOUR, False)
    assert row.last == incidents.Seen((now - 5 * MINUTE) // MINUTE * MINUTE, True)


async def test_services_rank_apart_from_keys(service: Service) -> None:
    svc = service
    va = "VA" + "ab" * 16
    ctx = send_to("+1415555", "US", "203.0.113.7", va)
    await write(svc, 2, now_ms(svc), "refused", rule="ip_sends", reason="ip_hourly_limit", **ctx)
    found = await incidents.incidents(svc.app.state.store, aggregates.WINDOWS["1h"], now_ms(svc))
    assert found.tables["key"] == [] and [r.value for r in found.tables["service"]] == [va]
    assert found.tables["service"][0].audit_filter() == {"service": va}


async def test_incidents_page_links_each_row_to_the_audit_log_filtered_on_it(no_cooldown: Service) -> None:
    svc = no_cooldown
    await sign_in(svc)
    # Real traffic: a start from an IP, then its number's hourly cap refuses more (the counters of real events).
    for _ in range(12):
        await svc.start("+15017122661", ip="203.0.113.9")
    page = (await svc.http.get("/admin/incidents?window=1h")).text
    ip_table = table_of(page, "incidents-ip")
    assert "203.0.113.9" in ip_table and "<svg" in ip_table
    link = re.search(r'href="(/admin/audit\?[^"]*ip=203.0.113.9[^"]*)"', ip_table)
    assert link
    audit_page = (await svc.http.get(link.group(1).replace("&amp;", "&"))).text
    events = table_of(audit_page, "events")
    assert events.count("203.0.113.9") >= 12 and "refused" in events
    prefix_table = table_of(page, "incidents-prefix")
    assert "+1501712" in prefix_table
    prefix_link = re.search(r'href="(/admin/audit\?[^"]*prefix=[^"]*)"', prefix_table)
    assert prefix_link
    by_prefix = (await svc.http.get(prefix_link.group(1).replace("&amp;", "&"))).text
    assert table_of(by_prefix, "events").count("+1*********61") >= 12
    other = (await svc.http.get("/admin/audit?prefix=%2B1415555")).text
    assert "No matching events." in table_of(other, "events")


# -- brute force -------------------------------------------------------------------------------------


async def brute_force(svc: Service, to: str, ips: list[str]) -> list[str]:
    """Wrong codes until the number locks: two verifications' five attempts each (both locked),
    then a third verification whose check is refused (10 failed checks an hour per key)."""
    vids = []
    for round_ in range(3):
        vid = (await svc.start(to)).json()["id"]
        vids.append(vid)
        for n in range(5 if round_ < 2 else 1):
            response = await svc.check("000000", id=vid, ip=ips[n % len(ips)])
            assert response.status_code == (200 if round_ < 2 else 429), response.text
    return vids


async def test_bruteforce_lists_locked_verifications_and_numbers_with_their_ips(no_cooldown: Service) -> None:
    svc = no_cooldown
    await sign_in(svc)
    vids = await brute_force(svc, "+15017122661", ["203.0.113.20", "203.0.113.21"])
    verifications, numbers = await bruteforce.locks_since(
        svc.app.state.store, svc.app.state.verifier.keyring, now_ms(svc) - HOUR
    )
    assert sorted(v.verifications[0] for v in verifications) == sorted(vids[:2])
    assert all(v.to == "+1*********61" and v.count == 5 for v in verifications)
    assert all(sorted(v.ips) == ["203.0.113.20", "203.0.113.21"] for v in verifications)
    [number] = numbers
    assert (number.to, number.country, number.count, number.verifications) == ("+1*********61", "US", 1, vids[2:])
    assert sorted(number.ips) == ["203.0.113.20", "203.0.113.21"]  # from the failed verifications
    key_id = svc.key.split("_")[1]
    assert number.key == key_id and number.keys == [key_id] and number.locked_now(now_ms(svc))
    # A refused check of another verification of the same number, from a third IP, joins the row.
    svc.clock.advance(60)
    await svc.http.post(f"/v1/verifications/{vids[2]}/cancel", headers=svc.auth())
    fourth = (await svc.start("+15017122661")).json()["id"]
    assert fourth != vids[2]
    assert (await svc.check("000000", id=fourth, ip="203.0.113.22")).status_code == 429
    _, numbers = await bruteforce.locks_since(svc.app.state.store, svc.app.state.verifier.keyring, now_ms(svc) - HOUR)
    [number] = numbers
    assert number.count == 2 and len(number.verifications) == 2 and "203.0.113.22" in number.ips
    assert number.last_ms - number.first_ms == 60_000

    page = (await svc.http.get("/admin/bruteforce?window=1h")).text
    locked = table_of(page, "locked-numbers")
    assert "+1*********61" in locked and "203.0.113.22" in locked and "until" in locked
    assert table_of(page, "locked-verifications").count("<tr>") == 3  # header and two rows
    link = re.search(r'href="(/admin/audit\?ip=203.0.113.20[^"]*)"', locked)
    assert link
    events = table_of((await svc.http.get(link.group(1).replace("&amp;", "&"))).text, "events")
    assert "check_failed" in events and "max_attempts" in events and "203.0.113.21" not in events
    # Out of the window: nothing.
    svc.clock.advance(2 * 3600)
    assert "No check was refused for a number locked" in (await svc.http.get("/admin/bruteforce?window=1h")).text


# -- blocks and confirmations ------------------------------------------------------------------------


@pytest.fixture
async def budgets_off(redis_url: str, clock: Clock, sender: RecordingSender) -> AsyncIterator[Service]:
    settings = make_settings(redis_url, policy=policy(unproven_country_floor=1000, unproven_tenant_floor=1000))
    async with running_service(settings, clock, sender) as svc:
        yield svc


async def test_blocks_say_since_when_why_and_their_level(budgets_off: Service) -> None:
    svc = budgets_off
    await sign_in(svc)
    blocked_at = now_ms(svc)
    statuses = [(await svc.start(f"+1415555{n:04d}")).status_code for n in range(100, 108)]
    assert statuses[:6] == [201] * 6 and statuses[6] in (403, 429)
    [block] = await svc.app.state.policy.blocked(now_ms(svc))
    assert (block["value"], block["level"], block["reason"]) == ("+1415555", 1, "unverified_hourly")
    assert (block["since_ms"], block["sends"], block["approvals"], block["unverified"]) == (blocked_at, 6, 0, 6)
    assert block["threshold"] == 6.0  # the hourly floor, with no approval to add to it
    blocked = table_of((await svc.http.get("/admin/fraud")).text, "blocked")
    assert "6 unverified verifications in the last hour: 6 sent, 0 approved (threshold 6)" in blocked
    assert "2027-01-15 08:00 UTC" in blocked  # since (the clock's start)


async def test_unblock_and_safe_list_change_nothing_before_confirmation(budgets_off: Service) -> None:
    svc = budgets_off
    csrf = await sign_in(svc)
    for n in range(100, 108):
        await svc.start(f"+1415555{n:04d}")
    policy_ = svc.app.state.policy
    assert len(await policy_.blocked(now_ms(svc))) == 1
    ask = await svc.http.post(
        "/admin/fraud/unblock", data={"csrf": csrf, "kind": "prefix", "value": "+1415555", "window": "6h"}
    )
    assert ask.status_code == 200 and "Unblock +1415555?" in ask.text and "It exempts nothing" in ask.text
    assert len(await policy_.blocked(now_ms(svc))) == 1  # still blocked
    form = ask.text.split('class="confirm"', 1)[1].split("</form>", 1)[0]
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form))
    assert fields == {"csrf": csrf, "kind": "prefix", "value": "+1415555", "window": "6h", "confirm": "yes"}
    assert 'href="/admin/fraud?window=6h">Cancel' in ask.text
    # The second step is a form like any other: without the session's CSRF token it changes nothing.
    forged = await svc.http.post("/admin/fraud/unblock", data={**fields, "csrf": "x" * 43})
    assert forged.status_code == 403 and len(await policy_.blocked(now_ms(svc))) == 1
    done = await svc.http.post("/admin/fraud/unblock", data=fields)
    assert done.status_code == 303 and await policy_.blocked(now_ms(svc)) == []

    ask = await svc.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": "+1415555"})
    assert ask.status_code == 200 and "Add +1415555 to the safe list?" in ask.text
    for words in ("SMS-pumping rules", "send limits", "Still applied: the per-IP and per-API-key rate limits"):
        assert words in ask.text
    assert await policy_.safe_list.entries() == frozenset()
    events, _ = await audit.read(svc.app.state.store, audit.AuditFilter(event="admin"))
    assert [e.get("action") for e in events] == ["unblock", "dashboard_sign_in"]  # no safelist_add yet
    done = await svc.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": "+1415555", "confirm": "yes"})
    assert done.status_code == 303 and await policy_.safe_list.entries() == frozenset({"+1415555"})
    # Bad input is refused at the first step, with nothing to confirm.
    bad = await svc.http.post("/admin/fraud/safelist", data={"csrf": csrf, "entry": "1415555<b>"})
    assert bad.status_code == 400 and "confirm" not in bad.text.lower().split("</header>", 1)[1]


# -- one window parameter ----------------------------------------------------------------------------

PAGES = ["/admin/", "/admin/incidents", "/admin/bruteforce", "/admin/fraud"]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_takes_one_window_parameter(service: Service, path: str) -> None:
    svc = service
    await sign_in(svc)
    for name in ("1h", "6h", "24h", "7d"):
        response = await svc.http.get(path, params={"window": name})
        assert response.status_code == 200, (path, name)
        assert f'aria-current="page">{name}</a>' in response.text  # the picker marks it
        assert f"window={name}" in response.text
    refused = await svc.http.get(path, params={"window": "2h"})
    assert refused.status_code == 400 and "window: must be one of: 1h, 6h, 24h, 7d" in refused.text
    # The older name still works, and says its own name when wrong.
    assert 'aria-current="page">6h</a>' in (await svc.http.get(path, params={"since": "6h"})).text
    old = await svc.http.get(path, params={"since": "2h"})
    assert old.status_code == 400 and "since: must be one of" in old.text


async def test_stats_api_takes_window_too(service: Service) -> None:
    svc = service
    admin = svc.auth(svc.admin_key)
    six = (await svc.http.get("/v1/stats/overview", params={"window": "6h"}, headers=admin)).json()
    assert six["since"] == "6h" and six["window_hours"] == 6
    assert six["series"]["bucket_minutes"] == 5 and len(six["series"]["buckets"]) == 72
    bad = await svc.http.get("/v1/stats/overview", params={"window": "2h"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "window"
    assert (await svc.http.get("/v1/stats/overview", params={"since": "7d"}, headers=admin)).json()["since"] == "7d"


# -- the audit filters the rows link to ------------------------------------------------------------


async def test_audit_filters_by_prefix_and_service_in_the_api_and_the_cli(
    service: Service, redis_url: str, tmp_path: Path
) -> None:
    svc = service
    await svc.start("+15017122661")
    await svc.start("+442079460000")
    admin = svc.auth(svc.admin_key)
    found = (await svc.http.get("/v1/audit", params={"prefix": "+1501712"}, headers=admin)).json()["events"]
    assert [e["to"] for e in found] == ["+1*********61"] and "+1501712" not in str(found)
    bad = await svc.http.get("/v1/audit", params={"service": "nope"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "service"
    both = await svc.http.get("/v1/audit", params={"service": "VA" + "0" * 32, "key": "k"}, headers=admin)
    assert both.status_code == 400 and both.json()["error"]["field"] == "service"
    cli = run_cli(redis_url, tmp_path, "--since", "2027-01-15T07:00:00Z", "--prefix", "+44207946", "--format", "jsonl")
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line)["country"] for line in cli.stdout.splitlines()] == ["GB"]
    refused = run_cli(redis_url, tmp_path, "--service", "VA123")
    assert refused.returncode == 2 and "--service" in refused.stderr


def test_a_sparkline_draws_a_burst_in_a_few_points_and_names_its_peak() -> None:
    values = [0] * 200 + [3, 7, 2] + [0] * 157  # six hours of minutes, a burst in them
    svg = sparkline("s", "Refusals of +1415555 per minute", values, ("15 Jan 02:01", "15 Jan 08:00"))
    points = re.search(r'<polyline class="line" points="([^"]+)"', svg)
    assert points and len(points.group(1).split()) == 7  # both ends, the burst and the run ends beside it
    assert 'viewBox="0 0 359 100"' in svg and 'role="img"' in svg
    assert "15 Jan 02:01 to 15 Jan 08:00: peak 7, total 12" in svg
