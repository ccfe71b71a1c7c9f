"""The safe list: numbers and prefixes that bypass the fraud rules, shared by the admin API, the
dashboard, ``otp safelist`` and ``/v2/SafeList/Numbers``.

Two sets, because an entry's text alone can't say how it matches: ``+49301234`` is a whole Berlin
number *and* the start of every ``+49301234x…``, as is any number in a plan of variable length
(DE, AT, IT, FI mobiles). ``/v1``'s entries are prefixes, as documented there; Twilio's Safe List
holds whole numbers, so ``/v2``'s match only themselves and never list a range.
"""

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
        self._prefixes: frozenset[str] = frozenset()
        self._numbers: frozenset[str] = frozenset()
        self._loaded_at = -1e9

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    async def _load(self) -> None:
        # Monotonic: a cache's age is a duration, not a time of day (no clock to inject).
        if time.monotonic() - self._loaded_at > self.TTL:
            prefixes = await self.store.guarded(lambda: self.store.client.smembers(keyspace.safe_list()))
            numbers = await self.store.guarded(lambda: self.store.client.smembers(keyspace.safe_numbers()))
            self._prefixes = frozenset(_text(v) for v in prefixes)
            self._numbers = frozenset(_text(v) for v in numbers)
            self._loaded_at = time.monotonic()

    async def entries(self) -> frozenset[str]:
        """The prefixes: each covers every number that starts with it."""
        await self._load()
        return self._prefixes

    async def numbers(self) -> frozenset[str]:
        """The whole numbers: each covers itself only."""
        await self._load()
        return self._numbers

    async def covers(self, e164: str) -> bool:
        await self._load()
        return e164 in self._numbers or any(e164.startswith(entry) for entry in self._prefixes)

    async def add(self, entry: str, *, exact: bool = False) -> bool:
        """Whether ``entry`` is new: /v2 answers an entry already there with Twilio's 60411, and
        only SADD's own count tells that without a race."""
        key = keyspace.safe_numbers() if exact else keyspace.safe_list()
        added = await self.store.guarded(lambda: self.store.client.sadd(key, entry))
        self.invalidate()
        return bool(added)

    async def remove(self, entry: str) -> bool:
        """Removes ``entry`` as a prefix and as a number: whoever made it, an admin can take it off."""
        prefix = await self.store.guarded(lambda: self.store.client.srem(keyspace.safe_list(), entry))
        number = await self.store.guarded(lambda: self.store.client.srem(keyspace.safe_numbers(), entry))
        self.invalidate()
        return bool(prefix or number)
