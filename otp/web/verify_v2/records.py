"""The records behind /v2 (its services, the lookups written at each send, the audit log), reached
through the Store: the handlers hold a Store, never a Redis client.

This is the one seam between the /v2 surface and storage. Today the service records
(``otp.core.services``) and the audit read (``otp.core.audit.read_page``) still take the Store's
client; once they take the Store itself, each function here becomes a plain call of theirs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from otp.core import audit, services
from otp.core.attempts import PageReader
from otp.core.services import Service
from otp.storage.store import Store


async def get_service(store: Store, sid: str) -> Service | None:
    return await services.get(store.client, sid)


async def create_service(store: Store, account_sid: str, params: Mapping[str, str], *, now: float) -> Service:
    return await services.create(store.client, account_sid, params, now=now)


async def update_service(store: Store, service: Service, params: Mapping[str, str], *, now: float) -> Service:
    return await services.update(store.client, service, params, now=now)


async def delete_service(store: Store, service: Service) -> None:
    await services.delete(store.client, service)


async def list_services(store: Store, account_sid: str, *, offset: int, count: int) -> tuple[list[Service], int]:
    return await services.list_for_account(store.client, account_sid, offset=offset, count=count)


async def service_sids(store: Store, account_sid: str) -> frozenset[str]:
    return await services.sids_for_account(store.client, account_sid)


async def remember_send(
    store: Store, *, service_sid: str, verification_id: str, send_number: int, e164: str, ttl_ms: int
) -> None:
    await services.remember_send(
        store.client,
        store.partitions,
        service_sid=service_sid,
        verification_id=verification_id,
        send_number=send_number,
        e164=e164,
        ttl_ms=ttl_ms,
    )


async def find_attempt(store: Store, sid: str) -> tuple[str, int, str] | None:
    return await services.find_attempt(store.client, store.partitions, sid)


async def latest_verification(store: Store, service_sid: str, e164: str) -> str | None:
    return await services.latest_verification(store.client, store.partitions, service_sid, e164)


def audit_pages(store: Store) -> PageReader:
    reader: PageReader = functools.partial(audit.read_page, store.client, store.partitions)
    return reader
