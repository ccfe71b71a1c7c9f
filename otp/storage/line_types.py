"""Twilio Lookup's answers, cached per number by its keyed hash (``keyspace.line_type``): the type
and the carrier's name only, never the number. The time of the answer is kept beside them, so the
cache's lifetime is judged on the injected clock (the key's own TTL is the backstop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Store


@dataclass(frozen=True)
class CachedLineType:
    number_type: str  # otp's name; "" when Lookup had none
    carrier: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read(store: Store, number_hash: str, *, now_ms: int, ttl_ms: int) -> CachedLineType | None:
    raw = await store.guarded(lambda: store.client.get(keyspace.line_type(number_hash)))
    if raw is None:
        return None
    at, _, rest = _text(raw).partition("|")
    number_type, _, carrier = rest.partition("|")
    if not at.isdigit() or now_ms - int(at) >= ttl_ms:
        return None
    return CachedLineType(number_type, carrier)


async def write(store: Store, number_hash: str, number_type: str, carrier: str, *, now_ms: int, ttl_ms: int) -> None:
    value = f"{now_ms}|{number_type}|{carrier}"
    await store.guarded(lambda: store.client.set(keyspace.line_type(number_hash), value, px=max(1, ttl_ms)))
