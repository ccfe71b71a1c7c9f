"""The workers' shared state in Redis: the heartbeat (the last beat's time, which
``otp_worker_last_seen_seconds`` reports), and the wake-up channel that start.lua publishes to
when it queues an SMS."""

from __future__ import annotations

from collections.abc import AsyncIterator

from otp.storage import keys as keyspace
from otp.storage.store import Store

# The last beat is kept this long, so the gauge can say how long ago workers stopped (a key that
# expired with the beat interval could only say "not in the last 15 s").
KEPT_MS = 7 * 86400 * 1000


async def beat(store: Store, now_ms: int) -> None:
    """Some worker is alive at ``now_ms``."""
    await store.guarded(lambda: store.client.set(keyspace.worker_heartbeat(), now_ms, px=KEPT_MS))


async def last_beat_ms(store: Store) -> int | None:
    """When some worker last beat (ms), or None when none did within KEPT_MS."""
    raw = await store.guarded(lambda: store.client.get(keyspace.worker_heartbeat()))
    return int(raw) if raw is not None else None


def has_wake_channel(store: Store) -> bool:
    """Whether the client can subscribe (plain and Sentinel clients, and redis-py's asyncio cluster client)."""
    return getattr(store.client, "pubsub", None) is not None


async def wake_ups(store: Store) -> AsyncIterator[int | None]:
    """The partition of each job start.lua announces, until the connection is lost (then it
    raises); None where every partition may hold unannounced work: once subscribed (what was
    queued before went unheard) and for a message that names no partition. Yields nothing when
    the client has no pub/sub: the caller polls."""
    if not has_wake_channel(store):
        return
    await store.ping()  # a cluster client learns its slot map before it can subscribe
    async with store.client.pubsub() as pubsub:
        await pubsub.subscribe(keyspace.WAKE_CHANNEL)
        async for message in pubsub.listen():
            if message.get("type") == "subscribe":
                yield None
            elif message.get("type") == "message":
                data = message.get("data")
                text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                yield keyspace.partition_of_tag(text)
