"""The records of the tenants: API keys (``otp keys``) and Verify v2 services, with the two small
lookups kept beside each /v2 send. Configuration, not state: keys and services carry no TTL and
live until revoked or deleted. The rules (digests, validation, authentication) are the core's."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otp.storage import keys as keyspace
from otp.storage.store import Store

Fields = dict[str, str]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Mapping[Any, Any]) -> Fields:
    return {_text(k): _text(v) for k, v in raw.items()}


# -- API keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    name: str
    digest: str  # SHA-256 of the secret, hex
    admin: bool


def decode_key(key_id: str, raw: Mapping[Any, Any]) -> KeyRecord | None:
    """An API key's hash as stored, or None when there is none."""
    if not raw:
        return None
    fields = _fields(raw)
    return KeyRecord(key_id, fields.get("name", ""), fields.get("digest", ""), fields.get("admin", "0") == "1")


async def put_key(store: Store, record: KeyRecord, *, created_s: int) -> None:
    await store.guarded(
        lambda: store.client.hset(
            keyspace.api_key(record.key_id),
            mapping={"name": record.name, "digest": record.digest, "admin": int(record.admin), "created": created_s},
        )
    )
    await store.guarded(lambda: store.client.sadd(keyspace.api_key_index(), record.key_id))


async def delete_key(store: Store, key_id: str) -> bool:
    removed = await store.guarded(lambda: store.client.delete(keyspace.api_key(key_id)))
    await store.guarded(lambda: store.client.srem(keyspace.api_key_index(), key_id))
    return bool(removed)


async def get_key(store: Store, key_id: str) -> KeyRecord | None:
    """One HGETALL: looked up on every request, never cached (see otp.core.apikeys)."""
    return decode_key(key_id, await store.guarded(lambda: store.client.hgetall(keyspace.api_key(key_id))))


async def all_keys(store: Store) -> list[KeyRecord]:
    """Every key, by id."""
    found = []
    for raw_id in sorted(await store.guarded(lambda: store.client.smembers(keyspace.api_key_index()))):
        record = await get_key(store, _text(raw_id))
        if record is not None:
            found.append(record)
    return found


async def count_keys(store: Store) -> int:
    return int(await store.guarded(lambda: store.client.scard(keyspace.api_key_index())))


# -- Verify v2 services --------------------------------------------------------------------------


async def put_service(
    store: Store, sid: str, account_sid: str, record: Mapping[str, Any], *, created_ms: int, most: int
) -> bool:
    """A new service's hash and its place in its account's index, unless the account has ``most``
    services already (False then): counted and written in one script, so concurrent creates
    can't pass the cap together."""
    fields = [str(part) for name, value in record.items() for part in (name, value)]
    argument = json.dumps({"sid": sid, "created": str(created_ms), "most": most, "fields": fields})
    keys = {"service": keyspace.v2_service(sid), "services": keyspace.v2_services_of(account_sid)}
    return bool(int(await store.guarded(lambda: store.scripts.run("service_create", keys, [argument]))))


async def get_service(store: Store, sid: str) -> Fields:
    """A service's hash as stored; empty when there is none."""
    return _fields(await store.guarded(lambda: store.client.hgetall(keyspace.v2_service(sid))))


async def service_sids(store: Store, account_sid: str) -> list[str]:
    raw = await store.guarded(lambda: store.client.zrange(keyspace.v2_services_of(account_sid), 0, -1))
    return [_text(s) for s in raw]


async def service_page(
    store: Store, account_sid: str, *, offset: int, count: int
) -> tuple[list[tuple[str, Fields]], int]:
    """One page of an account's services, oldest first, and how many it has in all. A service
    deleted between the two reads is left out of the page."""
    index = keyspace.v2_services_of(account_sid)

    async def ids() -> tuple[list[Any], int]:
        async with store.client.pipeline(transaction=False) as pipe:
            pipe.zrange(index, offset, offset + count - 1)
            pipe.zcard(index)
            raw_sids, total = await pipe.execute()
        return list(raw_sids), int(total)

    raw_sids, total = await store.guarded(ids)
    sids = [_text(s) for s in raw_sids]
    if not sids:
        return [], total

    async def records() -> list[Any]:
        async with store.client.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(keyspace.v2_service(sid))
            return list(await pipe.execute())

    found = zip(sids, await store.guarded(records), strict=True)
    return [(sid, _fields(raw)) for sid, raw in found if raw], total


async def update_service(store: Store, sid: str, changes: Mapping[str, Any]) -> None:
    mapping: dict[Any, Any] = dict(changes)
    await store.guarded(lambda: store.client.hset(keyspace.v2_service(sid), mapping=mapping))


async def delete_service(store: Store, sid: str, account_sid: str) -> None:
    async def drop() -> None:
        async with store.client.pipeline(transaction=False) as pipe:
            pipe.zrem(keyspace.v2_services_of(account_sid), sid)
            pipe.delete(keyspace.v2_service(sid))
            pipe.delete(keyspace.v2_rate_limits(sid))  # its rate limits and buckets go with it
            pipe.delete(keyspace.v2_messaging_configurations(sid))
            await pipe.execute()

    await store.guarded(drop)


