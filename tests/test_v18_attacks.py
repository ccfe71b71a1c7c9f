"""Hostile-client review of two speed changes: a start's opt-out and webhook reads in the
admission's round trip (1c879a2), and the worker's pipelined claims of every partition (3977e72).
Each test is an attack; those that found a defect were written first and failed before the fix."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from cluster_fixtures import local_cluster, running_service_at
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
from test_faults import drain_once, durable_service

from otp.app import event_options
from otp.core import apikeys, optouts, webhooks
from otp.edge.webhook_delivery import EventDelivery
from otp.edge.worker import Worker
from otp.errors import Unavailable
from otp.settings import Settings
from otp.storage import keys as keyspace

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
        raw = await client.type(key)
        kind = raw.decode() if isinstance(raw, bytes) else raw
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
async def budgeted(
    redis_url: str, clock: Clock, sender: RecordingSender, budget: str = "0.05", **limits: Any
) -> AsyncIterator[Service]:
    settings = make_settings(
        redis_url, sms_prices=US_PRICES, budget_daily=Decimal(budget), policy=policy(**{**NO_PUMPING, **limits})
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


async def refusals(svc: Service) -> list[tuple[str, str]]:
    page = (await svc.http.get("/v1/audit", params={"event": "refused"}, headers=svc.auth(svc.admin_key))).json()
    return [(e["rule"], e["reason"]) for e in page["events"]]


@pytest.mark.parametrize(
    ("to", "setup", "without_opt_out"),
    [
        # The key's minute limit spent: the admission refuses too, in the same round trip.
        (OPTED_OUT, "key_limit", ("key_sends", "key_minute_limit")),
        # A premium-rate number: the permission step refuses before any admission.
        ("+19005550123", "", ("number_type", "number_type_not_allowed")),
    ],
)
async def test_an_opt_out_comes_first_and_is_the_only_refusal_audited(
    redis_url: str, clock: Clock, sender: RecordingSender, to: str, setup: str, without_opt_out: tuple[str, str]
) -> None:
    async with budgeted(redis_url, clock, sender, key_sends_per_minute=2) as svc:
        if setup == "key_limit":
            for n in range(2):
                assert (await svc.start(f"+1501712{n + 2:04d}")).status_code == 201
        # First as the client sees it without the opt-out, then with it.
        plain = await svc.start(to)
        assert (plain.status_code, plain.json()["error"]["code"]) in (
            (429, without_opt_out[1]),
            (403, without_opt_out[1]),
        )
        await opt_out(svc, to)
        before, audited = await counts(svc.redis), await refusals(svc)
        refused = await svc.start(to)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "recipient_opted_out")
        assert "Retry-After" not in refused.headers
        after = await refusals(svc)  # newest first
        assert after[: len(after) - len(audited)] == [("opt_out", "recipient_opted_out")]
        assert changed(before, await counts(svc.redis)) == {}


async def test_concurrent_starts_to_an_opted_out_number_and_to_a_number_at_its_hourly_cap_count_exactly(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """Thirty starts to an opted-out number and ten to a number capped at 3 an hour, all at once:
    the capped number gets exactly 3, the opted-out none, and the key's and the IP's logs hold the
    3 sends that happened and nothing of the refusals."""
    async with budgeted(
        redis_url, clock, sender, budget="100", number_sends_per_hour=3, resend_cooldown=0, ip_sends_per_hour=10**6
    ) as svc:
        await opt_out(svc)
        capped = "+15017122662"
        before = await counts(svc.redis)
        answers = await asyncio.gather(
            *(svc.start(OPTED_OUT, ip="203.0.113.9") for _ in range(30)),
            *(svc.start(capped, ip="203.0.113.9") for _ in range(10)),
        )
        opted, capped_answers = answers[:30], answers[30:]
        assert {(a.status_code, a.json()["error"]["code"]) for a in opted} == {(403, "recipient_opted_out")}
        assert sorted(a.status_code for a in capped_answers) == [201] * 3 + [429] * 7, [
            a.text[:60] for a in capped_answers
        ]
        logs = {k: v for k, (_, v) in changed(before, await counts(svc.redis)).items() if k.endswith(b"sends")}
        assert sorted(len(v) for v in logs.values()) == [3, 3], logs  # the key's and the IP's
        assert (await svc.deliver(), [m.to for m in svc.sender.messages]) == (3, [capped] * 3)


@pytest.mark.parametrize("limit", ["key", "ip"])
async def test_starts_to_an_opted_out_number_in_flight_do_not_refuse_the_keys_real_starts(
    redis_url: str, clock: Clock, sender: RecordingSender, limit: str
) -> None:
    """The key may send 5 a minute and the IP 5 an hour; 30 starts to an opted-out number go at once
    with 5 real ones.
    1c879a2 read the opt-out in the admission's round trip: the admission counted an opted-out start
    and gave it back after, so while in flight it held a place in the key's minute and the IP's
    hour and refused the real starts (DESIGN §2: no count-now-refund-later a concurrent request can
    observe). The opt-out is read before the admission again."""
    async with budgeted(redis_url, clock, sender, budget="100", key_sends_per_minute=5, ip_sends_per_hour=5) as svc:
        await opt_out(svc)
        ip = {"ip": "203.0.113.9"} if limit == "ip" else {}
        real = [svc.start(f"+1501712{n + 2:04d}", **ip) for n in range(5)]
        answers = await asyncio.gather(*(c for r in real for c in (*(svc.start(OPTED_OUT, **ip) for _ in range(6)), r)))
        assert {a.status_code for i, a in enumerate(answers) if i % 7 != 6} == {403}
        assert [a.status_code for a in answers[6::7]] == [201] * 5, [a.text for a in answers[6::7]]


@pytest.mark.parametrize("limit", ["key", "ip"])
async def test_starts_to_a_number_at_its_hourly_cap_in_flight_do_not_refuse_the_keys_real_starts(
    redis_url: str, clock: Clock, sender: RecordingSender, limit: str
) -> None:
    """The key may send 5 a minute and the IP 5 an hour; one number has had its one send of the
    hour, and 24 more starts to it go at once with 4 real ones. The number's cap refused them only in
    start.lua, after the admission had counted them in the key's minute and the IP's hour: while in
    flight they held the places the real starts needed. The number's limits are asked before the
    admission now (number_gate.lua), so the capped starts never reach it."""
    async with budgeted(
        redis_url, clock, sender, budget="100", key_sends_per_minute=5, ip_sends_per_hour=5, number_sends_per_hour=1
    ) as svc:
        ip = {"ip": "203.0.113.9"} if limit == "ip" else {}
        capped = "+15017122662"
        assert (await svc.start(capped, **ip)).status_code == 201
        real = [svc.start(f"+1501712{n + 3:04d}", **ip) for n in range(4)]
        answers = await asyncio.gather(*(c for r in real for c in (*(svc.start(capped, **ip) for _ in range(6)), r)))
        refusals = {(a.status_code, a.json()["error"]["code"]) for i, a in enumerate(answers) if i % 7 != 6}
        assert refusals == {(429, "number_hourly_limit")}, refusals
        assert [a.status_code for a in answers[6::7]] == [201] * 4, [a.text for a in answers[6::7]]


@pytest.mark.parametrize(
    "refused_by",
    [
        "opt_out",
        "number_cap",
    ],
)
async def test_a_tenants_refused_starts_in_flight_do_not_spend_another_tenants_share_of_the_global_budget(
    redis_url: str, clock: Clock, sender: RecordingSender, refused_by: str
) -> None:
    """The day's global budget (every tenant's) has 5 sends left; tenant A fires 20 starts that are
    all refused (to a number that replied STOP, or to one at its hourly cap) while tenant B starts
    3 codes. A's starts cost nothing, so B's 3 must go out. With the opt-out read in the admission's
    round trip (1c879a2), A's reservations, given back only after, spent B's share meanwhile: B got
    429 ``budget_exhausted`` (retry at midnight) for starts that fit."""
    async with budgeted(redis_url, clock, sender, budget="0.08", number_sends_per_hour=3, resend_cooldown=0) as svc:
        target = OPTED_OUT if refused_by == "opt_out" else "+15017120001"
        for _ in range(3):
            assert (await svc.start("+15017120001")).status_code == 201
        await opt_out(svc)
        _, other = await apikeys.create(svc.app.state.store, "tenant-b")
        b = [
            svc.http.post("/v1/verifications", json={"to": f"+1501712{n + 2:04d}"}, headers=svc.auth(other))
            for n in range(3)
        ]
        # A's starts go out in waves, one of B's after each: B's admission meets A's reservations.
        calls = [call for wave in b for call in (*(svc.start(target) for _ in range(6)), wave)]
        answers = await asyncio.gather(*calls)
        a_answers, b_answers = [x for i, x in enumerate(answers) if i % 7 != 6], answers[6::7]
        assert {a.status_code for a in a_answers} == {403 if refused_by == "opt_out" else 429}
        b_refusals = [a.json()["error"]["code"] for a in b_answers if a.status_code != 201]
        assert b_refusals == []


# -- 2. the worker's pipelined claims -------------------------------------------------------------------


def in_partition(partition: int, skip: int = 0) -> str:
    """A US number of ``partition`` (the ``skip``-th one found)."""
    found = (f"+1415555{n:04d}" for n in range(10_000))
    return [to for to in found if keyspace.partition_of_number(to, 16) == partition][skip]


def worker_of(svc: Service, **options: Any) -> Worker:
    state = svc.app.state
    return Worker(
        state.store, state.verifier.keyring, svc.sender, replace(default_worker_options(), **options), clock=svc.clock
    )


@pytest.mark.parametrize(
    "broken",
    [
        "poll_schedule",
        "outbox",
    ],
)
async def test_one_partitions_broken_key_holds_back_no_sms_of_the_other_partitions(
    redis_url: str, clock: Clock, sender: RecordingSender, broken: str
) -> None:
    """A key of the wrong type where partition 3's status polls (or its outbox) should be: its reply
    in the pipelined claim is an error of its own. The SMS due in partition 5 must still go out,
    also when nothing else is due anywhere: the claim raised the broken partition's poll error
    (nothing else found of its kind) after leasing partition 5's job, round after round (3977e72;
    ``claim_polls`` used to drop its errors)."""
    async with budgeted(redis_url, clock, sender, budget="100") as svc:
        await svc.redis.set(getattr(keyspace, broken)(3), "not a sorted set")
        to = in_partition(5)
        assert (await svc.start(to)).status_code == 201
        await worker_of(svc).run_once()
        assert [m.to for m in svc.sender.messages] == [to]


async def subscribe(svc: Service, name: str) -> str:
    """A /v1 key with a webhook for every event; its token."""
    state = svc.app.state
    key, token = await apikeys.create(state.store, name)
    now_ms = int(svc.clock() * 1000)
    hook = webhooks.Webhook(
        sid=webhooks.new_sid(),
        owner=key.key_id,
        key_id=key.key_id,
        friendly_name=name,
        event_types=("*",),
        status="enabled",
        version="v2",
        url="https://hooks.example.com/otp",
        created_ms=now_ms,
        updated_ms=now_ms,
        sealed_secret=webhooks.seal_secret(state.verifier.keyring, "s" * 32),
    )
    await webhooks.save(state.store, hook)
    return token


def events_of(svc: Service) -> EventDelivery:
    state = svc.app.state
    return EventDelivery(state.store, state.verifier.keyring, event_options(Settings()), clock=svc.clock)


async def test_one_partitions_broken_event_outbox_holds_back_no_webhook_event_of_the_others(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    async with budgeted(redis_url, clock, sender, budget="100") as svc:
        token = await subscribe(svc, "hooked")
        to = in_partition(5)
        start = await svc.http.post("/v1/verifications", json={"to": to}, headers=svc.auth(token))
        assert start.status_code == 201
        await svc.redis.set(keyspace.event_outbox(3), "not a sorted set")
        claimed = await events_of(svc).claim()
        assert {(e.verification_id, e.partition) for e in claimed} == {(start.json()["id"], 5)}
        assert await events_of(svc).claim() == []  # leased: not claimed twice


async def test_the_worker_rides_out_a_redis_restart_and_sends_each_queued_sms_once(tmp_path: Path) -> None:
    """Redis gone: a round is Unavailable (the shell's loop backs off and retries), never another
    error (the webhook claim too); back: every queued SMS goes out once."""
    async with durable_service(tmp_path) as (svc, server):
        numbers = [in_partition(p) for p in (0, 5, 9, 15)]
        for to in numbers:
            assert (await svc.start(to)).status_code == 201
        worker = worker_of(svc)
        server.kill()
        with pytest.raises(Unavailable):
            await worker.run_once()
        with pytest.raises(Unavailable):
            await events_of(svc).claim()
        server.start()
        while await drain_once(worker):
            pass
        assert sorted(m.to for m in svc.sender.messages) == sorted(numbers)
        assert await events_of(svc).claim() == []


async def ping_waits(url: str, rounds: int = 200) -> float:
    """The longest a PING from another client waited, over ``rounds`` PINGs back to back."""
    client = aioredis.Redis.from_url(url)
    longest = 0.0
    try:
        await client.ping()
        for _ in range(rounds):
            sent = time.perf_counter()
            await client.ping()
            longest = max(longest, time.perf_counter() - sent)
    finally:
        await client.aclose()
    return longest


async def test_a_big_backlog_is_claimed_a_batch_per_partition_in_short_redis_calls(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """45 SMS due in each of the 16 partitions: one round's pipelined claim takes the batch (20)
    of each, no more, and leaves the rest due for the next round. What Redis spent on it, per
    script call and in all, is printed (SLOWLOG; no timed assertion: see bench/)."""
    per_partition, batch = 45, default_worker_options().batch
    async with budgeted(
        redis_url, clock, sender, budget="1000", ip_sends_per_hour=10**6, number_sends_per_hour=10**3
    ) as svc:
        # The process's first claim meets Redis without the claim scripts (NOSCRIPT): loaded then.
        assert await worker_of(svc).claim() == ([], [])
        for p in range(16):
            for n in range(per_partition):
                assert (await svc.start(in_partition(p, n))).status_code == 201
        assert await svc.app.state.store.outbox_depth() == 16 * per_partition
        # Every command (the scripts' own calls too: Redis logs them), kept whole for the round.
        await svc.redis.config_set("slowlog-max-len", 100_000)
        await svc.redis.config_set("slowlog-log-slower-than", 0)
        await svc.redis.slowlog_reset()
        started = time.perf_counter()
        probe = asyncio.create_task(ping_waits(redis_url))
        jobs, polls = await worker_of(svc).claim()
        elapsed = time.perf_counter() - started
        longest_ping = await probe
        calls = [e for e in await svc.redis.slowlog_get(-1) if e["command"].startswith(b"EVALSHA")]
        await svc.redis.config_set("slowlog-log-slower-than", 10_000)
        await svc.redis.config_set("slowlog-max-len", 128)
        assert len(calls) == 2 * 16  # one claim and one poll claim a partition, each run once
        by_partition = Counter(job.partition for job in jobs)
        assert by_partition == {p: batch for p in range(16)} and polls == []
        assert await svc.app.state.store.outbox_depth() == 16 * per_partition  # leased, not yet sent
        # The next round takes the next batch of each, not the leased ones again.
        again, _ = await worker_of(svc).claim()
        assert not {j.job_id for j in again} & {j.job_id for j in jobs} and len(again) == 16 * batch
        slowest = max(e["duration"] for e in calls)
        print(
            f"claim of {len(jobs)} jobs: {len(calls)} script calls, slowest {slowest} µs, "
            f"Redis {sum(e['duration'] for e in calls)} µs in all, {elapsed * 1000:.1f} ms for the round trip; "
            f"another client's longest PING meanwhile {longest_ping * 1000:.1f} ms"
        )


@pytest.mark.cluster
async def test_a_cluster_master_gone_holds_back_no_sms_of_the_partitions_on_the_others(sender: RecordingSender) -> None:
    """One of three masters killed: the pipelined claim fails whole (a Cluster pipeline does), the
    worker claims partition by partition, and every SMS of the partitions on the two live masters
    goes out once; those of the dead master's partitions wait, queued."""
    clock = Clock()
    with local_cluster("otp-test-v18-") as cluster:
        settings = make_settings(cluster.url, policy=policy(**NO_PUMPING))
        async with running_service_at(settings, clock, sender) as svc:
            numbers = {p: in_partition(p) for p in range(16)}
            for to in numbers.values():
                assert (await svc.start(to)).status_code == 201
            where = {p: cluster.node_for_key(keyspace.outbox(p)) for p in range(16)}
            doomed = where[0]
            for _, node in cluster.each_node():
                # The live masters go on serving their slots while one is gone.
                node.config_set("cluster-require-full-coverage", "no")
            cluster.processes[cluster.ports.index(doomed)].kill()
            alive = {p: to for p, to in numbers.items() if where[p] != doomed}
            assert 0 < len(alive) < 16
            sent = await asyncio.wait_for(worker_of(svc).run_once(), timeout=60)
            assert sorted(m.to for m in svc.sender.messages) == sorted(alive.values()), sent
            # Nothing left on the live masters: the round finds nothing and the dead master's
            # partitions answer Unavailable, so it fails as an outage does (the worker backs off).
            with pytest.raises(Unavailable):
                await asyncio.wait_for(worker_of(svc).run_once(), timeout=60)
            assert len(svc.sender.messages) == len(alive)  # nothing sent twice


async def test_a_tenants_event_backlog_delays_another_tenants_event_by_whole_rounds_only(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """Tenant A has 30 events due in partition 5 before tenant B's one. The partition's claim takes
    the oldest 20 a round (every tenant's alike: the outbox is one queue a partition), so B's event
    waits one round, no more: a backlog delays, never starves. B's event in another partition
    goes in the first round."""
    async with budgeted(redis_url, clock, sender, budget="1000", ip_sends_per_hour=10**6) as svc:
        a, b = await subscribe(svc, "tenant-a"), await subscribe(svc, "tenant-b")
        for n in range(30):
            response = await svc.http.post("/v1/verifications", json={"to": in_partition(5, n)}, headers=svc.auth(a))
            assert response.status_code == 201
        clock.advance(1)
        b_ids = []
        for to in (in_partition(5, 40), in_partition(6)):
            response = await svc.http.post("/v1/verifications", json={"to": to}, headers=svc.auth(b))
            b_ids.append(response.json()["id"])
        rounds = [{e.verification_id for e in await events_of(svc).claim()} for _ in range(3)]
        assert b_ids[1] in rounds[0] and b_ids[0] not in rounds[0]
        assert b_ids[0] in rounds[1]


MG_A = "MG" + "a" * 32


async def account(svc: Service, name: str) -> tuple[str, str]:
    key, token = await apikeys.create(svc.app.state.store, name, twilio=True)
    return key.key_id, token.split("_")[2]


async def v2_post(svc: Service, auth: tuple[str, str], path: str, **form: str) -> httpx.Response:
    return await svc.http.post(f"/v2/{path}", data=form, auth=auth)


async def test_a_v2_start_to_a_number_opted_out_of_its_messaging_service_moves_no_bucket_and_spares_other_tenants(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    """Tenant A's service sends US codes through its own Messaging Service, where the number
    replied STOP; A's starts (with a RateLimits value whose Rate Limit has a bucket) are refused
    without moving the bucket or any other count, and tenant B, on the operator's sender, starts
    to the same number as to one never seen: same status, no Retry-After, no error."""
    settings = make_settings(redis_url, policy=policy(**NO_PUMPING), twilio_messaging_services=frozenset({MG_A}))
    async with running_service(settings, clock, sender) as svc:
        a, b = await account(svc, "tenant-a"), await account(svc, "tenant-b")
        a_sid = (await v2_post(svc, a, "Services", FriendlyName="A")).json()["sid"]
        b_sid = (await v2_post(svc, b, "Services", FriendlyName="B")).json()["sid"]
        config = await v2_post(
            svc, a, f"Services/{a_sid}/MessagingConfigurations", Country="US", MessagingServiceSid=MG_A
        )
        assert config.status_code == 201, config.text
        limit = (await v2_post(svc, a, f"Services/{a_sid}/RateLimits", UniqueName="user_id")).json()["sid"]
        bucket = await v2_post(svc, a, f"Services/{a_sid}/RateLimits/{limit}/Buckets", Max="2", Interval="60")
        assert bucket.status_code == 201, bucket.text
        await opt_out(svc, scope=MG_A)
        form = {"To": OPTED_OUT, "Channel": "sms", "RateLimits": '{"user_id": "u1"}'}
        before = await counts(svc.redis)
        refused = [await v2_post(svc, a, f"Services/{a_sid}/Verifications", **form) for _ in range(3)]
        assert {(r.status_code, r.json()["code"]) for r in refused} == {(403, 21610)}, refused[0].text
        assert changed(before, await counts(svc.redis)) == {}
        answers = [
            await v2_post(svc, b, f"Services/{b_sid}/Verifications", To=to, Channel="sms")
            for to in (OPTED_OUT, "+15017122662")
        ]
        assert [r.status_code for r in answers] == [201, 201]
        assert [r.json()["status"] for r in answers] == ["pending", "pending"]
