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
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis.asyncio as aioredis
from conftest import Clock
from test_dashboard import csrf_of
from test_twilio_compat import RELAXED, V2, new_number, refused, retry_after, serve, service

from otp.core import apikeys
from otp.errors import ConfigError
from otp.settings import Settings
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
    """Until the served app (another thread) has done ``what``: polling for an outcome, as V2.code does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


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


def _start(v2: V2, token: str, to: str) -> httpx.Response:
    return httpx.post(f"{v2.base}/v1/verifications", json={"to": to}, headers={"Authorization": f"Bearer {token}"})


def _set_budget(v2: V2, key_id: str, amount: str) -> httpx.Response:
    _, admin = _key(v2.settings.redis_url or "", "budget-admin", admin=True)
    return httpx.put(
        f"{v2.base}/v1/budgets/keys/{key_id}", json={"amount": amount}, headers={"Authorization": f"Bearer {admin}"}
    )


@pytest.fixture
def priced(redis_url: str, clock: Clock) -> Iterator[V2]:
    with serve(redis_url, limits=UNLIMITED, clock=clock, sms_prices=PRICES, delivery_poll_after=5.0) as live:
        yield live


def test_a_higher_real_price_reconciled_from_twilio_refuses_earlier(priced: V2, clock: Clock) -> None:
    key_id, token = _key(priced.settings.redis_url or "", "pricey")
    assert _set_budget(priced, key_id, "0.05").status_code == 200
    first = new_number()
    priced.stub.price(first, 0.02)  # billed twice the table's 0.01
    vid = _start(priced, token, first).json()["id"]
    _wait(lambda: any(m.to == first and m.price for m in priced.stub.messages), "the stand-in prices the SMS")
    assert _budgets(priced)[f"key:{key_id}"]["spent"] == "0.01"  # the estimate, until Twilio's price is read
    # Twilio's callbacks carry no price: the worker's poll of the Message resource brings it.
    clock.advance(6)
    _wait(lambda: _budgets(priced)[f"key:{key_id}"]["spent"] == "0.02", "the real price reconciled", timeout=15)
    answer = httpx.get(f"{priced.base}/v1/verifications/{vid}", headers={"Authorization": f"Bearer {token}"})
    assert answer.json()["send_attempts"][0]["delivery"]["status"] == "delivered"

    # 0.02 real + 3 × 0.01 estimated = 0.05: three more, where the estimate alone would allow four.
    answers = [_start(priced, token, new_number()) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    error = answers[-1].json()["error"]
    assert (error["code"], error["scope"], error["field"]) == ("budget_exhausted", f"key:{key_id}", "Authorization")


def test_a_key_budget_binds_that_key_only_and_is_set_by_the_admin_api_and_the_cli(priced: V2) -> None:
    url = priced.settings.redis_url or ""
    (capped, capped_token), (other, other_token) = _key(url, "capped"), _key(url, "other")
    set_answer = _set_budget(priced, capped, "0.02")
    assert set_answer.json() == {
        "scope": f"key:{capped}",
        "spent": "0",
        "budget": "0.02",
        "left": "0.02",
        "currency": "USD",
    }
    assert [_start(priced, capped_token, new_number()).status_code for _ in range(3)] == [201, 201, 429]
    # Another tenant's spend is its own: the capped key's budget never refuses it.
    assert [_start(priced, other_token, new_number()).status_code for _ in range(3)] == [201, 201, 201]

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    env.update(OTP_REDIS_URL=url, OTP_SECRET_KEY=priced.settings.secret_keys[0], OTP_SMS_PRICES=PRICES)
    cli = subprocess.run(
        [sys.executable, "-m", "otp", "keys", "budget", other, "0.04", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown = json.loads(cli.stdout)
    # (The command's day is the wall clock's; the service runs on the injected one.)
    assert (shown["scope"], shown["budget"], shown["currency"]) == (f"key:{other}", "0.04", "USD")
    assert [_start(priced, other_token, new_number()).status_code for _ in range(2)] == [201, 429]
    # Both changes are admin actions in the audit log: the API's by its key, the command's by "cli".
    _, reader = _key(url, "audit-reader", admin=True)
    events = httpx.get(
        f"{priced.base}/v1/audit",
        params={"event": "admin", "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {reader}"},
    ).json()["events"]
    assert [(e["action"], e["entry"], e["key"]) for e in events if e["entry"].startswith(other)] == [
        ("budget_set", f"{other}=0.04", "cli")
    ]

    # A wrong amount is a 400 naming the field; an unknown key a 404.
    assert _set_budget(priced, capped, "-1").json()["error"]["field"] == "amount"
    assert _set_budget(priced, "k_nope", "1").status_code == 404


def test_the_budget_resets_at_midnight_in_its_time_zone(redis_url: str, clock: Clock) -> None:
    zone = ZoneInfo("America/New_York")
    clock.set(datetime(2027, 3, 9, 23, 59, 50, tzinfo=zone).timestamp())
    with serve(
        redis_url,
        limits=UNLIMITED,
        clock=clock,
        sms_prices=PRICES,
        budget_daily=Decimal("0.01"),
        budget_timezone="America/New_York",
    ) as v2:
        _, token = _key(redis_url, "night-owl")
        assert _start(v2, token, new_number()).status_code == 201
        late = _start(v2, token, new_number())
        assert late.status_code == 429
        assert late.headers["Retry-After"] == "10"
        assert late.json()["error"]["resets_at"] == "2027-03-10T05:00:00Z"  # midnight in New York
        clock.advance(10)
        assert _start(v2, token, new_number()).status_code == 201


def test_audit_events_at_80_and_100_percent_come_once_each(priced: V2) -> None:
    key_id, token = _key(priced.settings.redis_url or "", "audited")
    _set_budget(priced, key_id, "0.05")
    assert [_start(priced, token, new_number()).status_code for _ in range(7)] == [201] * 5 + [429] * 2
    _, admin = _key(priced.settings.redis_url or "", "auditor", admin=True)
    page = httpx.get(
        f"{priced.base}/v1/audit", params={"event": "budget"}, headers={"Authorization": f"Bearer {admin}"}
    ).json()
    mine = [e for e in page["events"] if e.get("scope") == f"key:{key_id}"]
    assert sorted((int(e["level"]), e["spent"], e["budget"]) for e in mine) == [
        (80, "0.04", "0.05"),
        (100, "0.05", "0.05"),
    ]


def test_a_start_another_rule_refuses_reserves_nothing_and_is_counted_as_blocked_spend(priced: V2) -> None:
    key_id, token = _key(priced.settings.redis_url or "", "refused")
    number = new_number()
    sends = [_start(priced, token, number) for _ in range(6)]  # the verification's 5 sends, then its cap
    assert [a.status_code for a in sends] == [201] * 5 + [429]
    assert sends[-1].json()["error"]["code"] == "max_sends_reached"
    premium = _start(priced, token, "+19005550123")
    assert premium.json()["error"]["code"] == "number_type_not_allowed"
    assert _budgets(priced)[f"key:{key_id}"]["spent"] == "0.05"  # the five sends, nothing for the refusals

    # The fraud page: today's spend per country and key, and what each rule's refusals saved.
    with httpx.Client(base_url=priced.base) as http:
        _, admin = _key(priced.settings.redis_url or "", "dashboard", admin=True)
        form = http.get("/admin/signin")
        signed = http.post("/admin/signin", data={"csrf": csrf_of(form.text), "key": admin})
        assert signed.status_code == 303
        html = http.get("/admin/fraud").text
    assert 'id="spend-h"' in html and "Spend today by country" in html
    spend_key = html[html.index('id="spend-key"') :]
    assert key_id in spend_key[: spend_key.index("</table>")]
    blocked = html[html.index('id="blocked-spend"') :]
    blocked = blocked[: blocked.index("</table>")]
    assert "verification_sends" in blocked and "number_type" in blocked and "0.01 USD" in blocked


def test_bad_budget_settings_are_refused_at_startup_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {"OTP_BUDGET_DAILY": "lots", "OTP_BUDGET_COUNTRY": "US=50,GBR=2", "OTP_BUDGET_TIMEZONE": "Mars/Olympus"}
        )
    text = str(caught.value)
    assert "OTP_BUDGET_DAILY: 'lots' is not a number" in text
    assert "OTP_BUDGET_COUNTRY: 'GBR' is not a two-letter country code" in text
    for value, message in (
        ("US=50,GB", "OTP_BUDGET_COUNTRY: 'GB' is not COUNTRY=AMOUNT (e.g. US=50,GB=20,*=5)"),
        ("UK=20,*=5", "OTP_BUDGET_COUNTRY: 'UK' is not an ISO 3166 country code (the United Kingdom is GB)"),
    ):
        with pytest.raises(ConfigError) as typo:
            Settings.from_env({"OTP_BUDGET_COUNTRY": value})
        assert message in str(typo.value)
    assert "OTP_BUDGET_TIMEZONE='Mars/Olympus' is not an IANA time zone" in text
    good = Settings.from_env({"OTP_BUDGET_DAILY": "200", "OTP_BUDGET_COUNTRY": "us=50, *=5"})
    assert (good.budget_daily, dict(good.budget_country)) == (Decimal(200), {"US": Decimal(50), "*": Decimal(5)})
