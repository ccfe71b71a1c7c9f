"""The budgets' own reads and writes beside budget.lua: a tenant's limit, today's figures."""

from __future__ import annotations

from collections.abc import Sequence

from otp.storage.records import text
from otp.storage.store import Store


async def set_limit(store: Store, key: str, limit: int | None) -> None:
    """A tenant's daily budget in millionths (None: no budget of its own)."""
    await store.guarded(lambda: store.client.delete(key) if limit is None else store.client.set(key, limit))


async def figures(store: Store, days: Sequence[str], limits: Sequence[str]) -> tuple[list[int], list[int | None]]:
    """The spend of each day counter and the value of each limit key, in one round trip (each key
    its own slot on a cluster: the client's pipeline splits it by node)."""

    async def read() -> list[object]:
        async with store.client.pipeline(transaction=False) as pipe:
            for key in days:
                pipe.hget(key, "s")
            for key in limits:
                pipe.get(key)
            return list(await pipe.execute())

    found = await store.guarded(read)
    spent = [int(text(v)) if v is not None else 0 for v in found[: len(days)]]
    own = [int(text(v)) if v is not None else None for v in found[len(days) :]]
    return spent, own
