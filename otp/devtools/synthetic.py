"""Synthetic audit traffic, for measuring the dashboard against a full log (bench and tests only).

One Lua call (``lua/dev_fill_audit.lua``, a devtools script of the registry) writes a batch of
plausible entries to one partition's audit stream, with the hourly counters ``audit()`` in
``lua/lib.lua`` would have incremented beside them (the hourly ones, the refusal and source
tallies, and for the last hours the minute counters), so a million events
take seconds rather than the hours the real API would need. The entries spread evenly over
``span_ms`` before ``now_ms`` (the ``ts`` field; stream ids are Redis's own clock, as always).
Never point this at a production Redis: it writes into the live keys.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Store

BATCH = 5000


async def fill(
    store: Store,
    total: int,
    *,
    now_ms: int,
    span_ms: int = 7 * 86_400_000,
    seed: int = 1,
    batch: int = BATCH,
) -> int:
    """Write ``total`` synthetic audit entries spread over the partitions and over ``span_ms``
    before ``now_ms``, oldest first; returns how many were written."""
    per_partition = -(-total // store.partitions)
    step = max(1, span_ms // max(1, per_partition))
    first = now_ms - step * per_partition
    written = 0
    # Only the minute counters' reach goes into them: they live hours, not the span's days.
    recent = now_ms - keyspace.MINUTE_COUNTER_TTL_MS
    for offset in range(0, per_partition, batch):
        count = min(batch, per_partition - offset)
        calls: list[tuple[str, Mapping[str, str] | Sequence[str], Sequence[Any]]] = [
            (
                "dev_fill_audit",
                {
                    "stream": keyspace.audit_stream(p),
                    "counters": keyspace.audit_counter_prefix(p),
                    "refusals": keyspace.audit_refusal_counter_prefix(p),
                    "sources": keyspace.audit_source_counter_prefix(p),
                    "minutes": keyspace.audit_minute_counter_prefix(p),
                },
                [count, first + offset * step + p, step, store.audit_maxlen_per_partition, seed + p + offset, recent],
            )
            for p in range(store.partitions)
        ]
        await store.guarded(functools.partial(store.scripts.pipelined, calls))
        written += count * store.partitions
    return written
