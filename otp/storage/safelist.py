"""The safe list: numbers and prefixes that bypass the fraud rules, one Redis set shared by the
admin API, the dashboard and ``otp safelist``."""

from __future__ import annotations

import time
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Store


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SafeList:
    """Read through a short in-process cache: every send asks, and an edit made in another process
    may take ``TTL`` seconds to reach this one."""

    TTL = 5.0

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: frozenset[str] = frozenset()
        self._loaded_at = -1e9

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    async def entries(self) -> frozenset[str]:
        # Monotonic: a cache's age is a duration, not a time of day (no clock to inject).
        if time.monotonic() - self._loaded_at > self.TTL:
            raw = await self.store.guarded(lambda: self.store.client.smembers(keyspace.safe_list()))
            self._entries = frozenset(_text(v) for v in raw)
            self._loaded_at = time.monotonic()
        return self._entries

    async def covers(self, e164: str) -> bool:
        return any(e164.startswith(entry) for entry in await self.entries())

    async def add(self, entry: str) -> bool:
        """Whether ``entry`` is new: /v2 answers an entry already there with Twilio's 60411, and
        only SADD's own count tells that without a race."""
        added = await self.store.guarded(lambda: self.store.client.sadd(keyspace.safe_list(), entry))
        self.invalidate()
        return bool(added)

    async def remove(self, entry: str) -> bool:
        removed = await self.store.guarded(lambda: self.store.client.srem(keyspace.safe_list(), entry))
        self.invalidate()
        return bool(removed)
