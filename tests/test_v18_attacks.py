"""Hostile-client review of two speed changes: a start's opt-out and webhook reads in the
admission's round trip (1c879a2), and the worker's pipelined claims of every partition (3977e72).
Each test is an attack; those that found a defect were written first and failed before the fix."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import NO_PUMPING, Clock, RecordingSender, Service, make_settings, policy, running_service

from otp.core import optouts

US_PRICES = "US=0.01,*=0.05"  # a budget of 0.05 is worth five sends to the US
OPTED_OUT = "+15017122661"
# What a refusal is meant to leave: its audit event and the audit counters (lib.lua's audit()).
AUDIT_KEY = re.compile(rb":(agg[a-z]*:\d+|audit)$")
BUDGET_DAY = re.compile(rb"^otp:\{bud:[^}]*\}:d:\d{8}$")


async def counts(client: aioredis.Redis) -> dict[bytes, Any]:
    """Every key but the audit's, with its content: what a refused start must leave as it was."""
    found: dict[bytes, Any] = {}
    async for key in client.scan_iter(count=1000):
        if AUDIT_KEY.search(key):
            continue
        kind = (await client.type(key)).decode()
        if kind == "string":
            found[key] = await client.get(key)
        elif kind == "hash":
            found[key] = await client.hgetall(key)
        elif kind == "zset":
            found[key] = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            found[key] = await client.smembers(key)
        elif kind == "stream":
            found[key] = await client.xlen(key)
        else:
            found[key] = kind
    return found


def changed(before: dict[bytes, Any], after: dict[bytes, Any]) -> dict[bytes, tuple[Any, Any]]:
    """What differs, a day's budget by its spend only (``s``; a scope never spent on is 0): its
    level marks are the audit's latch (``test_..._80_percent_audit_event``)."""

    def spend(key: bytes, value: Any) -> Any:
        if BUDGET_DAY.search(key):
            return int((value or {}).get(b"s", 0))
        return value

    keys = set(before) | set(after)
    pairs = {k: (spend(k, before.get(k)), spend(k, after.get(k))) for k in keys}
    return {k: pair for k, pair in pairs.items() if pair[0] != pair[1]}


@asynccontextmanager
async def budgeted(redis_url: str, clock: Clock, sender: RecordingSender, **limits: Any) -> AsyncIterator[Service]:
    settings = make_settings(
        redis_url, sms_prices=US_PRICES, budget_daily=Decimal("0.05"), policy=policy(**{**NO_PUMPING, **limits})
    )
    async with running_service(settings, clock, sender) as svc:
        yield svc


async def opt_out(svc: Service, to: str = OPTED_OUT, scope: str = "") -> None:
    state = svc.app.state
    now_ms = int(svc.clock() * 1000)
    await optouts.record(state.store, state.verifier.keyring, to, now_ms=now_ms, ttl=3600, source="send", scope=scope)


async def budget_events(svc: Service) -> list[tuple[int, str]]:
    page = (await svc.http.get("/v1/audit", params={"event": "budget"}, headers=svc.auth(svc.admin_key))).json()
    return sorted((int(e["level"]), e["spent"]) for e in page["events"] if e.get("scope") == "global")


# -- 1. the opt-out read in the admission's round trip ------------------------------------------------


@pytest.mark.parametrize("sent_before", [0, 3, 4])
async def test_a_refused_start_to_an_opted_out_number_leaves_no_count_behind(
    redis_url: str, clock: Clock, sender: RecordingSender, sent_before: int
) -> None:
    """The IP and key logs, the pumping reservations and the day's budget as they were before the
    refused start: 0 sends before (its reservation crosses nothing), 3 (its reservation would reach
    80 % of the budget), 4 (100 %)."""
    async with budgeted(redis_url, clock, sender) as svc:
        for n in range(sent_before):
            assert (await svc.start(f"+1501712{n + 2:04d}", ip="203.0.113.9")).status_code == 201
        await opt_out(svc)
        before = await counts(svc.redis)
        refused = await svc.start(OPTED_OUT, ip="203.0.113.9")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "recipient_opted_out"
        assert changed(before, await counts(svc.redis)) == {}


async def test_a_refused_start_to_an_opted_out_number_does_not_swallow_the_budgets_80_percent_audit_event(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """Its reservation (released at once) crossed 80 % of the day's budget and marked the level
    (budget.lua writes each level once a day), but the opt-out refusal returned before the level's
    audit event was written: the real send that reached 80 % next found the level marked, and the
    operator's 80 % alert never came that day. The event is now written before the refusal, as for
    every other refusal of the admission."""
    async with budgeted(redis_url, clock, sender) as svc:
        for n in range(3):
            assert (await svc.start(f"+1501712{n + 2:04d}")).status_code == 201
        await opt_out(svc)
        assert (await svc.start(OPTED_OUT)).status_code == 403
        assert (await svc.start("+15017129999")).status_code == 201  # 0.04 of 0.05 spent: 80 %
        assert [level for level, _ in await budget_events(svc)] == [80]
