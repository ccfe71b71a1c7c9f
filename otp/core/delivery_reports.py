"""What follows a delivery report (a status callback, a poll): the time-to-delivered histogram and
the opt-out a 21610 marks. One place, so the callback and the poll can't disagree."""

from __future__ import annotations

from dataclasses import dataclass

from otp import delivery_errors
from otp.core import metrics, optouts
from otp.core.keyring import Keyring
from otp.model import DeliveryUpdate
from otp.storage.store import Store


@dataclass(frozen=True)
class ReportRules:
    """What the follow-up needs besides the report: the shell builds it from its settings."""

    keyring: Keyring
    opt_out_ttl: float
    retention_ms: int


async def after_report(
    store: Store,
    rules: ReportRules,
    update: DeliveryUpdate,
    *,
    partition: int,
    verification_id: str,
    error_code: int | str | None,
    now_ms: int,
    source: str,
) -> None:
    if not update.moved:
        return  # a duplicate or a step back: counted when it first moved the send
    if update.status == "delivered":
        metrics.TIME_TO_DELIVERED.labels(update.country or "unknown").observe(update.elapsed_ms / 1000)
    if not delivery_errors.opts_out(error_code):
        return
    # The number is on the verification while it is retained (the report names only the send).
    found = await store.fetch(
        partition=partition, now_ms=now_ms, verification_id=verification_id, retention_ms=rules.retention_ms
    )
    if found.get("to"):
        await optouts.record(
            store,
            rules.keyring,
            found["to"],
            now_ms=now_ms,
            ttl=rules.opt_out_ttl,
            source=source,
            verification_id=verification_id,
            scope=update.scope,
        )
        metrics.OPTED_OUT.labels(source).inc()
