"""Daily spend budgets (otp.core.budget): a bill bounded under concurrency, reconciled with the
price Twilio fills in, reset at midnight in the budget's zone, per key through the admin API and
``otp keys budget``, audited at 80 % and 100 %, and on the fraud page. Through the real app, the
worker, the official twilio SDK and the stand-in; time is the injected clock."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis.asyncio as aioredis
from conftest import Clock
from test_twilio_compat import RELAXED, V2, new_number, refused, retry_after, serve, service

from otp.core import apikeys
from otp.storage.store import Store

# One segment to the US costs 0.01 here: a budget of 0.10 is worth exactly ten sends.
PRICES = "US=0.01,GB=0.04,*=0.05"
UNLIMITED = {**RELAXED, "ip_sends_per_hour": 10**6, "key_sends_per_minute": 10**6}


def _key(redis_url: str, name: str, *, admin: bool = False) -> tuple[str, str]:
    """A new /v1 key: (its id, its bearer token)."""

    async def create() -> tuple[str, str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            key, token = await apikeys.create(Store(client, partitions=16), name, admin=admin)
            return key.key_id, token
        finally:
            await client.aclose()

    return asyncio.run(create())


def _wait(predicate: Any, what: str, timeout: float = 10.0) -> None:
    async def poll() -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.02)

    asyncio.run(poll())


def _budgets(v2: V2) -> dict[str, Any]:
    _, token = _key(v2.settings.redis_url or "", "budget-reader", admin=True)
    answer = httpx.get(f"{v2.base}/v1/budgets", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return {row["scope"]: row for row in answer.json()["scopes"]}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def budgeted(redis_url: str, clock: Clock) -> Iterator[V2]:
    with serve(redis_url, limits=UNLIMITED, clock=clock, sms_prices=PRICES, budget_daily=Decimal("0.10")) as live:
        yield live


def test_a_hundred_parallel_starts_against_a_budget_of_ten_sends_send_exactly_ten(budgeted: V2, clock: Clock) -> None:
    numbers = [new_number() for _ in range(100)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=budgeted.base, timeout=30) as http:
            auth = {"Authorization": f"Bearer {budgeted.v1_key}"}
            return await asyncio.gather(
                *(http.post("/v1/verifications", json={"to": n}, headers=auth) for n in numbers)
            )

    answers = asyncio.run(burst())
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 10 + [429] * 90
    refusal = next(a for a in answers if a.status_code == 429)
    error = refusal.json()["error"]
    assert (error["code"], error["rule"], error["scope"], error["field"]) == (
        "budget_exhausted",
        "budget",
        "global",
        "to",
    )
    assert error["resets_at"].endswith("T00:00:00Z") and "daily SMS budget is spent" in error["message"]
    midnight = datetime.fromisoformat(error["resets_at"]).timestamp()
    assert int(refusal.headers["Retry-After"]) == pytest.approx(midnight - clock.now(), abs=1)
    _wait(lambda: len(budgeted.stub.messages) >= 10, "ten SMS at the stand-in")
    assert len(budgeted.stub.messages) == 10

    # /v2: Twilio's 429 with its code for too many requests, and the reason in the message.
    client = budgeted.client()
    error_v2 = refused(lambda: service(client).verifications.create(to=new_number(), channel="sms"))
    assert (error_v2.status, error_v2.code) == (429, 20429)
    assert "daily SMS budget is spent" in error_v2.msg and "resets at midnight UTC" in error_v2.msg
    assert retry_after(client) > 0
    assert _budgets(budgeted)["global"] == {
        "scope": "global",
        "spent": "0.1",
        "budget": "0.1",
        "left": "0",
        "currency": "USD",
    }
