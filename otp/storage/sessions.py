"""Dashboard sessions: the SHA-256 of a session id → the admin key's id, with the session's TTL
(``keyspace.dashboard_session``); beside the API keys, so one round trip reads both."""

from __future__ import annotations

from typing import Any

from otp.storage import keys as keyspace
from otp.storage.accounts import KeyRecord, decode_key
from otp.storage.store import Store


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def open_session(store: Store, digest: str, key_id: str, *, ttl_s: int) -> None:
    await store.guarded(lambda: store.client.set(keyspace.dashboard_session(digest), key_id, ex=ttl_s))


async def close_session(store: Store, digest: str) -> None:
    await store.guarded(lambda: store.client.delete(keyspace.dashboard_session(digest)))


async def session_and_key(store: Store, digest: str, key_id: str) -> tuple[str | None, KeyRecord | None]:
    """The key id the session names (None: no such session) and that key's record, in one round
    trip: both keys live under the {cfg} tag, so also on one node of a cluster."""

    async def read() -> tuple[Any, Any]:
        async with store.client.pipeline(transaction=False) as pipe:
            pipe.get(keyspace.dashboard_session(digest))
            pipe.hgetall(keyspace.api_key(key_id))
            owner, record = await pipe.execute()
        return owner, record

    owner, record = await store.guarded(read)
    return (None if owner is None else _text(owner)), decode_key(key_id, record)
