"""Numbers that opted out (replied STOP: Twilio's 21610), by their keyed hash: one key each, in the
number's partition, that expires after ``OTP_OPT_OUT_TTL``. The rules (when to mark, what a start
says) are otp.core.optouts'."""

from __future__ import annotations

from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Read, Store


async def mark(store: Store, partition: int, number_hash: str, scope: str, now_ms: int, ttl_ms: int) -> None:
    """Marks the number (again: a new STOP starts the TTL over)."""
    key = keyspace.opt_out(partition, number_hash, scope)
    await store.guarded(lambda: store.client.set(key, str(now_ms), px=max(1, ttl_ms)))


async def marked_at(store: Store, partition: int, number_hash: str, scope: str) -> int | None:
    """When the number was marked (ms), or None when it isn't."""
    key = keyspace.opt_out(partition, number_hash, scope)
    return marked_at_of(await store.guarded(lambda: store.client.get(key)))


def marked_read(partition: int, number_hash: str, scope: str) -> Read:
    """The same read, to send in another round trip (`Store.run_many`); `marked_at_of` its reply."""
    return Read("GET", keyspace.opt_out(partition, number_hash, scope))


def marked_at_of(value: Any) -> int | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return int(text) if text.isdigit() else 0


async def clear(store: Store, partition: int, number_hash: str, scope: str) -> bool:
    key = keyspace.opt_out(partition, number_hash, scope)
    return bool(await store.guarded(lambda: store.client.delete(key)))
