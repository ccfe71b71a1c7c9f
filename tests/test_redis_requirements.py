"""The Redis guarantees otp relies on (DESIGN §4), read off real servers: every primary's eviction
policy, persistence and version, standalone and on a three-master Cluster."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import cluster_fixtures
import pytest
import redis

from otp.clock import SYSTEM
from otp.core.deployment import Level, failures, redis_findings
from otp.edge.embedded_redis import EmbeddedRedis, free_port
from otp.storage import server_config
from otp.storage.client import connect

redis_cluster = cluster_fixtures.redis_cluster
cluster_url = cluster_fixtures.cluster_url


@pytest.fixture
def lru_redis() -> Iterator[str]:
    """A Redis that evicts: what a cache-tuned server (or a managed default) looks like."""
    with tempfile.TemporaryDirectory(prefix="otp-test-lru-") as folder:
        server = EmbeddedRedis(folder, port=free_port(), appendonly=False)
        server.start()
        redis.Redis.from_url(server.url).config_set("maxmemory-policy", "allkeys-lru")
        try:
            yield server.url
        finally:
            server.stop()


async def test_a_redis_that_may_evict_fails_the_eviction_check(lru_redis: str) -> None:
    client = connect(lru_redis)
    try:
        findings = redis_findings(await server_config.read(client))
    finally:
        await client.aclose()
    failed = failures(findings)
    assert [f.check for f in failed] == ["redis eviction policy (primary)"]
    assert "allkeys-lru" in failed[0].detail
    assert "maxmemory-policy noeviction" in failed[0].fix


async def test_allowing_eviction_turns_the_failure_into_a_warning(lru_redis: str) -> None:
    client = connect(lru_redis)
    try:
        findings = redis_findings(await server_config.read(client), allow_eviction=True)
    finally:
        await client.aclose()
    assert not failures(findings)
    eviction = next(f for f in findings if f.check.startswith("redis eviction"))
    assert eviction.level is Level.WARN and "OTP_REDIS_ALLOW_EVICTION" in eviction.detail


async def test_a_redis_without_aof_is_a_warning_and_with_aof_a_pass(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        before = redis_findings(await server_config.read(client))
        await client.config_set("appendonly", "yes")
        after = redis_findings(await server_config.read(client))
        await client.config_set("appendonly", "no")
    finally:
        await client.aclose()
    persistence = [f for f in before if f.check.startswith("redis persistence")]
    assert [f.level for f in persistence] == [Level.WARN]
    assert "appendonly yes" in persistence[0].fix
    assert [f.level for f in after if f.check.startswith("redis persistence")] == [Level.PASS]


@pytest.mark.cluster
async def test_every_cluster_primary_is_read_and_one_evicting_primary_fails(
    cluster_url: str, redis_cluster: cluster_fixtures.LocalCluster
) -> None:
    evicting = redis_cluster.ports[2]  # not a seed: the client must find it from the slot map
    redis_cluster.node(evicting).config_set("maxmemory-policy", "volatile-lru")
    client = connect(cluster_url)
    try:
        configs = await server_config.read(client)
        answered = await server_config.ping_primaries(client)
        offsets = await server_config.clock_offsets(client, SYSTEM)
    finally:
        await client.aclose()
        redis_cluster.node(evicting).config_set("maxmemory-policy", "noeviction")
    assert sorted(c.node for c in configs) == sorted(f"127.0.0.1:{p}" for p in redis_cluster.ports)
    assert sorted(answered) == sorted(c.node for c in configs)
    # Every primary's clock (TIME), for `otp doctor`'s skew check: the same host's here.
    assert sorted(o.node for o in offsets) == sorted(c.node for c in configs)
    assert all(abs(o.offset) < 1.0 for o in offsets)
    assert {c.cluster_state for c in configs} == {"ok"}
    failed = failures(redis_findings(configs))
    assert [f.check for f in failed] == [f"redis eviction policy (127.0.0.1:{evicting})"]
