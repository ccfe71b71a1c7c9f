"""Attacks on the SMS-pumping defence found in its review (issue 12), each fixed: real
redis-server, injected clock, the real app over HTTP."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator

import fraud_scenarios as fs
import httpx
import phonenumbers
import pytest
from conftest import Clock, RecordingSender, Service, make_settings, running_service
from phonenumbers import PhoneNumberType

from otp.core import apikeys
from otp.core.policy import _scope_of


@pytest.fixture
async def svc(redis_url: str) -> AsyncIterator[Service]:
    async with running_service(make_settings(redis_url), Clock(), RecordingSender()) as service:
        yield service


def _rule(response: httpx.Response) -> str:
    if response.status_code == 201:
        return "sent"
    error = response.json()["error"]
    return f"{error.get('details', {}).get('rule') or error.get('rule') or '-'}:{error['code']}"


async def _start(service: Service, to: str, key: str | None = None, **body: object) -> httpx.Response:
    return await service.http.post("/v1/verifications", json={"to": to, **body}, headers=service.auth(key))


async def _approve(service: Service, response: httpx.Response, to: str, key: str | None = None) -> None:
    code = await service.last_code(to)
    checked = await service.check(code, key=key, id=response.json()["id"])
    assert checked.status_code == 200 and checked.json()["approved"], checked.text


def _ranges(region: str, count: int, per_range: int) -> list[list[str]]:
    """``count`` ranges (E.164 minus the last 6 digits) of ``region`` with ``per_range`` valid
    mobile prefixes each."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    head, tail = e164[:-8], e164[-4:]
    found = []
    for r in range(100):
        pfx = [f"{head}{r:02d}{p:02d}" for p in range(100) if fs._valid(f"{head}{r:02d}{p:02d}{tail}")]
        if len(pfx) >= per_range:
            found.append(pfx[:per_range])
        if len(found) == count:
            break
    assert len(found) == count, region
    return found


async def test_a_fast_burst_cannot_outrun_the_budgets(svc: Service) -> None:
    """Sent within ~90 s, one key and no IP: the budgets count sends in flight too (less two
    users who may still be typing), so each country gets about its budget, not its thresholds."""
    rng = random.Random(5)
    regions = ["FR", "IT", "ES"]
    sent: Counter[str] = Counter()
    for region in regions:
        for pool in _ranges(region, 3, 4):
            for _ in range(12):
                response = await _start(svc, fs.number_in(rng.choice(pool), rng))
                sent[region] += response.status_code == 201
                svc.clock.advance(0.25)
    print(dict(sent))
    for region in regions:
        assert sent[region] <= 4 + 2, (region, sent)  # the floor, and two users still typing


async def test_a_spent_budget_says_what_it_is_and_what_widens_it(svc: Service) -> None:
    """The refusal a brand-new tenant meets first (every prefix unproven): its message explains it,
    rather than echoing the reason's name."""
    rng = random.Random(7)
    for pool in _ranges("FR", 12, 1):
        response = await _start(svc, fs.number_in(pool[0], rng))
        svc.clock.advance(200)  # past the ~2 minutes in which users may still be typing
        if response.status_code != 201:
            break
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (429, "pumping_unproven_budget"), response.text
    assert error["rule"] == "sms_pumping_tenant_country", error
    assert "budget of unconfirmed codes" in error["message"] and "confirm" in error["message"], error


async def test_a_number_approved_once_does_not_pump_for_a_month(svc: Service) -> None:
    """Known good lasts until 3 sends without a new approval: an attacker who approves each of its
    numbers once gets a few more SMS each, not the number's 20 a day for 30 days."""
    prefix = fs.prefixes("GB", 11, random.Random("GB"))[10]
    numbers = [f"{prefix}{n:04d}" for n in range(1000, 1010)]
    for to in numbers:
        first = await _start(svc, to)
        assert first.status_code == 201
        await _approve(svc, first, to)
        svc.clock.advance(10)
    svc.clock.advance(700)
    outcomes: Counter[str] = Counter()
    for _ in range(19):
        for to in numbers:
            outcomes[_rule(await _start(svc, to))] += 1
            svc.clock.advance(1)
        svc.clock.advance(3900)
    print(outcomes)
    assert outcomes["sent"] <= 10 * 3 + 10  # 3 each, and what the budgets allow after


