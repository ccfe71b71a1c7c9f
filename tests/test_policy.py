"""Every rule at its boundary with injected time, limits under concurrency, and an SMS-pumping day."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import NO_PUMPING, Clock, RecordingSender, Service, make_settings, policy, running_service, stream_entries

TO = "+15017122661"


@contextlib.asynccontextmanager
async def make(redis_url: str, clock: Clock, sender: RecordingSender, **changes: Any) -> AsyncIterator[Service]:
    settings_changes = {k: v for k, v in changes.items() if k in {"max_sends"}}
    policy_changes = {k: v for k, v in changes.items() if k not in settings_changes}
    settings = make_settings(redis_url, policy=policy(**policy_changes), **settings_changes)
    async with running_service(settings, clock, sender) as service:
        yield service


def error(response: Any) -> dict[str, Any]:
    return dict(response.json()["error"])


async def test_resend_cooldown_doubles_with_each_send(service: Service) -> None:
    """The default cooldown, 10 s: a verification's first resend is free, the next ones wait 10 s,
    20 s, 40 s after the previous send, up to its 5 sends; a new verification after them waits
    10 s × 2^(sends in the hour − 1)."""
    started = await service.start(TO)
    assert started.status_code == 201
    vid = started.json()["id"]
    free = await service.start(TO)
    assert free.status_code == 201  # the 2nd send, at once
    assert free.json()["id"] == vid
    refused = await service.start(TO)
    assert refused.status_code == 429
    assert error(refused)["code"] == "resend_too_soon"
    assert error(refused)["rule"] == "resend_cooldown"
    assert refused.headers["Retry-After"] == "10"
    for wait in (10, 20, 40):  # the 3rd, 4th and 5th sends
        service.clock.advance(wait - 1)
        early = await service.start(TO)
        assert early.status_code == 429
        assert early.headers["Retry-After"] == "1"
        service.clock.advance(1)
        resent = await service.start(TO)
        assert resent.status_code == 201, wait
        assert resent.json()["id"] == vid
    capped = await service.start(TO)
    assert error(capped)["code"] == "max_sends_reached"

    code = await service.last_code(TO)
    assert (await service.check(code, id=vid)).json()["approved"] is True
    # A new verification: 5 sends to the number in the hour, so 10 s × 2^4 after the last one.
    service.clock.advance(159)
    waiting = await service.start(TO)
    assert error(waiting)["code"] == "resend_too_soon"
    assert waiting.headers["Retry-After"] == "1"
    service.clock.advance(1)
    again = await service.start(TO)
    assert again.status_code == 201
    assert again.json()["id"] != vid


async def test_number_hourly_limit_nth_allowed_next_refused_then_allowed_after_the_window(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with make(redis_url, clock, sender, resend_cooldown=0, number_sends_per_hour=4, max_sends=10) as service:
        for _ in range(4):
            assert (await service.start(TO)).status_code == 201
        refused = await service.start(TO)
        assert error(refused)["code"] == "number_hourly_limit"
        assert int(refused.headers["Retry-After"]) == 3600
        clock.advance(3600)
        assert (await service.start(TO)).status_code == 201


async def test_number_daily_limit(redis_url: str, clock: Clock, sender: RecordingSender) -> None:
    async with make(redis_url, clock, sender, resend_cooldown=0, number_sends_per_day=3) as service:
        for _ in range(3):
            assert (await service.start(TO)).status_code == 201
            clock.advance(3000)
        refused = await service.start(TO)
        assert error(refused)["code"] == "number_daily_limit"
        clock.advance(86400 - 9000 + 1)
        assert (await service.start(TO)).status_code == 201


async def test_failed_checks_are_capped_per_number_across_verifications(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with make(redis_url, clock, sender, failed_checks_per_hour=7) as service:
        first = (await service.start(TO)).json()["id"]
        for _ in range(5):
            await service.check("000000", id=first)
        clock.advance(60)
        second = (await service.start(TO)).json()["id"]
        for _ in range(2):
            assert (await service.check("000000", id=second)).status_code == 200
        refused = await service.check("000000", id=second)
        assert refused.status_code == 429
        assert error(refused)["code"] == "too_many_failed_checks"
        clock.advance(3600 - 60)
        assert (await service.check("000000", id=second)).status_code == 200


async def test_a_right_answer_is_not_a_failed_check(redis_url: str, clock: Clock, sender: RecordingSender) -> None:
    async with make(redis_url, clock, sender, failed_checks_per_hour=2) as service:
        vid = (await service.start(TO)).json()["id"]
        await service.check("000000", id=vid)
        assert (await service.check(await service.last_code(), id=vid)).json()["approved"] is True
        clock.advance(31)
        vid = (await service.start(TO)).json()["id"]
        assert (await service.check("000000", id=vid)).status_code == 200  # 2nd failure: still allowed


def numbers(count: int) -> list[str]:
    """Valid US numbers, each under its own prefix, so one rule at a time is tested."""
    return [f"+1{area}555{n % 10:01d}{n:03d}" for n, area in zip(range(count), AREAS, strict=False)]


AREAS = [
    201,
    202,
    203,
    205,
    206,
    207,
    208,
    209,
    210,
    212,
    213,
    214,
    215,
    216,
    217,
    218,
    219,
    224,
    225,
    228,
    229,
    231,
    234,
    239,
    240,
    248,
    251,
    252,
    253,
    254,
    256,
    260,
    262,
    267,
    269,
    270,
    272,
    276,
    281,
    301,
]


async def test_ip_hourly_limit(redis_url: str, clock: Clock, sender: RecordingSender) -> None:
    async with make(redis_url, clock, sender, ip_sends_per_hour=3, **NO_PUMPING) as service:
        targets = numbers(5)
        for to in targets[:3]:
            assert (await service.start(to, ip="203.0.113.7")).status_code == 201
        refused = await service.start(targets[3], ip="203.0.113.7")
        assert error(refused)["code"] == "ip_hourly_limit"
        assert (await service.start(targets[3], ip="198.51.100.1")).status_code == 201
        clock.advance(3600)
        assert (await service.start(targets[4], ip="203.0.113.7")).status_code == 201


async def test_api_key_minute_limit(redis_url: str, clock: Clock, sender: RecordingSender) -> None:
    async with make(redis_url, clock, sender, key_sends_per_minute=3, **NO_PUMPING) as service:
        targets = numbers(5)
        for to in targets[:3]:
            assert (await service.start(to)).status_code == 201
        assert error(await service.start(targets[3]))["code"] == "key_minute_limit"
        clock.advance(60)
        assert (await service.start(targets[3])).status_code == 201


async def test_a_refused_send_is_not_counted_by_the_other_rules(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    # 3: the start and its free first resend count, and leave room for one more send.
    async with make(redis_url, clock, sender, ip_sends_per_hour=3) as service:
        assert (await service.start(TO, ip="203.0.113.7")).status_code == 201
        assert (await service.start(TO, ip="203.0.113.7")).status_code == 201
        for _ in range(5):  # refused by the number's cooldown: the IP must not pay for them
            assert (await service.start(TO, ip="203.0.113.7")).status_code == 429
        assert (await service.start(numbers(1)[0], ip="203.0.113.7")).status_code == 201


async def test_country_outside_the_allowlist_is_403(redis_url: str, clock: Clock, sender: RecordingSender) -> None:
    async with make(redis_url, clock, sender, allowed_countries=frozenset({"US", "CA"})) as service:
        refused = await service.start("+33612345678")
        assert refused.status_code == 403
        assert error(refused)["code"] == "country_not_allowed"
        assert error(refused)["field"] == "to"
        assert (await service.start(TO)).status_code == 201


@pytest.mark.parametrize(("number", "kind"), [("+19005551234", "premium_rate"), ("+442071838750", "fixed_line")])
async def test_refused_number_types_are_403(service: Service, number: str, kind: str) -> None:
    refused = await service.start(number)
    assert refused.status_code == 403
    assert error(refused)["code"] == "number_type_not_allowed"


async def test_safe_list_bypasses_fraud_rules_but_not_the_verification_caps(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with make(redis_url, clock, sender, number_sends_per_hour=2) as service:
        added = await service.http.post(
            "/v1/safelist", json={"entry": "+1501712"}, headers=service.auth(service.admin_key)
        )
        assert added.status_code == 201
        for _ in range(5):  # no cooldown, no hourly limit for a safe-listed number
            assert (await service.start(TO)).status_code == 201
        assert error(await service.start(TO))["code"] == "max_sends_reached"
        listed = await service.http.get("/v1/safelist", headers=service.auth(service.admin_key))
        assert listed.json()["entries"] == ["+1501712"]
        assert (await service.http.get("/v1/safelist", headers=service.auth())).status_code == 403


async def test_hundred_parallel_starts_for_one_number_allow_exactly_the_cap(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with make(
        redis_url,
        clock,
        sender,
        resend_cooldown=0,
        number_sends_per_hour=10,
        max_sends=20,
        **NO_PUMPING,
    ) as service:
        answers = await asyncio.gather(*(service.start(TO) for _ in range(100)))
        assert sum(1 for a in answers if a.status_code == 201) == 10
        assert {error(a)["code"] for a in answers if a.status_code != 201} == {"number_hourly_limit"}


async def test_risk_check_disable_needs_an_admin_key(service: Service) -> None:
    refused = await service.start(TO, risk_check="disable")
    assert refused.status_code == 403
    assert error(refused)["field"] == "risk_check"
    allowed = await service.http.post(
        "/v1/verifications", json={"to": TO, "risk_check": "disable"}, headers=service.auth(service.admin_key)
    )
    assert allowed.status_code == 201


class Day:
    """2,000 starts over a simulated day: 30 legitimate prefixes converting at 80 %, and a burst to
    one prefix that never converts."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.legit_refused: list[dict[str, Any]] = []
        self.burst_sent = 0
        self.burst_refused = 0
        self.legit_sent = 0
        self.counter = 0
        self.legit = 0

    async def run(self, steps: int = 96, per_step: int = 21) -> None:
        for _ in range(steps):
            for i in range(per_step):
                self.counter += 1
                if i % 10 == 3:  # about one request in ten is the attack
                    response = await self.service.start(f"+1415555{self.counter % 10000:04d}")
                    if response.status_code == 201:
                        self.burst_sent += 1
                    else:
                        self.burst_refused += 1
                    continue
                self.legit += 1
                # The prefix turns each round, so every prefix gets its share of the unused codes.
                area = AREAS[(self.legit + self.legit // 30) % 30]
                to = f"+1{area}555{self.legit // 30 % 10000:04d}"
                response = await self.service.start(to)
                if response.status_code != 201:
                    self.legit_refused.append(response.json())
                    continue
                self.legit_sent += 1
                if self.legit % 5:  # four in five users type their code, within a minute
                    await self.service.deliver()
                    code = self.service.sender.codes_for(to)[-1]
                    self.service.clock.advance(1)
                    assert (await self.service.check(code, id=response.json()["id"])).json()["approved"] is True
            self.service.clock.advance(86400 / steps)


async def test_pumping_burst_is_blocked_within_twenty_sends_and_no_legit_request_is_refused(
    service: Service,
) -> None:
    day = Day(service)
    await day.run()
    print(
        f"pumping day: {day.counter} starts, burst sent {day.burst_sent} refused {day.burst_refused}, "
        f"legit sent {day.legit_sent} refused {len(day.legit_refused)}"
    )
    assert day.counter >= 2000
    assert day.legit_refused == []
    assert day.burst_sent <= 20
    assert day.burst_refused > 150
    stats = await service.http.get("/v1/stats/conversion?prefix=%2B1415555", headers=service.auth(service.admin_key))
    assert stats.json()["approvals"] == 0
    country = (
        await service.http.get("/v1/stats/conversion?country=US", headers=service.auth(service.admin_key))
    ).json()
    assert 0.7 < country["rate"] < 0.85


async def test_record_only_mode_refuses_nothing_but_records_the_decisions(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with make(redis_url, clock, sender, pumping_mode="record_only") as service:
        day = Day(service)
        await day.run(steps=24, per_step=21)
        assert day.legit_refused == []
        assert day.burst_refused == 0
        flagged = 0
        for partition in range(16):
            for _, fields in await stream_entries(service.redis, f"otp:{{p{partition:02x}}}:audit"):
                if b"flagged" in fields:
                    # The burst's prefix is never proven: its tenant's budget would have refused it.
                    assert fields[b"flagged"].split(b":")[0] in (b"prefix", b"range", b"tenant_country", b"tenant")
                    flagged += 1
        assert flagged > 10


async def test_a_pumping_block_is_listed_with_its_level_and_can_be_lifted(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    # The prefix's own threshold (6 unverified an hour), with the tenant's budgets out of the way.
    async with make(redis_url, clock, sender, unproven_country_floor=1000, unproven_tenant_floor=1000) as service:
        for n in range(8):
            await service.start(f"+1415555{n:04d}")
        blocked = await service.app.state.policy.blocked(int(clock() * 1000))
        tenant = service.key.split("_")[1]  # the prefix scopes are per tenant
        assert blocked == [
            {
                "kind": "prefix",
                "tenant": tenant,
                "value": "+1415555",
                "level": 1,
                "seconds_left": 300,
                "reason": "unverified_hourly",  # why: 6 unverified in the hour, the floor
                "unverified": 6,
                # … since when, and the counts held to the threshold (the hourly floor, no approval).
                "since_ms": int(clock() * 1000),
                "sends": 6,
                "approvals": 0,
                "threshold": 6.0,
            }
        ]
        lifted = await service.http.delete("/v1/blocks?prefix=%2B1415555", headers=service.auth(service.admin_key))
        assert lifted.json() == {"prefix": "+1415555", "was_blocked": True}
        assert await service.app.state.policy.blocked(int(clock() * 1000)) == []
