"""Opt-outs: a number whose user replied STOP is refused at once, before any cost.

Twilio answers a send to a number that replied STOP to the sender with 21610 (at the create, or as
the send's error in a callback or a poll); from then on every SMS to it would fail the same way.
So a 21610 marks the number (its keyed hash, for ``OTP_OPT_OUT_TTL``), and a start for a marked
number is refused with 403 ``recipient_opted_out`` by a read before the admission (not in its round
trip: a count given back after would refuse concurrent starts meanwhile), so no limit or budget
counts it, and no code is hashed or SMS queued. The safe list
does not clear it: the safe list waives the fraud rules, and an opt-out is the user's own word,
which Twilio enforces anyway. An admin clears it (the user texted START):
``DELETE /v1/optouts/{number}`` or ``otp optouts clear``.

A STOP holds for the sender it was sent to, so the mark is per sender scope: "" for the operator's
own sender(s), which every tenant without a MessagingConfiguration shares (Twilio would refuse
them all alike), or the Messaging Service of a /v2 service's MessagingConfiguration. A STOP to one
tenant's own Messaging Service never refuses another tenant's sends.
"""

from __future__ import annotations

from typing import Any

from otp import delivery_errors
from otp.audit_fields import Event
from otp.core import events
from otp.core.keyring import Keyring
from otp.core.phone import mask_in_record, parse_e164
from otp.errors import Forbidden
from otp.storage import keys as keyspace
from otp.storage import optouts as records
from otp.storage.store import Read, Store

REASON = "recipient_opted_out"
RULE = "opt_out"
DEFAULT_TTL = 365 * 86_400.0


def refusal() -> Forbidden:
    return Forbidden(
        "this number replied STOP to the sender (Twilio 21610); no code is sent until it opts back "
        "in by texting START and an admin clears the opt-out",
        code=REASON,
        field="to",
        details={"rule": RULE},
    )


def _where(store: Store, keyring: Keyring, e164: str) -> tuple[int, str]:
    return keyspace.partition_of_number(e164, store.partitions), keyring.number_hash(e164)


async def opted_out(store: Store, keyring: Keyring, e164: str, scope: str = "") -> bool:
    return await marked_at(store, keyring, e164, scope) is not None


def opted_out_read(store: Store, keyring: Keyring, e164: str, scope: str = "") -> Read:
    """`opted_out` as a read for `Store.run_many`; `opted_out_of` decodes its reply."""
    partition, number_hash = _where(store, keyring, e164)
    return records.marked_read(partition, number_hash, scope)


def opted_out_of(reply: Any) -> bool:
    return records.marked_at_of(reply) is not None


async def marked_at(store: Store, keyring: Keyring, e164: str, scope: str = "") -> int | None:
    partition, number_hash = _where(store, keyring, e164)
    return await records.marked_at(store, partition, number_hash, scope)


async def record(
    store: Store,
    keyring: Keyring,
    e164: str,
    *,
    now_ms: int,
    ttl: float,
    source: str,
    verification_id: str = "",
    scope: str = "",
) -> None:
    """Marks ``e164`` opted out of ``scope`` and writes the audit event (``source``: send, callback
    or poll)."""
    partition, number_hash = _where(store, keyring, e164)
    await records.mark(store, partition, number_hash, scope, now_ms, int(ttl * 1000))
    phone = parse_e164(e164)
    fields = {
        "event": Event.OPTED_OUT,
        "to": mask_in_record(e164),
        "nh": number_hash,
        "country": phone.country,
        "vid": verification_id,
        "source": source,
        "error_code": delivery_errors.OPT_OUT,
        "sender_scope": scope,
    }
    await store.audit_event(partition, now_ms, fields)
    events.emit(Event.OPTED_OUT, now_ms / 1000, **{k: v for k, v in fields.items() if k != "event"})


async def clear(store: Store, keyring: Keyring, e164: str, scope: str = "") -> bool:
    partition, number_hash = _where(store, keyring, e164)
    return await records.clear(store, partition, number_hash, scope)
