"""A hostile client with an API key (and a hostile party that can reach the public status-callback
URL) against issue 15's spend budgets, sender pool, delivery truth, opt-outs and Lookup. Each test
is an attack; those that found a defect were written first and failed before the fix."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import redis.asyncio as aioredis
from conftest import (
    NO_PUMPING,
    Clock,
    RecordingSender,
    Service,
    default_worker_options,
    make_settings,
    policy,
    running_service,
)
from test_twilio_compat import RELAXED, V2, new_number, serve
from twilio.request_validator import RequestValidator

from otp.core import apikeys
from otp.core.budget import day_of
from otp.errors import Unavailable
from otp.settings import LOOKUP_DEFAULTS, Settings
from otp.storage import keys as keyspace

AUTH_TOKEN = "callback-signing-token"
PUBLIC = "http://otp.test"
US = "+15017122661"


@pytest.fixture
async def budgeted(redis_url: str, clock: Clock, sender: RecordingSender) -> AsyncIterator[Service]:
    """In process: a global budget of five US sends (0.01 each), callbacks signed with AUTH_TOKEN."""
    settings = make_settings(
        redis_url,
        budget_daily=Decimal("0.05"),
        sms_prices="US=0.01,*=0.05",
        policy=policy(resend_cooldown=0, key_sends_per_minute=10**6, ip_sends_per_hour=10**6, **NO_PUMPING),
        twilio_auth_token=AUTH_TOKEN,
        public_url=PUBLIC,
    )
    async with running_service(settings, clock, sender) as svc:
        yield svc


async def spent(svc: Service, scope: str = "global") -> str:
    answer = await svc.http.get("/v1/budgets", headers=svc.auth(svc.admin_key))
    assert answer.status_code == 200, answer.text
    return str(next(row for row in answer.json()["scopes"] if row["scope"] == scope)["spent"])


async def started(svc: Service, to: str) -> str:
    answer = await svc.start(to)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def numbers(n: int, area: str = "415") -> list[str]:
    return [new_number(area) for _ in range(n)]


async def callback(svc: Service, vid: str, send: int, params: dict[str, str], *, sign: bool = True) -> httpx.Response:
    query = urlencode({"v": vid, "n": send})
    url = f"{PUBLIC}/webhooks/twilio/status?{query}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if sign:
        headers["X-Twilio-Signature"] = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return await svc.http.post(f"/webhooks/twilio/status?{query}", content=urlencode(params), headers=headers)


async def own_key_id(svc: Service) -> str:
    return next(k.key_id for k in await apikeys.list_keys(svc.app.state.store) if not k.admin)


# -- budgets ---------------------------------------------------------------------------------------


async def test_a_budget_audit_that_fails_mid_start_gives_the_reservation_back(budgeted: Service) -> None:
    """Redis fails writing the 80 % audit event after the reservation: the start must not leave
    a send's worth reserved that no SMS spends (the bill then refuses real users early)."""
    store = budgeted.app.state.store
    real_audit = store.audit_event

    async def failing(partition: int, now_ms: int, fields: dict[str, Any]) -> None:
        if fields.get("event") == "budget":
            raise Unavailable("audit node down")
        await real_audit(partition, now_ms, fields)

    for to in numbers(3):
        await started(budgeted, to)
    store.audit_event = failing
    fourth = await budgeted.start(new_number())  # reaches 80 %: its audit event fails
    store.audit_event = real_audit
    sent = len(budgeted.sender.messages) + (await budgeted.deliver() or 0)
    figure = await spent(budgeted)
    # Either the start went through (its SMS is the spend) or it was refused (nothing reserved).
    if fourth.status_code == 201:
        assert figure == "0.04"
    else:
        assert fourth.status_code == 503 and figure == "0.03", (fourth.status_code, figure, sent)


