"""The audit streams (one per partition) and their hourly counters, read in bounded steps.

``audit_scan.lua`` filters one partition's stream inside Redis, so only matches cross the wire; it
is registered with the other scripts and called pipelined, several partitions per round trip. The
walk that merges the partitions into one newest-first log is otp.core.audit's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Call, Store

Entry = tuple[str, dict[str, str]]  # (stream id, fields)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(raw_id: Any, raw_fields: Mapping[Any, Any] | None) -> Entry:
    return _text(raw_id), {_text(k): _text(v) for k, v in (raw_fields or {}).items()}


@dataclass(frozen=True)
class ScanRequest:
    """One partition's next batch: at most ``count`` entries below ``upper`` (XREVRANGE's max)."""

    partition: int
    upper: str
    count: int


@dataclass(frozen=True)
class ScanReply:
    read: int  # entries examined
    last: str  # id of the last entry examined, "" if none
    stopped: bool  # it reached an entry older than ``since``
    matches: list[Entry]  # newest first
    last_ts: int | None  # ts of the last entry examined


def _reply(raw: Sequence[Any]) -> ScanReply:
    flat = raw[3]
    matches = []
    for i in range(0, len(flat), 2):
        fields = json.loads(_text(flat[i + 1]))
        matches.append((_text(flat[i]), dict(zip(fields[::2], fields[1::2], strict=True))))
    last_ts = _text(raw[4]) if len(raw) > 4 else ""
    return ScanReply(int(raw[0]), _text(raw[1]), bool(int(raw[2])), matches, int(last_ts) if last_ts else None)


async def scan(
    store: Store,
    requests: Sequence[ScanRequest],
    *,
    since_ms: int | None,
    until_ms: int | None,
    criteria: Sequence[tuple[str, str]],
) -> list[ScanReply]:
    """Each request's batch in one round trip, filtered in Redis: ``ts`` in [since, until) and, for
    every field named in ``criteria``, one of the values paired with it."""
    since = "" if since_ms is None else str(since_ms)
    until = "" if until_ms is None else str(until_ms)
    pairs = [part for pair in criteria for part in pair]
    calls = [
        Call(
            "audit_scan",
            keyspace.tag(r.partition),
            [keyspace.audit_stream(r.partition)],
            {"upper": r.upper, "lower": "-", "count": r.count, "since_ms": since, "until_ms": until, "criteria": pairs},
        )
        for r in requests
    ]
    # The scan reads no clock: "now" in the shared header is unused.
    return [_reply(raw) for raw in await store.run_many(calls, 0)]


async def newest_ids(store: Store) -> dict[int, str]:
    """The newest id of each partition's stream ("0-0" when empty)."""

    async def read() -> list[Any]:
        async with store.client.pipeline(transaction=False) as pipe:
            for partition in range(store.partitions):
                pipe.xrevrange(keyspace.audit_stream(partition), "+", "-", count=1)
            return list(await pipe.execute())

    replies = await store.guarded(read)
    return {p: _text(raw[0][0]) if raw else "0-0" for p, raw in enumerate(replies)}


async def entries_after(store: Store, positions: Mapping[int, str], *, count: int) -> dict[int, list[Entry]]:
    """Up to ``count`` entries of each given partition after its id, oldest first, in one round trip."""
    partitions = list(positions)

    async def read() -> list[Any]:
        async with store.client.pipeline(transaction=False) as pipe:
            for partition in partitions:
                pipe.xrange(keyspace.audit_stream(partition), "(" + positions[partition], "+", count=count)
            return list(await pipe.execute())

    replies = await store.guarded(read)
    return {p: [_entry(i, f) for i, f in raw] for p, raw in zip(partitions, replies, strict=True)}


async def counter_totals(store: Store, hours: Sequence[int], names: Sequence[str]) -> list[int]:
    """The sums of the hourly audit counters ``names`` over ``hours`` (hour numbers since the
    epoch) and every partition, in one round trip."""

    async def read() -> list[Any]:
        async with store.client.pipeline(transaction=False) as pipe:
            for partition in range(store.partitions):
                for hour in hours:
                    pipe.hmget(keyspace.audit_counter(partition, hour * 3_600_000), list(names))
            return list(await pipe.execute())

    totals = [0] * len(names)
    for row in await store.guarded(read):
        for i, value in enumerate(row):
            totals[i] += int(value or 0)
    return totals
