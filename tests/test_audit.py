"""The audit log read back: events of a lifecycle, filters, pages across partitions,
``GET /v1/audit`` and ``otp audit``, on real Redis with injected time."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from conftest import (
    NO_PUMPING,
    SECRET,
    Clock,
    RecordingSender,
    Service,
    make_settings,
    policy,
    running_service,
    stream_entries,
)
from redis.typing import EncodableT, FieldT

from otp.core import audit
from otp.core.keyring import Keyring
from otp.storage import keys as keyspace
from otp.storage.store import Store
from otp.web import audit as audit_api

TO = "+15017122661"
TO_MASKED = "+1*********61"
GB = "+447400123456"
GB_MASKED = "+44*********56"
T0_ISO = "2027-01-15T08:00:00"  # the test clock's start, 1_800_000_000 s
# Twenty numbers in different prefixes (the pumping rule counts per prefix) and partitions.
NUMBERS = [f"+1415{230 + i * 7:03d}2671" for i in range(20)]


@pytest.fixture
async def svc(service: Service) -> AsyncIterator[Service]:
    # The app doesn't mount the audit route yet: routes are matched from this list per request.
    service.app.router.routes.extend(audit_api.routes)
    yield service


async def get_audit(svc: Service, as_key: str | None = None, **params: Any) -> httpx.Response:
    return await svc.http.get("/v1/audit", params=params, headers=svc.auth(as_key or svc.admin_key))


async def events_of(svc: Service, **params: Any) -> list[dict[str, Any]]:
    response = await get_audit(svc, **params)
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def key_id(token: str) -> str:
    return token.split("_")[1]


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def next_millisecond() -> None:
    """Across partitions the order is Redis's clock, to the millisecond (ties go by partition):
    a test that expects one event after another in a different partition waits a tick."""
    await asyncio.sleep(0.002)


async def lifecycle(svc: Service) -> list[str]:
    """started, resent (the free first resend), refused (cooldown), resent, check_failed, approved:
    returns the codes sent."""
    assert (await svc.start(TO)).status_code == 201
    assert (await svc.start(TO)).status_code == 201  # a verification's first resend is free
    refused = await svc.start(TO)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "resend_too_soon"
    svc.clock.advance(10)  # the default cooldown, 10 s after the last send
    vid = (await svc.start(TO)).json()["id"]
    code = await svc.last_code(TO)
    assert (await svc.check(wrong(code), id=vid)).json()["approved"] is False
    assert (await svc.check(code, id=vid)).json()["approved"] is True
    return svc.sender.codes_for(TO)


# -- what is written ------------------------------------------------------------------------------


async def test_a_lifecycle_reads_back_newest_first_masked_and_without_codes(svc: Service) -> None:
    codes = await lifecycle(svc)
    response = await get_audit(svc)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    events = body["events"]
    assert [e["event"] for e in events] == ["approved", "check_failed", "resent", "refused", "resent", "started"]
    approved, failed, resent, refused, free_resend, started = events

    assert started["decision"] == "allowed"
    assert started["send"] == "1"
    assert started["time"] == f"{T0_ISO}.000Z"
    assert started["ts"] == 1_800_000_000_000
    assert isinstance(started["counts"], dict)  # decoded from its JSON
    assert refused["decision"] == "refused"
    assert (refused["rule"], refused["reason"], refused["retry_after"]) == ("resend_cooldown", "resend_too_soon", "10")
    assert free_resend["send"] == "2"
    assert free_resend["time"] == f"{T0_ISO}.000Z"
    assert resent["send"] == "3"
    assert resent["time"] == "2027-01-15T08:00:10.000Z"
    assert failed["attempt"] == "1"
    assert approved["vid"] == failed["vid"] == resent["vid"] == free_resend["vid"] == started["vid"]

    number_hash = Keyring((SECRET,)).number_hash(TO)
    for event in events:
        assert event["to"] == TO_MASKED
        assert event["nh"] == number_hash
        assert event["country"] == "US"
        assert event["key"] == key_id(svc.key)
        assert set(event) >= {"id", "partition", "time", "ts", "event"}
    assert TO not in response.text and TO[2:] not in response.text
    for code in codes:
        for event in events:
            assert all(code not in str(v) for k, v in event.items() if k not in {"id", "ts", "time", "vid", "nh"})
    assert body["summary"] == {
        "events": 6,
        "refused": 1,
        "by_event": {"approved": 1, "check_failed": 1, "refused": 1, "resent": 2, "started": 1},
        "refused_by_reason": {"resend_too_soon": 1},
    }
    assert body["next_cursor"] is None


# -- filters --------------------------------------------------------------------------------------


async def two_hours_of_events(svc: Service) -> None:
    """08:00 started(TO), resent(TO), refused(TO), started(GB, admin key); 10:00 expired(TO),
    started(TO). (The resend is the verification's first, which the cooldown lets through.)"""
    assert (await svc.start(TO)).status_code == 201
    assert (await svc.start(TO)).status_code == 201
    assert (await svc.start(TO)).status_code == 429
    await next_millisecond()
    gb = await svc.http.post("/v1/verifications", json={"to": GB}, headers=svc.auth(svc.admin_key))
    assert gb.status_code == 201
    svc.clock.advance(7200)
    assert (await svc.start(TO)).status_code == 201


async def test_filters_select_by_reason_rule_decision_number_country_key_and_event(svc: Service) -> None:
    await two_hours_of_events(svc)

    async def kinds(**params: Any) -> list[tuple[str, str]]:
        return [(e["event"], e["to"]) for e in await events_of(svc, **params)]

    assert len(await kinds()) == 6
    assert await kinds(reason="resend_too_soon") == [("refused", TO_MASKED)]
    assert await kinds(rule="resend_cooldown") == [("refused", TO_MASKED)]
    assert await kinds(decision="refused") == [("refused", TO_MASKED)]
    assert await kinds(decision="allowed") == [
        ("started", TO_MASKED),
        ("started", GB_MASKED),
        ("resent", TO_MASKED),
        ("started", TO_MASKED),
    ]
    assert await kinds(event="expired") == [("expired", TO_MASKED)]
    assert await kinds(country="gb") == [("started", GB_MASKED)]
    assert await kinds(decision="allowed", country="US") == [
        ("started", TO_MASKED),
        ("resent", TO_MASKED),
        ("started", TO_MASKED),
    ]
    assert await kinds(key=key_id(svc.admin_key)) == [("started", GB_MASKED)]
    assert len(await kinds(key=key_id(svc.key))) == 5
    assert await kinds(reason="number_hourly_limit") == []


async def test_number_filter_hashes_the_number_in_any_format(svc: Service) -> None:
    await two_hours_of_events(svc)
    by_e164 = await events_of(svc, number=TO)
    assert [e["event"] for e in by_e164] == ["started", "expired", "refused", "resent", "started"]
    assert await events_of(svc, number="(501) 712-2661") == by_e164
    assert [e["to"] for e in await events_of(svc, number=GB)] == [GB_MASKED]
    assert await events_of(svc, number="+14152302671") == []


async def test_since_and_until_use_the_injected_clock(svc: Service) -> None:
    await two_hours_of_events(svc)  # the clock now reads 10:00

    async def count(**params: Any) -> int:
        return len(await events_of(svc, **params))

    assert await count(since="2027-01-15T09:00:00Z") == 2
    assert await count(until="2027-01-15T09:00:00Z") == 4
    assert await count(since=T0_ISO, until="2027-01-15T08:00:00.001") == 4  # no zone: UTC
    assert await count(until=T0_ISO) == 0  # until is exclusive
    assert await count(since="30m") == 2
    assert await count(since="3h") == 6
    assert await count(since="2h") == 6  # since is inclusive
    assert await count(since="1h", until="10m") == 0


# -- pages ----------------------------------------------------------------------------------------


def order(event: dict[str, Any]) -> tuple[int, int, int]:
    ms, seq = audit.stream_key(event["id"])
    return ms, seq, event["partition"]


async def all_pages(svc: Service, **params: Any) -> tuple[list[dict[str, Any]], int]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        response = await get_audit(svc, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["events"]) <= int(params.get("limit", 100))
        found.extend(body["events"])
        cursor = body["next_cursor"]
        if cursor is None:
            return found, pages
        assert pages < 100


async def test_pages_across_partitions_return_every_event_once_newest_first(
    redis_url: str, clock: Clock, sender: RecordingSender
) -> None:
    # Twenty numbers nobody verifies: the pumping rules out of the way, this is about paging.
    settings = make_settings(redis_url, policy=policy(**NO_PUMPING))
    async with running_service(settings, clock, sender) as service:
        service.app.router.routes.extend(audit_api.routes)
        await _pages_across_partitions(service)


async def _pages_across_partitions(svc: Service) -> None:
    for number in NUMBERS:
        assert (await svc.start(number)).status_code == 201
        assert (await svc.start(number)).status_code == 201  # the free first resend
        assert (await svc.start(number)).status_code == 429
        assert (await svc.check("000000", to=number)).status_code == 200
        svc.clock.advance(0.01)

    found, pages = await all_pages(svc, limit=7)
    assert len(found) == 80
    assert pages == 12  # 11 full pages and one of 3: the last one says there is nothing more
    assert len({e["id"] + ":" + str(e["partition"]) for e in found}) == 80
    assert [order(e) for e in found] == sorted((order(e) for e in found), reverse=True)
    assert len({e["partition"] for e in found}) >= 5
    for partition in {e["partition"] for e in found}:  # within a stream, ids and ts rise together
        times = [e["ts"] for e in found if e["partition"] == partition]
        assert times == sorted(times, reverse=True)

    stored = set()
    for partition in range(svc.app.state.store.partitions):
        for raw_id, _ in await stream_entries(svc.redis, keyspace.audit_stream(partition)):
            stored.add((raw_id.decode(), partition))
    assert {(e["id"], e["partition"]) for e in found} == stored

    refused, _ = await all_pages(svc, limit=3, decision="refused")
    assert len(refused) == 20 == len({e["id"] for e in refused})
    assert {e["reason"] for e in refused} == {"resend_too_soon"}


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


async def read_all(
    client: aioredis.Redis, partitions: int, flt: audit.AuditFilter, **options: Any
) -> tuple[list[audit.AuditEvent], int]:
    found: list[audit.AuditEvent] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await audit.read(Store(client, partitions=partitions), flt, before=cursor, **options)
        pages += 1
        found.extend(page)
        if cursor is None:
            return found, pages
        assert pages < 1000


async def test_equal_ids_in_different_partitions_are_neither_repeated_nor_skipped(client: aioredis.Redis) -> None:
    # One Redis hands out the same id to two streams in the same millisecond: the partition breaks the tie.
    layout = {0: ["5-0", "5-1", "6-0"], 1: ["5-1"], 3: ["5-0", "5-1", "6-0"], 7: ["5-0", "6-0", "6-1"]}
    for partition, ids in layout.items():
        for stream_id in ids:
            await client.xadd(keyspace.audit_stream(partition), {"ts": 1000, "event": "started"}, id=stream_id)
    expected = sorted(
        ((*audit.stream_key(i), p) for p, ids in layout.items() for i in ids),
        reverse=True,
    )
    for limit in (1, 2, 3, 4, 100):
        found, _ = await read_all(client, 8, audit.AuditFilter(), limit=limit)
        assert [e.position for e in found] == expected, limit


@pytest.mark.parametrize("seed", range(6))
async def test_pages_match_a_plain_sort_whatever_the_batches_budgets_and_ties(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    # Tiny batches make every page merge several rounds; ids shared between streams make ties.
    monkeypatch.setattr(audit, "MIN_BATCH", 1)
    monkeypatch.setattr(audit, "MAX_BATCH", 4)
    monkeypatch.setattr(audit, "ROUND_ENTRIES", 6)
    rng = random.Random(seed)
    entries: list[tuple[tuple[int, int, int], str]] = []
    async with client.pipeline(transaction=False) as pipe:
        for partition in range(4):
            ms, seq = 1000, 0
            for _ in range(rng.randrange(5, 40)):
                step = rng.choice((0, 1, 1, 2))
                ms, seq = (ms, seq + 1) if step == 0 else (ms + step, rng.randrange(2))
                reason = rng.choice(("a", "b", "b", "b"))
                entries.append(((ms, seq, partition), reason))
                fields: dict[FieldT, EncodableT] = {"ts": ms, "event": "refused", "reason": reason}
                pipe.xadd(keyspace.audit_stream(partition), fields, id=f"{ms}-{seq}")
        await pipe.execute()
    assert len({pos[:2] for pos, _ in entries}) < len(entries)  # some ids are in several streams
    for wanted in (None, "a"):
        expected = sorted((pos for pos, r in entries if wanted in (None, r)), reverse=True)
        for limit, scan_limit in ((1, None), (3, 2), (5, 7), (50, 1)):
            found, _ = await read_all(client, 4, audit.AuditFilter(reason=wanted), limit=limit, scan_limit=scan_limit)
            assert [e.position for e in found] == expected, (wanted, limit, scan_limit)


async def test_a_rare_match_is_reached_through_short_pages_when_the_scan_budget_runs_out(
    client: aioredis.Redis,
) -> None:
    await client.xadd(keyspace.audit_stream(2), {"ts": 1, "event": "refused", "reason": "prefix_blocked"})
    async with client.pipeline(transaction=False) as pipe:
        for i in range(400):
            pipe.xadd(keyspace.audit_stream(i % 4), {"ts": 2 + i, "event": "started"})
        await pipe.execute()
    flt = audit.AuditFilter(reason="prefix_blocked")
    first, cursor = await audit.read(Store(client, partitions=4), flt, limit=10, scan_limit=50)
    assert first == [] and cursor is not None
    found, pages = await read_all(client, 4, flt, limit=10, scan_limit=50)
    assert [e.get("reason") for e in found] == ["prefix_blocked"]
    assert 3 <= pages <= 10  # each page examines about 50 entries of the 401
    assert len((await audit.read(Store(client, partitions=4), flt, limit=10, scan_limit=None))[0]) == 1


async def xrevrange_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_xrevrange", {}).get("calls", 0))


async def test_a_page_reads_only_what_it_needs_of_a_long_log(client: aioredis.Redis) -> None:
    async with client.pipeline(transaction=False) as pipe:
        # Written first, so their stream ids are older too: the order is the ids'.
        for partition in range(1, 16):
            pipe.xadd(keyspace.audit_stream(partition), {"ts": 1000, "event": "started"})
        for i in range(5000):
            pipe.xadd(keyspace.audit_stream(0), {"ts": 1_000_000 + i, "event": "started"})
        await pipe.execute()
    await client.config_resetstat()
    page, cursor = await audit.read(Store(client, partitions=16), audit.AuditFilter(), limit=10)
    assert [e.ts for e in page] == list(range(1_004_999, 1_004_989, -1))
    assert cursor is not None
    assert await xrevrange_calls(client) <= 16  # one pipelined batch per partition, no second round

    await client.config_resetstat()
    page, cursor = await audit.read(Store(client, partitions=16), audit.AuditFilter(since_ms=1_004_995), limit=100)
    assert len(page) == 5 and cursor is None  # stopped at the first entry older than since
    assert await xrevrange_calls(client) <= 16


async def test_read_new_follows_each_partition_from_its_own_position(client: aioredis.Redis) -> None:
    await client.xadd(keyspace.audit_stream(1), {"ts": 1, "event": "started"}, id="9-0")
    positions = await audit.latest_positions(Store(client, partitions=4))
    assert positions == {0: "0-0", 1: "9-0", 2: "0-0", 3: "0-0"}
    # A lower id in another stream than the newest seen is still new there.
    await client.xadd(keyspace.audit_stream(0), {"ts": 2, "event": "refused", "reason": "x"}, id="5-0")
    await client.xadd(keyspace.audit_stream(1), {"ts": 3, "event": "started"}, id="10-0")
    new, positions = await audit.read_new(Store(client, partitions=4), positions, audit.AuditFilter())
    assert [e.position for e in new] == [(5, 0, 0), (10, 0, 1)]
    assert positions == {0: "5-0", 1: "10-0", 2: "0-0", 3: "0-0"}
    assert (await audit.read_new(Store(client, partitions=4), positions, audit.AuditFilter()))[0] == []


# -- the endpoint's guards ------------------------------------------------------------------------


async def test_only_admin_keys_read_the_audit_log(svc: Service) -> None:
    response = await get_audit(svc, as_key=svc.key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert response.json()["error"]["field"] == "Authorization"
    assert (await svc.http.get("/v1/audit")).status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2027-13-01"}, "until"),
        ({"since": "1h", "until": "2h"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": audit.encode_cursor((5, 0, 17))}, "cursor"),  # a partition this deployment lacks
        ({"decision": "maybe"}, "decision"),
        ({"event": "sent"}, "event"),
        ({"number": "12"}, "number"),
        ({"country": "USA"}, "country"),
        ({"ip": "300.1.1.1"}, "ip"),
        ({"reason": "Resend Too Soon"}, "reason"),
        ({"reasons": "resend_too_soon"}, "reasons"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(svc: Service, params: dict[str, str], field: str) -> None:
    response = await get_audit(svc, **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["field"] == field


def test_parse_since_takes_durations_and_iso_times() -> None:
    now = 1_800_000_000.0
    assert audit.parse_since("1h", now) == 1_799_996_400_000
    assert audit.parse_since("30m", now) == 1_799_998_200_000
    assert audit.parse_since("2d", now) == 1_799_827_200_000
    assert audit.parse_since("2027-01-15T08:00:00Z", now) == 1_800_000_000_000
    assert audit.parse_since("2027-01-15T09:00:00+01:00", now) == 1_800_000_000_000
    assert audit.parse_since("2027-01-15", now) == 1_799_971_200_000
    with pytest.raises(ValueError, match="neither a duration"):
        audit.parse_since("last tuesday", now)


def test_formats() -> None:
    events = [
        audit.AuditEvent("5-0", 0, 1_800_000_000_000, {"ts": "1800000000000", "event": "started", "to": TO_MASKED}),
        audit.AuditEvent(
            "6-0",
            1,
            1_800_000_000_250,
            {"ts": "1800000000250", "event": "refused", "decision": "refused", "reason": "a, b", "counts": "{bad"},
        ),
    ]
    table = audit.format_table(events).splitlines()
    assert table[0].split() == ["time", "event", "to", "country", "key", "detail"]
    assert table[2].startswith("2027-01-15T08:00:00.250Z  refused")
    wide = audit.format_table(events, wide=True).splitlines()
    assert wide[0].split() == [
        "time",
        "event",
        "decision",
        "rule",
        "reason",
        "to",
        "country",
        "ip",
        "key",
        "vid",
        "detail",
    ]
    assert wide[2].startswith("2027-01-15T08:00:00.250Z  refused")
    assert table[-1] == "2 events, 1 refused: a, b ×1"
    rows = list(csv.reader(io.StringIO(audit.format_csv(events))))
    assert rows[0] == list(audit.CSV_COLUMNS)
    assert rows[2][audit.CSV_COLUMNS.index("reason")] == "a, b"
    lines = [json.loads(line) for line in audit.format_jsonl(events).splitlines()]
    assert lines[1]["counts"] == "{bad"  # kept as written when it isn't JSON
    assert audit.format_summary(audit.summary([])) == "0 events, 0 refused"


# -- otp audit ------------------------------------------------------------------------------------

CLI = "import sys; from otp.audit_cli import main; sys.exit(main(sys.argv[1:]))"


def cli_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTP_")}
    env.update(OTP_REDIS_URL=redis_url, OTP_SECRET_KEY=SECRET, OTP_DATA_DIR=str(tmp_path))
    return env


def run_cli(redis_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=cli_env(redis_url, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )


# The test clock runs in 2027: absolute times keep these runs independent of the real date.
SINCE = ("--since", "2027-01-15T07:00:00Z")


async def test_cli_prints_jsonl_table_and_csv(svc: Service, redis_url: str, tmp_path: Path) -> None:
    await lifecycle(svc)
    await next_millisecond()
    await svc.http.post("/v1/verifications", json={"to": GB}, headers=svc.auth(svc.admin_key))

    jsonl = run_cli(redis_url, tmp_path, *SINCE, "--format", "jsonl")
    assert jsonl.returncode == 0, jsonl.stderr
    events = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [e["event"] for e in events] == [
        "started",
        "resent",
        "refused",
        "resent",
        "check_failed",
        "approved",
        "started",
    ]
    assert [e["to"] for e in events] == [TO_MASKED] * 6 + [GB_MASKED]
    assert TO not in jsonl.stdout

    table = run_cli(redis_url, tmp_path, *SINCE, "--number", "(501) 712-2661")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["time", "event", "to"]
    assert len(lines) == 8
    assert lines[-1] == "6 events, 1 refused: resend_too_soon ×1"
    assert GB_MASKED not in table.stdout

    spreadsheet = run_cli(redis_url, tmp_path, *SINCE, "--format", "csv", "--decision", "allowed", "--limit", "2")
    assert spreadsheet.returncode == 0, spreadsheet.stderr
    rows = list(csv.DictReader(io.StringIO(spreadsheet.stdout)))
    assert spreadsheet.stdout.splitlines()[0] == ",".join(audit.CSV_COLUMNS)
    assert [(r["event"], r["to"]) for r in rows] == [("resent", TO_MASKED), ("started", GB_MASKED)]

    # From 08:00:05: the 08:00:10 resend, the check_failed, the approved and GB's started.
    later = run_cli(redis_url, tmp_path, "--since", "2027-01-15T08:00:05Z", "--until", "2027-01-15T09:00:00Z")
    assert later.stdout.splitlines()[-1] == "4 events, 0 refused"


async def test_cli_rejects_a_bad_since_naming_the_option(redis_url: str, tmp_path: Path) -> None:
    result = run_cli(redis_url, tmp_path, "--since", "yesterday")
    assert result.returncode == 2
    assert "--since" in result.stderr
    assert result.stdout == ""


class Lines:
    """A subprocess's stdout, line by line, with a timeout."""

    def __init__(self, stream: Any) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))

    def next(self, timeout: float = 15.0) -> str:
        return self.queue.get(timeout=timeout)


async def test_cli_follow_prints_new_events_until_ctrl_c(svc: Service, redis_url: str, tmp_path: Path) -> None:
    assert (await svc.start(TO)).status_code == 201
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, *SINCE, "--follow"],
        env=cli_env(redis_url, tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(process.stdout)
        assert lines.next().startswith("time ")
        assert TO_MASKED in lines.next()
        assert (await svc.start(TO)).status_code == 201  # the free first resend
        resent = lines.next()
        assert "resent" in resent and TO_MASKED in resent
        assert (await svc.start(TO)).status_code == 429
        refused = lines.next()
        assert "refused" in refused and "resend_too_soon" in refused
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        assert lines.next() == "3 events, 1 refused: resend_too_soon ×1"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_table_shows_each_deliverys_status_and_error_in_its_detail_column() -> None:
    def delivery(status: str, code: str = "") -> audit.AuditEvent:
        fields = {"ts": "1800000000000", "event": "delivery", "vid": "VE1", "status": status, "error_code": code}
        return audit.AuditEvent("7-0", 0, 1_800_000_000_000, fields)

    events = [delivery("sent"), delivery("undelivered", "30034"), delivery("delivered")]
    rows = audit.table_rows(events, wide=True)
    assert [row.split("VE1", 1)[1].strip() for row in rows] == [
        "sent",
        "undelivered 30034 US A2P 10DLC - Message from an Unregistered Number",
        "delivered",
    ]
    # The default table cuts it to its detail column, within 120 columns.
    narrow = audit.table_rows(events)
    assert [row.split("  ")[-1].strip() for row in narrow] == [
        "sent",
        "undelivered 30034 US A2P 10DLC -…",
        "delivered",
    ]
    assert max(len(row) for row in narrow) <= audit.TABLE_WIDTH
    started = audit.AuditEvent("8-0", 0, 1_800_000_000_000, {"ts": "1800000000000", "event": "started", "vid": "VE1"})
    assert audit.table_rows([started], wide=True)[0].split()[-2:] == ["VE1", "-"]