async def test_a_forged_callback_with_a_huge_price_moves_no_spend(budgeted: Service) -> None:
    vid = await started(budgeted, new_number())
    for params in ({"MessageStatus": "delivered", "Price": "-999999", "PriceUnit": "USD"},):
        unsigned = await callback(budgeted, vid, 1, params, sign=False)
        assert unsigned.status_code == 403
        wrong = await budgeted.http.post(
            f"/webhooks/twilio/status?v={vid}&n=1",
            content=urlencode(params),
            headers={"X-Twilio-Signature": "AAAA", "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert wrong.status_code == 403
    assert await spent(budgeted) == "0.01"


@pytest.mark.parametrize("price", ["NaN", "-Infinity", "sNaN", "1e999999999", "-1e999999999", "0x10", "", "--1"])
async def test_a_signed_callback_with_an_odd_price_is_no_500_and_moves_no_spend(budgeted: Service, price: str) -> None:
    vid = await started(budgeted, new_number())
    answer = await callback(budgeted, vid, 1, {"MessageStatus": "delivered", "Price": price, "PriceUnit": "USD"})
    assert answer.status_code == 200, answer.text
    assert await spent(budgeted) == "0.01"


async def test_a_signed_callback_with_the_largest_accepted_price_is_no_500(budgeted: Service) -> None:
    """Lua counts in doubles and hands numbers to Redis as text: a delta of 1e14 or more became
    ``1e+14``, which HINCRBY refuses, and the callback answered 500."""
    vid = await started(budgeted, new_number())
    answer = await callback(budgeted, vid, 1, {"MessageStatus": "delivered", "Price": "-999999999", "PriceUnit": "USD"})
    assert answer.status_code == 200, answer.text


async def test_a_replayed_priced_callback_reconciles_once(budgeted: Service) -> None:
    vid = await started(budgeted, new_number())
    params = {"MessageStatus": "delivered", "Price": "-0.03", "PriceUnit": "USD"}
    for _ in range(3):
        assert (await callback(budgeted, vid, 1, params)).status_code == 200
    assert await spent(budgeted) == "0.03"


async def test_a_price_in_another_currency_ends_the_price_polls(budgeted: Service) -> None:
    """A price in EUR can't reconcile a USD budget: the estimate stays, and the send must not be
    polled at Twilio for a price until retention ends (288 polls a send by default)."""
    vid = await started(budgeted, new_number())
    await budgeted.deliver()
    params = {"MessageStatus": "delivered", "Price": "-0.0070", "PriceUnit": "EUR"}
    assert (await callback(budgeted, vid, 1, params)).status_code == 200
    assert await spent(budgeted) == "0.01"
    store = budgeted.app.state.store
    partition = keyspace.partition_of_id(vid, store.partitions)
    budgeted.clock.advance(3600)
    polls = await store.claim_polls(partition=partition, now_ms=budgeted.clock.now_ms(), lease_ms=1000, limit=10)
    assert [p for p in polls if p[0] == vid] == []


async def test_a_send_twilio_never_prices_is_polled_for_its_price_an_hour_and_no_longer(budgeted: Service) -> None:
    """Delivered, but the Message resource never shows a price (the recording sender has none):
    the send was polled every OTP_DELIVERY_POLL_AFTER until retention ended, 288 fetches a day at
    Twilio for each such send. After PRICE_WAIT the estimate stands and the polls stop."""
    from otp.edge.worker import PRICE_WAIT

    vid = await started(budgeted, new_number())
    await budgeted.deliver()
    store = budgeted.app.state.store
    partition = keyspace.partition_of_id(vid, store.partitions)
    poll_after = default_worker_options().poll_after

    async def polled() -> bool:
        budgeted.clock.advance(poll_after)
        due = await store.claim_polls(partition=partition, now_ms=budgeted.clock.now_ms(), lease_ms=1, limit=10)
        budgeted.clock.advance(0.01)  # past the claim's lease: the delivery below takes it again
        await budgeted.deliver()
        return any(p[0] == vid for p in due)

    assert await polled()  # delivered, unpriced: polled again for the price
    rounds = 1
    while await polled():
        rounds += 1
        assert rounds * poll_after <= PRICE_WAIT + poll_after, "still polled past the price wait"
    assert rounds * poll_after >= PRICE_WAIT - poll_after
    assert await spent(budgeted) == "0.01"  # the estimate stands


async def test_budget_figures_and_routes_are_for_admins_only(budgeted: Service) -> None:
    assert (await budgeted.http.get("/v1/budgets", headers=budgeted.auth())).status_code == 403
    own = await own_key_id(budgeted)
    put = await budgeted.http.put(f"/v1/budgets/keys/{own}", json={"amount": "1000"}, headers=budgeted.auth())
    assert put.status_code == 403
    assert (await budgeted.http.delete(f"/v1/budgets/keys/{own}", headers=budgeted.auth())).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"amount": "NaN"},
        {"amount": "-1"},
        {"amount": "1e10"},
        {"amount": "Infinity"},
        {"amount": ""},
        {"amount": "1" * 5000},
        {"amount": 5},
        {"amount": None},
        {"amount": ["1"]},
        {},
        {"amount": "1", "extra": "x"},
        {"amount": "1e-999999999"},
        {"amount": "\u0661\u0662"},
    ],
)
async def test_budget_admin_routes_answer_odd_amounts_with_a_4xx_naming_the_field(
    budgeted: Service, body: dict[str, Any]
) -> None:
    own = await own_key_id(budgeted)
    answer = await budgeted.http.put(f"/v1/budgets/keys/{own}", json=body, headers=budgeted.auth(budgeted.admin_key))
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert answer.json()["error"]["field"], answer.text


