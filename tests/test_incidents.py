"""The Incidents view's data without a browser: the minute counters and the refusal and source
tallies beside the hourly ones (exact counts, their keys and lifetimes), ``ip`` on checks, the
rankings by refused attempts, the brute-force list, blocks that say when and why, confirmations
before any change, and one ``window`` parameter across the pages."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import Service, hash_fields

from otp.audit_fields import COUNTER_ONLY_PREFIX
from otp.core import apikeys, audit
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
    }
    refusals = decoded(await hash_fields(svc.redis, keyspace.audit_refusal_counter_of_hour(3, hour)))
    assert refusals == {k: v for k, v in minute_hash.items() if k.startswith("refused@")}
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
