"""Pacing the sender pool across every worker: one slot per message per sender, in Redis
(``sender_take.lua`` over the buckets keys.sender_bucket names)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from otp.storage import keys as keyspace
from otp.storage.store import Store


@dataclass(frozen=True)
class Slot:
    """The sender a message goes out with (its index among the candidates) and when; ``index`` is
    -1 when no candidate is free before the deadline (then nothing was reserved)."""

    index: int
    at_ms: int


async def take(store: Store, *, now_ms: int, candidates: Sequence[tuple[str, int]], deadline_ms: int) -> Slot:
    """Reserve the earliest slot among ``candidates`` ((sender address, ms this message occupies
    it)). The slot may be in the future: the caller waits for it without holding anything."""
    keys = [keyspace.sender_bucket(address) for address, _ in candidates]
    argument = json.dumps({"now": now_ms, "intervals": [ms for _, ms in candidates], "deadline": deadline_ms})
    index, at_ms = await store.guarded(lambda: store.scripts.run("sender_take", keys, [argument]))
    return Slot(int(index) - 1, int(at_ms))
