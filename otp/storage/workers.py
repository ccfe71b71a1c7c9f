"""The workers' shared state in Redis: the heartbeat /readyz reads, and the wake-up channel that
start.lua publishes to when it queues an SMS."""

from __future__ import annotations

from collections.abc import AsyncIterator

from otp.storage import keys as keyspace
from otp.storage.store import Store


async def beat(store: Store, now_ms: int, ttl_ms: int) -> None:
    """Some worker is alive for the next ``ttl_ms``."""
    await store.guarded(lambda: store.client.set(keyspace.worker_heartbeat(), now_ms, px=ttl_ms))


async def alive(store: Store) -> bool:
    """Whether a worker beat within its heartbeat's lifetime."""
    return bool(await store.guarded(lambda: store.client.get(keyspace.worker_heartbeat())))


def has_wake_channel(store: Store) -> bool:
    """Only a plain Redis client has pub/sub here (not redis-py's cluster client)."""
    return getattr(store.client, "pubsub", None) is not None


async def wake_ups(store: Store) -> AsyncIterator[None]:
    """One item per job announced, until the connection is lost (then it raises). Yields nothing
    when the client has no pub/sub: the caller polls."""
    if not has_wake_channel(store):
        return
    await store.ping()  # a cluster client learns its slot map before it can subscribe
    async with store.client.pubsub() as pubsub:
        await pubsub.subscribe(keyspace.WAKE_CHANNEL)
        async for message in pubsub.listen():
            if message.get("type") == "message":
                yield