@pytest.mark.parametrize("key_id", ["%00", "x" * 3000, "..%2F..%2Fadmin", "%E2%80%AE", "key:1"])
async def test_budget_admin_routes_answer_odd_key_ids_with_a_404(budgeted: Service, key_id: str) -> None:
    answer = await budgeted.http.put(
        f"/v1/budgets/keys/{key_id}", json={"amount": "1"}, headers=budgeted.auth(budgeted.admin_key)
    )
    assert answer.status_code in (404, 414), answer.text


async def test_a_budget_resets_at_local_midnight_across_the_dst_change(redis_url: str, sender: RecordingSender) -> None:
    """2025-03-30 in Europe/Berlin has 23 hours: Retry-After and resets_at name 22:00 UTC."""
    from datetime import UTC, datetime

    clock = Clock()
    clock.set(datetime(2025, 3, 30, 12, 0, tzinfo=UTC).timestamp())
    settings = make_settings(
        redis_url,
        budget_daily=Decimal("0.01"),
        budget_timezone="Europe/Berlin",
        sms_prices="US=0.01,*=0.05",
        policy=policy(resend_cooldown=0, **NO_PUMPING),
    )
    async with running_service(settings, clock, sender) as svc:
        await started(svc, new_number())
        refusal = await svc.start(new_number())
        assert refusal.status_code == 429, refusal.text
        assert refusal.json()["error"]["resets_at"] == "2025-03-30T22:00:00Z"
        assert int(refusal.headers["Retry-After"]) == 10 * 3600


# -- Lookup ----------------------------------------------------------------------------------------


@pytest.fixture
def lookups(redis_url: str) -> Iterator[V2]:
    limits = {**RELAXED, "key_sends_per_minute": 3}
    with serve(redis_url, limits=limits, lookup=replace(LOOKUP_DEFAULTS, mode="line_type")) as live:
        yield live


