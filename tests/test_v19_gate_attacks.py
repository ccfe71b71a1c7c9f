"""Hostile-client review of d14d4f0: a number's own limits asked before the admission
(number_gate.lua, in the opt-out read's round trip). Each test is an attack; a test that fails on
d14d4f0 shows a defect (see each docstring), the others held."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from cluster_fixtures import local_cluster, running_service_at
from conftest import (
    NO_PUMPING,
    Clock,
    RecordingSender,
    Service,
    hash_fields,
    make_settings,
    policy,
    running_service,
)
from test_v18_attacks import US_PRICES, account, budgeted, changed, counts, opt_out, v2_post

from otp.core import apikeys
from otp.storage import keys as keyspace

NUMBER = "+15017122662"


async def audit_events(svc: Service, event: str = "") -> list[dict[str, Any]]:
    params = {"event": event} if event else {}
    page = (await svc.http.get("/v1/audit", params=params, headers=svc.auth(svc.admin_key))).json()
    return list(page["events"])


async def counter_total(client: aioredis.Redis, field: bytes) -> int:
    """The field's sum over every hourly audit counter (agg:<hour>)."""
    total = 0
    async for key in client.scan_iter(match="*:agg:*", count=1000):
        value = await client.hget(key, field)
        total += int(value or 0)
    return total


async def full_number_anywhere(client: aioredis.Redis, e164: str) -> list[bytes]:
    """Audit stream entries holding the whole number."""
    found = []
    async for key in client.scan_iter(match="*:audit", count=1000):
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(key))
        for _, fields in entries:
            if any(e164.encode() in v for v in fields.values()):
                found.append(key)
    return found


async def key_of(svc: Service, token: str | None = None) -> str:
    state = svc.app.state
    return str((await state.keys.authenticate(f"Bearer {token or svc.key}")).key_id)


def settings_for(redis_url: str, **limits: Any) -> Any:
    rules = {k: limits.pop(k) for k in ("max_sends", "code_ttl", "max_check_attempts") if k in limits}
    return make_settings(redis_url, policy=policy(**{**NO_PUMPING, **limits}), **rules)


# -- 1. the refusal as the client sees it -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "code"),
    [("hourly", "number_hourly_limit"), ("daily", "number_daily_limit"), ("cooldown", "resend_too_soon")],
)
async def test_a_gate_refusal_answers_as_start_lua_did(
    redis_url: str, clock: Clock, sender: RecordingSender, setup: str, code: str
) -> None:
    limits: dict[str, Any] = {
        "hourly": {"number_sends_per_hour": 1, "resend_cooldown": 0},
        "daily": {"number_sends_per_day": 1, "resend_cooldown": 0},
        "cooldown": {"resend_cooldown": 30},
    }[setup]
    async with running_service(settings_for(redis_url, **limits), clock, sender) as svc:
        assert (await svc.start(NUMBER)).status_code == 201
        if setup == "cooldown":
            assert (await svc.start(NUMBER)).status_code == 201  # the free first resend
        clock.advance(5)
        refused = await svc.start(NUMBER)
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == code
        expected = {"hourly": 3595, "daily": 86395, "cooldown": 25}[
            setup
        ]  # 2 sends, one of them this verification's: one step
        assert int(refused.headers["Retry-After"]) == expected


async def test_max_sends_reached_by_the_gate_on_v1_and_v2(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with running_service(settings_for(redis_url, resend_cooldown=0, max_sends=2), clock, sender) as svc:
        for _ in range(2):
            assert (await svc.start(NUMBER)).status_code == 201
        refused = await svc.start(NUMBER)
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "max_sends_reached")
        a = await account(svc, "tenant-v2")
        sid = (await v2_post(svc, a, "Services", FriendlyName="A")).json()["sid"]
        other = "+15017122663"
        for _ in range(2):
            assert (await v2_post(svc, a, f"Services/{sid}/Verifications", To=other, Channel="sms")).status_code == 201
        v2 = await v2_post(svc, a, f"Services/{sid}/Verifications", To=other, Channel="sms")
        assert (v2.status_code, v2.json()["code"]) == (429, 60203), v2.text
        assert "Retry-After" in v2.headers