# -- Verify v2 service rate limits ---------------------------------------------------------------
# Records as rate_limits.lua keeps them (JSON objects); the rules and their shapes are
# otp.core.rate_limits'.

Record = dict[str, Any]


async def rate_limit_op(
    store: Store, service_sid: str, op: str, fields: Mapping[str, Any], *, now_ms: int
) -> tuple[str, Record | None]:
    """One rate_limits.lua operation: its status ('ok', 'none', 'exists', 'full') and the record."""
    argument = json.dumps({**fields, "op": op, "now": now_ms}, separators=(",", ":"))
    keys = {"limits": keyspace.v2_rate_limits(service_sid)}
    status, raw = await store.guarded(lambda: store.scripts.run("rate_limits", keys, [argument]))
    text = _text(raw)
    return _text(status), (json.loads(text) if text else None)


async def rate_limit_records(store: Store, service_sid: str) -> list[Record]:
    """Every rate limit of a service (at most the cap otp.core.rate_limits sets: one small hash)."""
    raw = await store.guarded(lambda: store.client.hgetall(keyspace.v2_rate_limits(service_sid)))
    return [json.loads(_text(v)) for k, v in raw.items() if _text(k).startswith("n:")]


async def service_with_rate_limits(store: Store, sid: str, names: Sequence[str]) -> tuple[Fields, dict[str, Record]]:
    """A service's hash and the records of those of its rate limits ``names`` names, in one round
    trip (both keys are in the {cfg} slot)."""

    async def read() -> tuple[Any, list[Any]]:
        async with store.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keyspace.v2_service(sid))
            pipe.hmget(keyspace.v2_rate_limits(sid), [f"n:{name}" for name in names])
            service, records = await pipe.execute()
        return service, list(records)

    if not names:
        return await get_service(store, sid), {}
    service, records = await store.guarded(read)
    found = {name: json.loads(_text(raw)) for name, raw in zip(names, records, strict=True) if raw is not None}
    return _fields(service), found


# -- a service's MessagingConfigurations ---------------------------------------------------------


async def change_messaging_configuration(
    store: Store, service_sid: str, *, op: str, country: str, sid: str = "", at_ms: int = 0
) -> tuple[str, str]:
    """(outcome, value) of messaging_config.lua: ``ok``, ``exists``, ``missing`` or ``no_service``,
    and the ``<MG sid>|<created ms>|<updated ms>`` stored (or deleted)."""
    keys = {"service": keyspace.v2_service(service_sid), "configs": keyspace.v2_messaging_configurations(service_sid)}
    argument = json.dumps({"op": op, "country": country, "sid": sid, "at": str(at_ms)})
    outcome, value = await store.guarded(lambda: store.scripts.run("messaging_config", keys, [argument]))
    return _text(outcome), _text(value)


async def messaging_configurations(store: Store, service_sid: str) -> Fields:
    """Every configuration of a service (a field per country at most: one bounded HGETALL)."""
    key = keyspace.v2_messaging_configurations(service_sid)
    return _fields(await store.guarded(lambda: store.client.hgetall(key)))


async def messaging_configuration(store: Store, service_sid: str, *countries: str) -> list[str | None]:
    """The stored values of ``countries`` (one HMGET: a send looks up its country and ``all``)."""
    key = keyspace.v2_messaging_configurations(service_sid)
    raw = await store.guarded(lambda: store.client.hmget(key, list(countries)))
    return [None if value is None else _text(value) for value in raw]


# -- per-send lookups ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SendLookups:
    """What ``GET /v2/Attempts/{Sid}`` and a check by ``To`` need after the Verifier is done."""

    attempt_sid: str
    verification_id: str
    send_number: int
    service_sid: str
    e164: str


async def put_send_lookups(store: Store, lookups: SendLookups, *, ttl_ms: int) -> None:
    """attempt sid → (verification, send number, service); (service, number) → latest verification."""
    n = store.partitions
    value = f"{lookups.verification_id}:{lookups.send_number}:{lookups.service_sid}"

    async def write() -> None:
        async with store.client.pipeline(transaction=False) as pipe:
            pipe.set(keyspace.v2_attempt(lookups.attempt_sid, n), value, px=ttl_ms)
            pipe.set(keyspace.v2_latest(lookups.service_sid, lookups.e164, n), lookups.verification_id, px=ttl_ms)
            await pipe.execute()

    await store.guarded(write)


async def get_attempt(store: Store, attempt_sid: str) -> tuple[str, int, str] | None:
    """(verification id, send number, service sid) of an attempt sid, while its verification lives."""
    raw = await store.guarded(lambda: store.client.get(keyspace.v2_attempt(attempt_sid, store.partitions)))
    if raw is None:
        return None
    verification_id, number, service_sid = _text(raw).split(":", 2)
    return verification_id, int(number), service_sid


async def get_latest(store: Store, service_sid: str, e164: str) -> str | None:
    raw = await store.guarded(lambda: store.client.get(keyspace.v2_latest(service_sid, e164, store.partitions)))
    return _text(raw) if raw is not None else None