def test_starts_to_fresh_landlines_pay_for_no_more_lookups_than_the_key_limit_allows(lookups: V2) -> None:
    """Each start to a fresh landline is refused by Lookup's type; if that refusal gives back the
    key's rate-limit count, a tenant buys unlimited paid Lookups at the operator's cost."""
    landlines = numbers(12, "212")
    for number in landlines:
        lookups.stub.lookups.answer(number, "landline", carrier="Verizon")
    codes = []
    with httpx.Client(base_url=lookups.base, headers={"Authorization": f"Bearer {lookups.v1_key}"}) as http:
        for number in landlines:
            codes.append(http.post("/v1/verifications", json={"to": number}).status_code)
    assert len(lookups.stub.lookups.calls) <= 3, codes
    assert codes[:3] == [403] * 3 and set(codes[3:]) == {429}


def test_a_paid_lookup_counts_in_the_budget(redis_url: str) -> None:
    """OTP_LOOKUP_PRICE is spend: starts refused by Lookup's type still cost the operator."""
    with serve(
        redis_url,
        lookup=replace(LOOKUP_DEFAULTS, mode="line_type", price=Decimal("0.008")),
        sms_prices="US=0.01,*=0.05",
        budget_daily=Decimal("100"),
    ) as live:
        landline = new_number("212")
        live.stub.lookups.answer(landline, "landline")
        with httpx.Client(base_url=live.base, headers={"Authorization": f"Bearer {live.v1_key}"}) as http:
            assert http.post("/v1/verifications", json={"to": landline}).status_code == 403
        figures = asyncio.run(_global_spent(live.settings))
        assert figures == 8000


async def _global_spent(settings: Settings) -> int:
    """Today's global spend counter, in millionths (the served app runs on the real clock)."""
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        day = day_of(int(time.time() * 1000), settings.budget_timezone)
        return int(await client.hget(keyspace.budget_day("g", day.name), "s") or 0)
    finally:
        await client.aclose()


# -- delivery truth --------------------------------------------------------------------------------


def test_twilios_error_text_naming_the_number_leaves_no_full_number_in_redis_or_the_attempt(redis_url: str) -> None:
    """Twilio's 21612 says "The 'To' phone number: +1…, is not currently reachable …" (21211 names
    it too): stored as the attempt's error message, that is the full number in Redis and in every
    export of the attempt."""
    with serve(redis_url) as live:
        to = new_number("628")
        reachable = f"The 'To' phone number: {to}, is not currently reachable using the 'From' phone number"
        live.stub.script(to, "reject", code=21612, message=reachable)
        with httpx.Client(base_url=live.base, headers={"Authorization": f"Bearer {live.v1_key}"}) as http:
            vid = http.post("/v1/verifications", json={"to": to}).json()["id"]
            for _ in range(300):
                attempt = http.get(f"/v1/verifications/{vid}").json()["send_attempts"][-1]
                if attempt["delivery"]["status"] == "failed":
                    break
                time.sleep(0.02)
        assert attempt["delivery"]["error_code"] == 21612
        assert to[1:] not in str(attempt)
        # The verification record holds its number while it lives (it is what the SMS goes to);
        # nothing else may: the stored error text, the audit stream, the counters.
        values = [v for v in asyncio.run(_all_values(redis_url)) if not (isinstance(v, dict) and v.get("to") == to)]
        assert to[1:] not in str(values)
        record = [v for v in asyncio.run(_all_values(redis_url)) if isinstance(v, dict) and v.get("to") == to]
        assert to[1:] not in str({k: v for k, v in record[0].items() if k != "to"})


async def _all_values(url: str) -> list[Any]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    found: list[Any] = []
    try:
        async for key in client.scan_iter():
            kind = await client.type(key)
            if kind == "string":
                found.append(await client.get(key))
            elif kind == "hash":
                found.append(await client.hgetall(key))
            elif kind == "stream":
                found.append(await client.xrange(key))
            elif kind == "zset":
                found.append(await client.zrange(key, 0, -1))
            elif kind == "list":
                found.append(await client.lrange(key, 0, -1))
    finally:
        await client.aclose()
    return found
