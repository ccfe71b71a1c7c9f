"""What each Redis primary the service writes to is configured with, whether each answers, and how
far its clock is from the service's.

Standalone and Sentinel have one primary (the client's); a Cluster has one per slot range, and a
guarantee broken on any of them (eviction, no AOF) is broken for the verifications in its slots,
so every primary is read. ``INFO`` gives the policy and AOF state and is allowed where managed
Redis renames ``CONFIG``; ``appendfsync`` only ``CONFIG GET`` knows, so it is "" where that is
refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster

PRIMARY = "primary"  # the one node of a standalone or Sentinel setup


@dataclass(frozen=True)
class ServerConfig:
    node: str  # "host:port" of a Cluster primary, else PRIMARY
    version: str
    maxmemory_policy: str
    aof_enabled: bool
    appendfsync: str  # everysec | always | no, or "" where CONFIG GET is refused
    cluster_state: str  # ok | fail on a Cluster node, "" elsewhere


# One node's command runner: (command, *args) → reply.
Runner = Callable[..., Awaitable[Any]]


def _runners(client: aioredis.Redis) -> list[tuple[str, Runner]]:
    if isinstance(client, RedisCluster):
        cluster = client

        def on(node: ClusterNode) -> Runner:
            return lambda *args: cluster.execute_command(*args, target_nodes=node)

        return [(node.name, on(node)) for node in cluster.get_primaries()]
    return [(PRIMARY, client.execute_command)]


async def _primaries(client: aioredis.Redis) -> list[tuple[str, Runner]]:
    if isinstance(client, RedisCluster):
        await client.initialize()  # learns the slot map, and so the primaries
    return _runners(client)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _appendfsync(run: Runner) -> str:
    try:
        reply = await run("CONFIG", "GET", "appendfsync")
    except redis_errors.ResponseError:
        return ""  # CONFIG renamed or not permitted for this user
    if isinstance(reply, dict):
        return _text(next(iter(reply.values()), ""))
    values = list(reply or [])
    return _text(values[1]) if len(values) > 1 else ""


async def _read_one(node: str, run: Runner, cluster: bool) -> ServerConfig:
    info = cast(dict[str, Any], await run("INFO", "all"))
    state = ""
    if cluster:
        raw = _text(await run("CLUSTER", "INFO"))
        fields = dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)
        state = fields.get("cluster_state", "").strip()
    return ServerConfig(
        node=node,
        version=_text(info.get("redis_version", "")),
        maxmemory_policy=_text(info.get("maxmemory_policy", "")),
        aof_enabled=str(info.get("aof_enabled", "0")) == "1",
        appendfsync=await _appendfsync(run),
        cluster_state=state,
    )


async def read(client: aioredis.Redis) -> list[ServerConfig]:
    """Every primary's configuration; raises the client's connection errors when one is down."""
    cluster = isinstance(client, RedisCluster)
    return [await _read_one(node, run, cluster) for node, run in await _primaries(client)]


async def ping_primaries(client: aioredis.Redis) -> list[str]:
    """PING every primary; returns the nodes that answered. A Cluster node whose view of the
    cluster is not ``ok`` (a slot without a primary mid-failover) counts as not answering."""
    cluster = isinstance(client, RedisCluster)
    answered = []
    for node, run in await _primaries(client):
        await run("PING")
        if cluster:
            raw = _text(await run("CLUSTER", "INFO"))
            if "cluster_state:ok" not in raw:
                raise redis_errors.ConnectionError(f"Redis Cluster node {node} reports the cluster down")
        answered.append(node)
    return answered


@dataclass(frozen=True)
class ClockOffset:
    node: str
    offset: float  # the primary's TIME minus this host's clock halfway through the call, seconds
    round_trip: float  # how long the call took: the offset is known to within half of it


async def clock_offsets(client: aioredis.Redis, now: Callable[[], float]) -> list[ClockOffset]:
    """How far each primary's clock (``TIME``) is from ``now`` (the service's clock)."""
    found = []
    for node, run in await _primaries(client):
        before = now()
        seconds, micros = await run("TIME")  # redis-py answers (seconds, microseconds)
        after = now()
        server = int(seconds) + int(micros) / 1_000_000
        found.append(ClockOffset(node, server - (before + after) / 2, after - before))
    return found
