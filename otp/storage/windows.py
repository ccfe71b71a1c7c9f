"""Reads and releases of the per-scope counters that limit.lua and fraud.lua keep."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Store


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def release(store: Store, entries: Sequence[tuple[str, str]]) -> None:
    """Drop (sorted-set key, member) entries of sliding logs and reservations, in one round trip."""
    if not entries:
        return

    async def drop() -> None:
        async with store.client.pipeline(transaction=False) as pipe:
            for key, member in entries:
                pipe.zrem(key, member)
            await pipe.execute()

    await store.guarded(drop)


async def window(store: Store, kind: str, value: str) -> dict[str, str]:
    """A scope's pumping window hash as stored (``sh:<hour>``, ``vh:<hour>`` → count, …)."""
    raw = await store.guarded(lambda: store.client.hgetall(keyspace.scope_window(kind, value)))
    return {_text(name): _text(count) for name, count in raw.items()}
