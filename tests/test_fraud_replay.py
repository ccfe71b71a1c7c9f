"""The pumping replay at a small scale (bench/fraud_replay.py runs it at the issue's): two simulated
days, a legitimate background of random arrivals (four in five users type their code within a
minute) and one attack on day 2, through the real app on a real Redis with an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import fraud_scenarios as fs
import pytest
from conftest import Clock, make_settings, running_service

from otp.core import apikeys

BACKGROUND_PER_DAY = 300


@pytest.fixture
async def replay(redis_url: str) -> AsyncIterator[fs.Replay]:
    sender = fs.LatestCodes()
    async with running_service(make_settings(redis_url), Clock(), sender) as service:
        yield fs.Replay(service, sender, seed=3)


async def _run(replay: fs.Replay, attack: Callable[[fs.Replay], Any] | None = None, **background: Any) -> None:
    replay.background(per_day=BACKGROUND_PER_DAY, **background)
    if attack is not None:
        attack(replay)
    await replay.run()
    print(
        f"attacker {replay.attack.sent}/{replay.attack.attempts} SMS (${replay.attack.cost}), "
        f"stopped by {dict(replay.attack.refused_by)}; legit refused {len(replay.legit_refusals)}"
    )


@pytest.mark.parametrize("rotating", [False, True], ids=["random", "rotating"])
async def test_a_legitimate_background_alone_is_never_refused(replay: fs.Replay, rotating: bool) -> None:
    await _run(replay, rotating=rotating)
    assert replay.legit.attempts >= 2 * BACKGROUND_PER_DAY
    assert replay.legit_refusals == []


async def test_a_burst_to_one_prefix_from_one_ip_gets_at_most_five_sms(replay: fs.Replay) -> None:
    await _run(replay, lambda r: fs.attack_a(r, count=200))
    assert replay.attack.sent <= 5
    assert replay.legit_refusals == []


async def test_pumping_many_countries_slowly_is_bounded_by_the_tenants_budgets(replay: fs.Replay) -> None:
    # B over 5 countries: 1,200 unverified starts in a day; about the budgets' floors get out.
    await _run(replay, lambda r: fs.attack_b(r, countries=5))
    assert replay.attack.attempts == 1200
    assert replay.attack.sent <= 5 * 4 + 10
    assert replay.legit_refusals == []


async def test_approving_a_third_of_its_own_codes_does_not_buy_the_attacker_much(replay: fs.Replay) -> None:
    await _run(replay, lambda r: fs.attack_b(r, countries=5, approve=0.35))
    # Each approval widens a budget by one, so a country lets ~16 through: the full replay's C
    # (50 countries) is bounded by the tenant's budget instead, 385 of 12,000.
    assert replay.attack.sent <= 100
    assert replay.legit_refusals == []


async def test_a_refused_burst_never_blocks_anything(replay: fs.Replay) -> None:
    await _run(replay, fs.refused_burst)
    assert replay.attack.sent == 2  # the start and its free resend; none of the burst
    assert replay.attack.attempts == 102
    assert await replay.service.app.state.policy.blocked(int(replay.service.clock() * 1000)) == []
    assert replay.legit_refusals == []


async def test_one_tenants_attack_never_refuses_another_tenants_users(replay: fs.Replay) -> None:
    _, other = await apikeys.create(replay.service.app.state.store, "tenant-b")
    replay.background(per_day=BACKGROUND_PER_DAY, key=other)  # tenant B's users
    await _run(replay, lambda r: fs.attack_a_prime(r, count=200, new_ip_each=True))  # tenant A attacks
    assert replay.attack.sent <= 10
    assert replay.legit_refusals == []