async def test_a_user_who_resends_is_never_taken_for_pumping(svc: Service) -> None:
    to = "+447911123456"
    outcomes = []
    for wait in (0, 31, 61, 121):
        svc.clock.advance(wait)
        outcomes.append(_rule(await _start(svc, to, ip="198.51.100.7")))
    assert outcomes == ["sent"] * 4
    svc.clock.advance(5)
    assert _rule(await _start(svc, "+15017122661", ip="198.51.100.7")) == "sent"  # the next person there


async def test_four_users_behind_one_address_are_all_served(svc: Service) -> None:
    ip = "100.64.0.1"
    users = ["+447922654321", "+15017122662", "+4915123456789", "+447922123456"]
    outcomes = []
    for to in users:
        outcomes.append(_rule(await _start(svc, to, ip=ip)))
        svc.clock.advance(10)
    assert outcomes == ["sent"] * 4


async def test_one_user_resending_for_half_an_hour_blocks_nothing(svc: Service) -> None:
    to = "+447911123555"
    outcomes = []
    for at in (0, 30, 90, 210, 450, 930, 1890):
        svc.clock.set(1_800_000_000.0 + at)
        outcomes.append(_rule(await _start(svc, to)))
    assert outcomes == ["sent"] * 7
    svc.clock.advance(5)
    assert _rule(await _start(svc, "+447911123556")) == "sent"


async def test_another_tenants_unapproved_sends_never_block_my_users_prefix(svc: Service) -> None:
    _, key_b = await apikeys.create(svc.app.state.store, "tenant-b")
    prefix = "+4479111233"
    for n in range(5):  # yesterday, B's real users in P (P is proven for B)
        to = f"{prefix}{n:02d}"
        response = await _start(svc, to, key=key_b)
        await _approve(svc, response, to, key=key_b)
        svc.clock.advance(120)
    svc.clock.advance(86_400)
    attacker = [_rule(await _start(svc, f"{prefix}{50 + n:02d}")) for n in range(7)]  # tenant A's key
    assert attacker.count("sent") <= 6
    svc.clock.advance(2)
    assert _rule(await _start(svc, f"{prefix}99", key=key_b)) == "sent"
    svc.clock.advance(400)
    assert _rule(await _start(svc, f"{prefix}98", key=key_b)) == "sent"


async def test_a_tenant_cannot_tell_which_numbers_another_tenant_approved(svc: Service) -> None:
    """Known good is the tenant's own: another tenant's probe finds B's user no different from a
    stranger."""
    _, key_b = await apikeys.create(svc.app.state.store, "tenant-b")
    prefix = "+4479112244"
    b_user = f"{prefix}42"
    response = await _start(svc, b_user, key=key_b)
    await _approve(svc, response, b_user, key=key_b)
    svc.clock.advance(3600)
    for n in range(7):
        await _start(svc, f"{prefix}{60 + n:02d}")
    svc.clock.advance(2)
    probe_b_user = await _start(svc, b_user)
    probe_stranger = await _start(svc, f"{prefix}43")
    assert probe_b_user.status_code == probe_stranger.status_code == 429


def test_blocks_are_named_by_their_scope() -> None:
    assert _scope_of("otp:{pip:k1:198.51.100.7}:") == {"kind": "ip", "tenant": "k1", "value": "198.51.100.7"}
    assert _scope_of("otp:{rng:+14155}:") == {"kind": "range", "value": "+14155"}
    assert _scope_of("otp:{pfx:k1:+1415555}:") == {"kind": "prefix", "tenant": "k1", "value": "+1415555"}
    assert _scope_of("otp:{cc:+881}:") == {"kind": "country", "value": "+881"}
