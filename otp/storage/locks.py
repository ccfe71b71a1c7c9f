"""The brute-force locks of every partition (keys.lock_index, written by lib.lua's ``note_lock``)
and the verifications they name, read in two pipelined round trips and bounded per partition."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.records import text
from otp.storage.store import Store

PER_PARTITION = 100


@dataclass(frozen=True)
class LockRecord:
    """One lock: ``kind`` "v" (a verification locked by its attempts) or "n" (a check refused
    because its number is locked by failed checks), its details as note_lock wrote them, and the
    verification's ``to``, ``key`` and ``st`` while it is kept (OTP_RETENTION), else empty."""

    partition: int
    kind: str
    vid: str
    details: dict[str, Any]
    verification: dict[str, str]


async def recent(store: Store, since_ms: int, *, per_partition: int = PER_PARTITION) -> list[LockRecord]:
    """The locks last seen at or after ``since_ms``, the newest ``per_partition`` of each partition."""

    async def members() -> list[Any]:
        async with store.client.pipeline(transaction=False) as pipe:
            for p in range(store.partitions):
                pipe.zrevrangebyscore(keyspace.lock_index(p), "+inf", since_ms, start=0, num=per_partition)
            return list(await pipe.execute())

    found = [(p, [text(m) for m in raw]) for p, raw in enumerate(await store.guarded(members))]
    found = [(p, names) for p, names in found if names]
    if not found:
        return []

    async def details() -> list[Any]:
        async with store.client.pipeline(transaction=False) as pipe:
            for p, names in found:
                pipe.hmget(keyspace.lock_details(p), names)
                for name in names:
                    pipe.hmget(keyspace.verification(p, name.split(":", 1)[1]), ["to", "key", "st"])
            return list(await pipe.execute())

    replies = iter(await store.guarded(details))
    out = []
    for p, names in found:
        raw_details = next(replies)
        for name, raw in zip(names, raw_details, strict=True):
            to, key, status = (text(v) if v is not None else "" for v in next(replies))
            try:
                parsed = json.loads(text(raw)) if raw is not None else {}
            except ValueError:
                parsed = {}
            kind, _, vid = name.partition(":")
            out.append(LockRecord(p, kind, vid, parsed, {"to": to, "key": key, "st": status} if to else {}))
    return out
