"""The webhooks of each tenant (a /v2 service, a /v1 API key): one hash per tenant, webhook sid →
its record as JSON, capped by webhook_put.lua so concurrent creates can't pass the cap. The rules
(validation, sealing, who may see what) are otp.core.webhooks'."""

from __future__ import annotations

import json
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Read, Store


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def put(store: Store, owner: str, sid: str, record: dict[str, Any], *, cap: int) -> bool:
    """Store (or replace) one webhook; False if the tenant already has ``cap`` others."""
    argument = json.dumps({"sid": sid, "record": json.dumps(record, separators=(",", ":")), "cap": cap})
    keys = {"hooks": keyspace.webhooks_of(owner)}
    return bool(int(await store.guarded(lambda: store.scripts.run("webhook_put", keys, [argument]))))


async def all_of(store: Store, owner: str) -> dict[str, dict[str, Any]]:
    """Every webhook of a tenant (a handful at most: bounded by the cap)."""
    raw = await store.guarded(lambda: store.client.hgetall(keyspace.webhooks_of(owner)))
    return {_text(sid): json.loads(_text(value)) for sid, value in raw.items()}


async def any_for(store: Store, owner: str) -> bool:
    return bool(await store.guarded(lambda: store.client.exists(keyspace.webhooks_of(owner))))


def any_read(owner: str) -> Read:
    """`any_for` as a read to send in another round trip (`Store.run_many`); its reply is 0 or 1."""
    return Read("EXISTS", keyspace.webhooks_of(owner))


async def remove(store: Store, owner: str, sid: str) -> bool:
    return bool(await store.guarded(lambda: store.client.hdel(keyspace.webhooks_of(owner), sid)))


async def remove_all(store: Store, owner: str) -> None:
    await store.guarded(lambda: store.client.delete(keyspace.webhooks_of(owner)))
