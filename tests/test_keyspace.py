"""Cluster-readiness: every key carries a hash tag, each script stays in one slot, every key expires."""

from __future__ import annotations

import asyncio
import re
import threading

import redis
from conftest import Service
from redis.crc import key_slot

from otp.storage import keys as keyspace

NUMBERS = ["+15017122661", "+14155552671", "+447911123456", "+33612345678", "+5511987654321"]


def test_keys_of_one_number_and_its_verifications_share_a_slot() -> None:
    for number in NUMBERS:
        partition = keyspace.partition_of_number(number, 16)
        vid = keyspace.new_verification_id(partition, 16)
        assert keyspace.partition_of_id(vid, 16) == partition
        keys = [
            keyspace.number_state(partition, number),
            keyspace.verification(partition, vid),
            keyspace.job(partition, f"{vid}:1"),
            keyspace.outbox(partition),
            keyspace.audit_stream(partition),
        ]
        assert len({key_slot(k.encode()) for k in keys}) == 1


def test_verification_ids_look_like_twilio_sids_and_spread_over_partitions() -> None:
    ids = [keyspace.new_verification_id(p, 16) for p in range(16) for _ in range(10)]
    assert all(re.fullmatch(r"VE[0-9a-f]{32}", i) for i in ids)
    assert {keyspace.partition_of_id(i, 16) for i in ids} == set(range(16))


async def test_every_script_touches_a_single_slot(service: Service, redis_url: str) -> None:
    """Watch the real commands with MONITOR while a full flow runs, and group them per script call."""
    commands: list[tuple[str, str]] = []
    ready = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        client = redis.Redis.from_url(redis_url)
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]  # unannotated in redis-py
            ready.set()
            for event in monitor.listen():
                commands.append((event.get("client_type", ""), event["command"]))
                if stop.is_set():
                    break

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    vid = (await service.start("+15017122661")).json()["id"]
    await service.start("+15017122661")
    code = await service.last_code()
    await service.check("000000" if code != "000000" else "111111", id=vid)
    await service.check(code, to="+15017122661")
    await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())
    vid2 = (await service.start("+14155552671")).json()["id"]
    await service.http.post(f"/v1/verifications/{vid2}/cancel", headers=service.auth())
    await asyncio.sleep(0.2)
    stop.set()
    await service.http.get("/healthz")
    await service.redis.ping()
    thread.join(5)

    # A script runs atomically: its commands (client type "lua") follow its EVALSHA contiguously.
    groups: list[list[str]] = []
    inside = False
    for client_type, command in commands:
        name = command.split(" ", 1)[0].upper()
        if name in {"EVALSHA", "EVAL"}:
            groups.append([])
            inside = True
        elif client_type == "lua" and inside:
            if name != "PUBLISH":  # a channel, not a key
                groups[-1].append(command)
        else:
            inside = False
    touched_groups = [g for g in groups if g]
    assert len(touched_groups) >= 8
    for group in touched_groups:
        slots = {key_slot(cmd.split(" ")[1].encode()) for cmd in group if len(cmd.split(" ")) > 1}
        assert len(slots) == 1, group


async def test_every_state_key_has_a_ttl(service: Service) -> None:
    vid = (await service.start("+15017122661")).json()["id"]
    await service.start("+15017122661")
    await service.deliver()
    await service.start("+14155552671")
    await service.check("123456", id=vid)
    keys = [k.decode() async for k in service.redis.scan_iter("otp:*")]
    assert keys
    for key in keys:
        if key.startswith("otp:{cfg}:key") or key.endswith((":outbox", ":outq", ":poll", ":audit")):
            continue  # API keys are configuration; outbox, new jobs and polls drain, audit streams are capped
        assert await service.redis.pttl(key) > 0, key


def test_a_float_clock_does_not_give_integer_callers_float_key_names() -> None:
    """The script keys are cached per minute: a float ``now_ms`` (an injected clock's
    ``time.time() * 1000``) must not make the minute's cached names end in ".0" for everyone."""
    now_ms = 1_700_000_000_000 + 7 * 60_000
    from_float = keyspace.partition_script_keys(2, float(now_ms))  # type: ignore[arg-type]
    from_int = keyspace.partition_script_keys(2, now_ms)
    assert from_float == from_int
    assert ".0" not in "".join(from_int.values())


def test_a_callers_changes_to_its_script_keys_reach_no_other_call() -> None:
    mine = keyspace.partition_script_keys(3, 1_700_000_000_000)
    mine.clear()
    assert keyspace.partition_script_keys(3, 1_700_000_000_000)