async def test_a_verification_out_of_check_attempts_gets_a_new_one_not_a_refusal(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """Out of attempts (and of sends): the gate must not say max_sends_reached where start.lua
    makes a new verification."""
    settings = settings_for(redis_url, resend_cooldown=0, max_sends=1, max_check_attempts=2)
    async with running_service(settings, clock, sender) as svc:
        first = (await svc.start(NUMBER)).json()["id"]
        for _ in range(2):
            await svc.check("000000" if (await svc.last_code(NUMBER)) != "000000" else "111111", id=first)
        again = await svc.start(NUMBER)
        assert again.status_code == 201, again.text
        assert again.json()["id"] != first


# -- 2. another tenant ----------------------------------------------------------------------------------


async def test_another_tenants_sends_give_a_fixed_hold_on_v1_and_v2_and_touch_nothing_of_theirs(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with running_service(settings_for(redis_url, number_sends_per_hour=1), clock, sender) as svc:
        assert (await svc.start(NUMBER)).status_code == 201
        a_id = await key_of(svc)
        state_key = keyspace.number_state(keyspace.partition_of_number(NUMBER, 16), NUMBER)
        before = await hash_fields(svc.redis, state_key)
        b_key, b = await apikeys.create(svc.app.state.store, "tenant-b")
        for wait in (7, 13, 1000):  # whenever B asks, the answer says nothing of when A sent
            clock.advance(wait)
            answer = await svc.http.post("/v1/verifications", json={"to": NUMBER}, headers=svc.auth(b))
            assert (answer.status_code, answer.json()["error"]["code"]) == (429, "rate_limited")
            assert answer.headers["Retry-After"] == "60", wait
            clock.advance(60)
        after = await hash_fields(svc.redis, state_key)
        # A's pointer and the send log as they were; only B's own hold was added.
        assert {k: v for k, v in after.items() if not k.startswith(b"hd:")} == before
        assert [k for k in after if k.startswith(b"hd:")] == [f"hd:{b_key.key_id}".encode()]
        assert f"p:{a_id}".encode() in after
        v2 = await account(svc, "tenant-v2")
        sid = (await v2_post(svc, v2, "Services", FriendlyName="C")).json()["sid"]
        refused = await v2_post(svc, v2, f"Services/{sid}/Verifications", To=NUMBER, Channel="sms")
        assert (refused.status_code, refused.json()["code"]) == (429, 20429)
        assert refused.headers["Retry-After"] == "60"


async def test_a_tenants_resend_after_another_tenants_send_waits_as_a_start_and_is_held_fixed(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """B's verification had one send, then A sent: B's free resend is gone (cooldown, a foreign
    send in between), told as the fixed hold, in both paths."""
    async with running_service(settings_for(redis_url, resend_cooldown=30), clock, sender) as svc:
        _, b = await apikeys.create(svc.app.state.store, "tenant-b")
        first = await svc.http.post("/v1/verifications", json={"to": NUMBER}, headers=svc.auth(b))
        assert first.status_code == 201
        clock.advance(40)
        assert (await svc.start(NUMBER)).status_code == 201
        clock.advance(3)
        resend = await svc.http.post("/v1/verifications", json={"to": NUMBER}, headers=svc.auth(b))
        assert (resend.status_code, resend.json()["error"]["code"]) == (429, "rate_limited")
        assert resend.headers["Retry-After"] == "60"


@pytest.mark.parametrize("scope", ["global", "tenant"])
async def test_a_tenant_the_budget_refuses_learns_nothing_of_another_tenants_sends_to_a_number(
    redis_url: str, clock: Clock, sender: RecordingSender, scope: str
) -> None:
    """Tenant B is out of budget (the day's global one, or its own): every start of B's is refused
    ``budget_exhausted`` whatever the number, so B can't tell a number another tenant just sent
    codes to (a user signing in elsewhere) from a fresh one. With the gate before the admission,
    B's start to the busy number answers ``rate_limited`` (the foreign-sends hold) instead: an
    oracle the budget refusal used to mask, and free to poll (nothing is counted)."""
    async with budgeted(
        redis_url, clock, sender, budget="0.01" if scope == "global" else "100", number_sends_per_hour=1
    ) as svc:
        b_key, b = await apikeys.create(svc.app.state.store, "tenant-b")
        if scope == "tenant":
            put = await svc.http.put(
                f"/v1/budgets/keys/{b_key.key_id}", json={"amount": "0.01"}, headers=svc.auth(svc.admin_key)
            )
            assert put.status_code in (200, 204), put.text
            spent = await svc.http.post("/v1/verifications", json={"to": "+15017122670"}, headers=svc.auth(b))
            assert spent.status_code == 201, spent.text
        assert (await svc.start(NUMBER)).status_code == 201  # A's send
        if scope == "global":
            assert (await svc.start("+15017122671")).json()["error"]["code"] == "budget_exhausted"
        answers = {}
        for to in (NUMBER, "+15017122672"):
            r = await svc.http.post("/v1/verifications", json={"to": to}, headers=svc.auth(b))
            answers[to] = (r.status_code, r.json()["error"]["code"])
        assert answers[NUMBER] == answers["+15017122672"], answers


# -- 3. the audit --------------------------------------------------------------------------------------


async def test_a_gate_refusal_is_audited_once_and_counted_once(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with budgeted(redis_url, clock, sender, budget="100", number_sends_per_hour=1, resend_cooldown=0) as svc:
        assert (await svc.start(NUMBER)).status_code == 201
        assert (await svc.start(NUMBER)).status_code == 429
        refused = await audit_events(svc, "refused")
        assert [(e["rule"], e["reason"]) for e in refused] == [("number_sends", "number_hourly_limit")]
        assert await counter_total(svc.redis, b"refused:number_sends:number_hourly_limit") == 1
        # Its estimate counts as spend blocked by the rule, as before (0.01 in millionths).
        assert await counter_total(svc.redis, b"blocked_spend:number_sends") == 10_000
        fields = await svc.redis.hgetall(
            keyspace.audit_refusal_counter_of_hour(
                keyspace.partition_of_number(NUMBER, 16), int(svc.clock() * 1000) // 3_600_000
            )
        )
        assert fields.get(b"refused@rule:number_sends") == b"1", fields


async def test_a_gate_refusals_audit_event_keeps_its_counts_as_json_like_every_other_refusal(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """Every refusal's audit event carries ``counts`` (the admission's figures, JSON; "{}" for an
    opt-out or permission refusal decided before the admission). Before d14d4f0 the number's
    refusals carried the admission's counts; the gate's refusal passes ``''`` as ``decisions``,
    so ``/v1/audit`` hands out ``"counts": ""`` — a string where consumers read an object."""
    async with running_service(settings_for(redis_url, number_sends_per_hour=1), clock, sender) as svc:
        assert (await svc.start(NUMBER)).status_code == 201
        assert (await svc.start(NUMBER)).status_code == 429
        await opt_out(svc, "+15017122669")
        assert (await svc.start("+15017122669")).status_code == 403
        refused = {e["reason"]: e for e in await audit_events(svc, "refused")}
        assert isinstance(refused["recipient_opted_out"]["counts"], dict)
        assert isinstance(refused["number_hourly_limit"]["counts"], dict), refused["number_hourly_limit"]


@pytest.mark.parametrize("refused_by", ["opt_out", "permission"])
async def test_the_gates_expiry_of_a_pending_verification_is_audited_masked_once(
    redis_url: str, clock: Clock, sender: RecordingSender, refused_by: str
) -> None:
    """The read-only gate settles an expired pending verification even when the start is then
    refused for the opt-out or the permission: one ``expired`` event, the masked number, never
    the whole one anywhere in the audit, and one refusal."""
    to = "+15017122661" if refused_by == "opt_out" else "+447911123456"
    async with running_service(settings_for(redis_url, code_ttl=60), clock, sender) as svc:
        first = await svc.start(to)
        assert first.status_code == 201, first.text
        vid, token = first.json()["id"], svc.key
    clock.advance(120)
    narrow = {"allowed_countries": frozenset({"US"})} if refused_by == "permission" else {}
    async with running_service(settings_for(redis_url, code_ttl=60, **narrow), clock, sender) as svc:
        if refused_by == "opt_out":
            await opt_out(svc, to)
        answer = await svc.http.post("/v1/verifications", json={"to": to}, headers=svc.auth(token))
        assert answer.status_code == 403, answer.text
        expired = [e for e in await audit_events(svc, "expired") if e.get("vid") == vid]
        assert len(expired) == 1
        assert expired[0]["to"] != to and expired[0]["to"].endswith(to[-2:])
        assert len(await audit_events(svc, "refused")) == 1
        assert await full_number_anywhere(svc.redis, to) == []
        record = (await svc.http.get(f"/v1/verifications/{vid}", headers=svc.auth(token))).json()
        assert record["status"] == "expired"


# -- 4. failures ---------------------------------------------------------------------------------------


async def test_the_gate_runs_after_a_script_flush(redis_url: str, clock: Clock, sender: RecordingSender) -> None:
    """NOSCRIPT in the pipelined round trip (Redis restarted without its scripts)."""
    async with running_service(settings_for(redis_url, number_sends_per_hour=1), clock, sender) as svc:
        assert (await svc.start(NUMBER)).status_code == 201
        await svc.redis.script_flush()
        refused = await svc.start(NUMBER)
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "number_hourly_limit")
        await svc.redis.script_flush()
        assert (await svc.start("+15017122663")).status_code == 201


async def test_a_broken_number_state_does_not_hide_the_opt_out(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """A number key of the wrong type (corrupt state): before d14d4f0 the opt-out, read alone,
    answered 403; the gate's WRONGTYPE in the same round trip now answers 503 "retry shortly"."""
    async with running_service(settings_for(redis_url), clock, sender) as svc:
        to = "+15017122661"
        await opt_out(svc, to)
        await svc.redis.set(keyspace.number_state(keyspace.partition_of_number(to, 16), to), "broken")
        answer = await svc.start(to)
        assert answer.status_code == 403, answer.text


# -- 5. concurrency ------------------------------------------------------------------------------------


async def test_racing_starts_of_two_tenants_around_a_numbers_cap_spend_only_what_was_sent(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """Two tenants race 24 starts to one number capped at 3 an hour: exactly 3 go out, and the
    day's budget, the key and IP logs hold the 3 sends afterwards and nothing of the refusals."""
    async with budgeted(
        redis_url, clock, sender, budget="100", number_sends_per_hour=3, resend_cooldown=0, ip_sends_per_hour=10**6
    ) as svc:
        _, b = await apikeys.create(svc.app.state.store, "tenant-b")
        before = await counts(svc.redis)
        calls = [
            svc.http.post(
                "/v1/verifications", json={"to": NUMBER, "ip": "203.0.113.9"}, headers=svc.auth(None if n % 2 else b)
            )
            for n in range(24)
        ]
        answers = await asyncio.gather(*calls)
        assert sorted(a.status_code for a in answers) == [201] * 3 + [429] * 21
        diff = changed(before, await counts(svc.redis))
        spend = [new for key, (_, new) in diff.items() if re.search(rb"\{bud:[^}]*\}:d:", key)]
        # The global day's and the two tenants' (3 × 0.01 in all, whichever tenant won which place).
        assert max(spend) == 30_000 and sum(spend) == 60_000, spend
        logs = [v for k, (_, v) in diff.items() if k.endswith(b"sends")]
        assert logs and sum(len(v) for v in logs) <= 3 * 2 + 3, logs  # keys' (3 in all) and the IP's (3)
        assert sum(len(v) for k, (_, v) in diff.items() if b"ip" in k and k.endswith(b"sends")) == 3
        assert (await svc.deliver(), [m.to for m in svc.sender.messages]) == (3, [NUMBER] * 3)


async def test_a_v2_gate_refusal_moves_no_rate_limit_bucket(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    settings = make_settings(
        redis_url,
        sms_prices=US_PRICES,
        budget_daily=Decimal("100"),
        policy=policy(**NO_PUMPING, number_sends_per_hour=1),
    )
    async with running_service(settings, clock, sender) as svc:
        a = await account(svc, "tenant-a")
        sid = (await v2_post(svc, a, "Services", FriendlyName="A")).json()["sid"]
        limit = (await v2_post(svc, a, f"Services/{sid}/RateLimits", UniqueName="user_id")).json()["sid"]
        assert (
            await v2_post(svc, a, f"Services/{sid}/RateLimits/{limit}/Buckets", Max="2", Interval="60")
        ).status_code == 201
        form = {"Channel": "sms", "RateLimits": '{"user_id": "u1"}'}
        assert (await v2_post(svc, a, f"Services/{sid}/Verifications", To=NUMBER, **form)).status_code == 201
        refused = await asyncio.gather(
            *(v2_post(svc, a, f"Services/{sid}/Verifications", To=NUMBER, **form) for _ in range(10))
        )
        assert {(r.status_code, r.json()["code"]) for r in refused} == {(429, 20429)}
        real = await v2_post(svc, a, f"Services/{sid}/Verifications", To="+15017122663", **form)
        assert real.status_code == 201, real.text  # the bucket's second place was still free
        full = await v2_post(svc, a, f"Services/{sid}/Verifications", To="+15017122664", **form)
        assert full.status_code == 429


# -- 6. cluster ----------------------------------------------------------------------------------------


@pytest.mark.cluster
async def test_the_gate_on_a_cluster(sender: RecordingSender) -> None:
    clock = Clock()
    with local_cluster("otp-test-v19-") as cluster:
        settings = make_settings(cluster.url, policy=policy(**NO_PUMPING, number_sends_per_hour=1, resend_cooldown=0))
        async with running_service_at(settings, clock, sender) as svc:
            to_numbers = [f"+1501712{n:04d}" for n in range(2, 8)]
            for to in to_numbers:
                assert (await svc.start(to)).status_code == 201
                refused = await svc.start(to)
                assert (refused.status_code, refused.json()["error"]["code"]) == (429, "number_hourly_limit")
            await opt_out(svc, "+15017129999")
            assert (await svc.start("+15017129999")).status_code == 403
