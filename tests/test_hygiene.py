"""No code in logs or in Redis, and no timing difference that tells what exists."""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
from conftest import (
    NO_PUMPING,
    SECRET,
    Clock,
    RecordingSender,
    hash_fields,
    make_settings,
    policy,
    running_service,
    stream_entries,
)

from otp.core.keyring import Keyring
from otp.logs import fields_of

OPEN = policy(
    resend_cooldown=0,
    **NO_PUMPING,
    number_sends_per_hour=10_000,
    number_sends_per_day=10_000,
)


async def test_no_code_in_logs_and_no_code_or_pepper_in_redis(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # Ten digits: a stray match inside a hash or an encoding is then practically impossible.
    settings = make_settings(redis_url, code_length=10, policy=OPEN)
    async with running_service(settings, Clock(), RecordingSender()) as service:
        to = "+15017122661"
        vid = (await service.start(to, ip="203.0.113.7")).json()["id"]
        await service.start(to)  # a resend: a second code
        await service.deliver()
        codes = service.sender.codes_for(to)
        await service.check("0000000000", id=vid)
        values: list[bytes] = []
        async for key in service.redis.scan_iter("*"):
            # cast: the tests' client never decodes, so every reply is bytes.
            kind = cast(bytes, await service.redis.type(key)).decode()
            if kind == "string":
                values.append(cast(bytes | None, await service.redis.get(key)) or b"")
            elif kind == "hash":
                values += [k + b"=" + v for k, v in (await hash_fields(service.redis, key)).items()]
            elif kind == "zset":
                scored = cast(list[tuple[bytes, float]], await service.redis.zrange(key, 0, -1, withscores=True))
                values += [m for m, _ in scored]
            elif kind == "stream":
                for _, fields in await stream_entries(service.redis, key):
                    values += [k + b"=" + v for k, v in fields.items()]
            elif kind == "set":
                values += list(cast(set[bytes], await service.redis.smembers(key)))
        assert (await service.check(codes[-1], id=vid)).json()["approved"]
        blob = b"\n".join(values)
        pepper = Keyring((SECRET,)).current("code-pepper")
        for secret in (*codes, SECRET):
            assert secret.encode() not in blob
        assert pepper not in blob and pepper.hex().encode() not in blob
        # The messages and the fields beside them (the audit line's, the access lines').
        logged = "\n".join(r.getMessage() + json.dumps(fields_of(r), default=str) for r in caplog.records)
        for code in codes:
            assert code not in logged
        assert "+15017122661" not in logged


async def medians_ms(
    first: Callable[[int], Awaitable[object]], second: Callable[[int], Awaitable[object]], runs: int
) -> tuple[float, float]:
    """The two calls' median times, measured in turns (first, second, first, …), so that a spell of
    load on a shared machine slows both alike instead of one batch."""
    timings: tuple[list[float], list[float]] = ([], [])
    for i in range(runs):
        for call, found in ((first, timings[0]), (second, timings[1])):
            started = time.perf_counter()
            await call(i)
            found.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings[0]), statistics.median(timings[1])


async def test_timing_does_not_tell_known_ids_or_pending_numbers_apart(redis_url: str) -> None:
    """Method: medians over interleaved runs with the shipped argon2 parameters, whose cost dominates
    every request; a usable difference would be a gap of the order of one argon2 run (~20 ms)."""
    settings = make_settings(redis_url, argon2_time_cost=2, argon2_memory_kib=19456, policy=OPEN, max_sends=1000)
    async with running_service(settings, Clock(), RecordingSender()) as service:
        runs = 60
        known = [(await service.start(f"+1202555{n:04d}")).json()["id"] for n in range(runs)]

        async def check_known(i: int) -> object:
            return await service.check("000000", id=known[i])

        async def check_unknown(i: int) -> object:
            return await service.check("000000", id=f"VE{i:032x}")

        await check_unknown(0)  # the decoy hash is made on first use
        known_ms, unknown_ms = await medians_ms(check_known, check_unknown, runs)
        print(f"check median: known id {known_ms:.1f} ms, unknown id {unknown_ms:.1f} ms")
        assert abs(known_ms - unknown_ms) < 0.3 * max(known_ms, unknown_ms), (known_ms, unknown_ms)

        async def start_fresh(i: int) -> object:
            return await service.start(f"+1213555{i:04d}")

        async def start_pending(i: int) -> object:
            return await service.start(f"+1202555{i:04d}")

        fresh_ms, pending_ms = await medians_ms(start_fresh, start_pending, runs)
        print(f"start median: fresh number {fresh_ms:.1f} ms, pending number {pending_ms:.1f} ms")
        assert abs(fresh_ms - pending_ms) < 0.3 * max(fresh_ms, pending_ms), (fresh_ms, pending_ms)
