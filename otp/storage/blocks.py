"""Scope blocks (fraud.lua sets them in the scope's own slot) and the small index of blocked scopes
that readers (the dashboard, ``/v1/blocks``) list them from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Store


@dataclass(frozen=True)
class BlockState:
    """A scope's block as fraud.lua writes it, ``"<level>:<until ms>:<reason>:<unverified>:<set at
    ms>:<sends>:<approvals>:<threshold>"`` on the service's clock; the later fields are empty/None
    on a block written before them."""

    level: int
    until_ms: int
    reason: str = ""
    unverified: int | None = None
    since_ms: int | None = None
    sends: int | None = None
    approvals: int | None = None
    threshold: float | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _index() -> str:
    return keyspace.stats_index("blocked")


async def index(store: Store, blocks: Sequence[tuple[str, int]], ttl_s: int) -> None:
    """Remember (scope tag, blocked until ms) pairs for readers, for ``ttl_s`` after the last one."""
    key = _index()
    await store.guarded(lambda: store.client.zadd(key, {tag: until for tag, until in blocks}))
    await store.guarded(lambda: store.client.expire(key, ttl_s))


async def indexed(store: Store, *, until_after_ms: int | None = None) -> list[str]:
    """Tags of the indexed scopes: all of them, or those blocked past ``until_after_ms``."""
    key = _index()
    if until_after_ms is None:
        raw = await store.guarded(lambda: store.client.zrange(key, 0, -1))
    else:
        raw = await store.guarded(lambda: store.client.zrangebyscore(key, until_after_ms, "+inf"))
    return [_text(tag) for tag in raw]


def _decode(raw: str) -> BlockState | None:
    parts = raw.split(":")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    if len(parts) >= 8 and all(p.isdigit() for p in parts[3:7]):
        try:
            threshold = float(parts[7])
        except ValueError:
            threshold = None
        unverified, since, sends, approvals = (int(p) for p in parts[3:7])
        return BlockState(int(parts[0]), int(parts[1]), parts[2], unverified, since, sends, approvals, threshold)
    if len(parts) >= 4 and parts[3].isdigit():
        return BlockState(int(parts[0]), int(parts[1]), parts[2], int(parts[3]))
    return BlockState(int(parts[0]), int(parts[1]))


async def state(store: Store, tag: str) -> BlockState | None:
    """The scope's block, or None when it has none (or an unreadable one)."""
    raw = await store.guarded(lambda: store.client.get(keyspace.block_of(tag)))
    return _decode(_text(raw or ""))


async def lift(store: Store, tags: Sequence[str]) -> bool:
    """Remove the blocks of these scopes with their levels; whether there was any."""
    keys = [key for tag in tags for key in (keyspace.block_of(tag), keyspace.level_of(tag))]
    return bool(await store.guarded(lambda: store.client.delete(*keys)))
