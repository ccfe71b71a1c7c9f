"""The audit log is kept by age (OTP_AUDIT_RETENTION) as well as by count (OTP_AUDIT_MAXLEN):
each event written trims the entries older than the retention, a bounded step at a time.

Age is the stream id's: Redis stamps ids from its own clock, and MINID compares ids. So the tests
put "old" entries in with ids from Redis's clock minus the age they stand for (the only way to
have entries written hours ago without waiting hours), and write new events through the service,
whose injected clock runs weeks ahead of Redis's (conftest's clock): that must trim nothing young.

Trimming is ``~`` (whole stream nodes), as in production; the tests stay exact by seeding whole
nodes: ``stream-node-max-entries`` small entries fill a node (they are far below its
``stream-node-max-bytes``), so the next entry opens a new one and the old nodes hold only old
entries. An exact ``=`` trim would be deterministic without that care but costs Redis a rewrite
of the first node on every write, and has no LIMIT: it is not what runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import Clock, RecordingSender, Service, make_settings, running_service, stream_entries

from otp import cli
from otp.errors import ConfigError
from otp.settings import Settings
from otp.storage import keys as keyspace
from otp.storage.store import Store

HOUR_MS = 3_600_000
STREAM = keyspace.audit_stream(0)  # where admin actions and audit_event(0, …) write


@pytest.fixture
async def svc(redis_url: str) -> AsyncIterator[Service]:
    async with running_service(make_settings(redis_url, audit_retention=3600.0), Clock(), RecordingSender()) as s:
        yield s


async def _redis_now_ms(svc: Service) -> int:
    seconds, micros = await svc.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _node_entries(svc: Service) -> int:
    reply = await svc.redis.config_get("stream-node-max-entries")  # redis-py decodes CONFIG GET
    return int(str(reply["stream-node-max-entries"]))


async def _seed(svc: Service, *, age_ms: int, count: int, tag: str) -> None:
    """``count`` entries as if written ``age_ms`` ago by Redis's clock, 1 ms apart."""
    first = await _redis_now_ms(svc) - age_ms
    async with svc.redis.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.xadd(STREAM, {"ts": str(first + i), "event": tag}, id=f"{first + i}-0")
        await pipe.execute()


async def _events(svc: Service) -> list[str]:
    return [fields[b"event"].decode() for _, fields in await stream_entries(svc.redis, STREAM)]


async def _write_event(svc: Service) -> None:
    await svc.app.state.store.audit_event(0, svc.clock.now_ms(), {"event": "admin", "action": "unblock"})


async def test_entries_older_than_the_retention_go_as_new_events_are_written(svc: Service) -> None:
    node = await _node_entries(svc)
    await _seed(svc, age_ms=2 * HOUR_MS, count=3 * node, tag="two_hours_old")
    await _seed(svc, age_ms=HOUR_MS // 2, count=5, tag="half_an_hour_old")
    assert len(await _events(svc)) == 3 * node + 5

    await _write_event(svc)
    assert await _events(svc) == ["half_an_hour_old"] * 5 + ["admin"]

    # The service's clock running a year ahead (of Redis's, and of the entries' ts) trims nothing:
    # the cut follows the ids Redis hands out.
    svc.clock.advance(365 * 86400)
    await _write_event(svc)
    assert await _events(svc) == ["half_an_hour_old"] * 5 + ["admin"] * 2


async def test_a_backlog_of_expired_entries_drains_a_bounded_step_per_event(svc: Service) -> None:
    """A retention just lowered leaves many expired entries: one event must not make Redis free them
    all at once. Redis's LIMIT for ``~`` is 100 nodes a call."""
    node = await _node_entries(svc)
    await _seed(svc, age_ms=2 * HOUR_MS, count=250 * node, tag="old")
    await _write_event(svc)
    left = await svc.redis.xlen(STREAM)
    assert 250 * node + 1 - left == 100 * node  # exactly 100 whole nodes went
    await _write_event(svc)
    await _write_event(svc)
    assert await _events(svc) == ["admin"] * 3


async def test_entries_stay_within_the_retention_and_without_one_nothing_is_trimmed_by_age(
    redis_url: str,
) -> None:
    # The default keeps 30 days: a day-old entry stays.
    async with running_service(make_settings(redis_url), Clock(), RecordingSender()) as svc:
        node = await _node_entries(svc)
        await _seed(svc, age_ms=24 * HOUR_MS, count=node, tag="a_day_old")
        await _write_event(svc)
        assert await _events(svc) == ["a_day_old"] * node + ["admin"]
        assert svc.app.state.store.audit_retention_ms == 30 * 24 * HOUR_MS
        # A store built without the settings (a read-only tool) trims nothing by age.
        bare = Store(svc.redis, partitions=16)
        await bare.audit_event(0, svc.clock.now_ms(), {"event": "admin", "action": "unblock"})
        assert await _events(svc) == ["a_day_old"] * node + ["admin"] * 2


async def test_the_hourly_counters_beside_the_stream_expire(svc: Service) -> None:
    await _write_event(svc)
    counter = keyspace.audit_counter(0, svc.clock.now_ms())
    assert await svc.redis.hget(counter, "admin") == b"1"
    assert 0 < await svc.redis.pttl(counter) <= keyspace.AUDIT_COUNTER_TTL_MS


async def test_commands_write_with_the_services_audit_caps(redis_url: str) -> None:
    """``otp safelist add`` and the like write audit events too: with the operator's caps, or a
    command's event would trim the log by the defaults."""
    settings = make_settings(redis_url, audit_retention=7 * 86400.0, audit_maxlen=2_000_000)
    async with cli._connected(settings) as store:
        assert store.audit_retention_ms == 7 * 86_400_000
        assert store.audit_maxlen_per_partition == 2_000_000 // settings.partitions


def test_the_retention_is_a_duration_checked_by_name() -> None:
    assert Settings.from_env({}).audit_retention == 30 * 86400.0
    assert Settings.from_env({"OTP_AUDIT_RETENTION": "7d"}).audit_retention == 7 * 86400.0
    for bad, why in (("5m", "out of range (1h..3650d)"), ("a month", "not a duration"), ("-1d", "not a duration")):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({"OTP_AUDIT_RETENTION": bad})
        assert "OTP_AUDIT_RETENTION" in str(refused.value) and why in str(refused.value)
