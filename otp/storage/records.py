"""Script replies decoded into the kernel's domain records (otp.model): the one reader of the
compact field names the Lua scripts write (``c``, ``sa:<n>``, ``sid:<n>`` …)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from otp.model import AttemptOutcome, DeliveryUpdate, Job, QueuedEvent, SendAttempt, StartOutcome, Verification


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def flat_to_dict(flat: Sequence[Any]) -> dict[str, str]:
    items = [text(v) for v in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


def verification(record: dict[str, str]) -> Verification:
    """A verification hash as the scripts hand it out (lib.lua's ``record_of`` adds the id, which
    the hash no longer holds: a raw HGETALL of a newer record reads with an empty id)."""
    created_ms = int(record["c"])
    attempts = [
        send_attempt(int(name[3:]), raw, record, created_ms) for name, raw in record.items() if name.startswith("sa:")
    ]
    attempts.sort(key=lambda a: a.number)
    return Verification(
        id=record.get("id", ""),
        to=record["to"],
        channel=record.get("ch", "sms"),
        locale=record.get("loc", ""),
        status=record["st"],
        created_at=created_ms / 1000,
        updated_at=int(record["u"]) / 1000,
        expires_at=int(record["x"]) / 1000,
        attempts=int(record["a"]),
        max_attempts=int(record["ma"]),
        sends=int(record["s"]),
        key_id=record.get("key", ""),
        approved_at=int(record["aa"]) / 1000 if "aa" in record else None,
        send_attempts=attempts,
        tags=json.loads(record["tg"]) if "tg" in record else {},
        line_type=record.get("lt", "").partition("|")[0],
        carrier=record.get("lt", "").partition("|")[2],
    )


def send_attempt(n: int, raw: str, record: dict[str, str], created_ms: int) -> SendAttempt:
    """Read the compact fields lib.lua keeps per send (``sa:n``, ``sid:n``, ``pr:n``, ``em:n``, ``le:n``,
    ``sn:n``, ``qw:n``)."""
    at, status, updated, error_code, tries, segments, sent_at = (raw.split("|") + [""] * 7)[:7]
    delivery: dict[str, Any] = {"status": status, "updated_at": created_ms + int(updated or 0)}
    if error_code:
        delivery["error_code"] = int(error_code) if error_code.isdigit() else error_code
    if f"em:{n}" in record:
        delivery["error_message"] = record[f"em:{n}"]
    price, _, unit = record.get(f"pr:{n}", "").partition("|")
    country, _, rest = record.get(f"dx:{n}", "").partition("|")
    sender = rest.partition("|")[0]
    return SendAttempt(
        number=n,
        at=(created_ms + int(at or 0)) / 1000,
        channel="sms",
        delivery=delivery,
        message_sid=record.get(f"sid:{n}"),
        segments=int(segments) if segments else None,
        price=price or None,
        price_unit=unit or None,
        sent_at=(created_ms + int(sent_at)) / 1000 if sent_at else None,
        tries=int(tries or 0),
        last_error=record.get(f"le:{n}"),
        timeline=timeline((created_ms + int(at or 0)), record.get(f"tl:{n}", "")),
        country=country or None,
        # The pool's sender (sn), else the one the send went out with (dx).
        sender=record.get(f"sn:{n}") or sender or None,
        queued_at_sender=int(record[f"qw:{n}"]) / 1000 if f"qw:{n}" in record else None,
    )


def timeline(at_ms: int, raw: str) -> dict[str, int]:
    """``tl:<n>`` (``sent=120,delivered=2400``: ms after the attempt's time) as epoch ms."""
    out: dict[str, int] = {}
    for part in raw.split(","):
        state, _, offset = part.partition("=")
        if state and offset.isdigit():
            out[state] = at_ms + int(offset)
    return out


def delivery_update(reply: Any) -> DeliveryUpdate:
    """delivery.lua's reply (a bare status from a script older than the timeline reads as one)."""
    if not isinstance(reply, list | tuple):
        return DeliveryUpdate(text(reply))
    status, moved, elapsed, country, scope = [*reply, 0, 0, "", ""][:5]
    return DeliveryUpdate(text(status), bool(int(moved)), int(elapsed), text(country), text(scope))


def start_outcome(reply: Sequence[Any]) -> StartOutcome:
    mode, flat, rule, reason, retry_ms, foreign = reply
    return StartOutcome(text(mode), flat_to_dict(flat), text(rule), text(reason), int(retry_ms), bool(foreign))


def attempt_outcome(reply: Sequence[Any]) -> AttemptOutcome:
    outcome = text(reply[0])
    if outcome == "not_found":
        return AttemptOutcome(outcome)
    retry_ms = int(reply[6]) if len(reply) > 6 else 0
    record = flat_to_dict(reply[5])
    # Only a counted attempt hands out the code hashes, to be compared.
    hashes = {k: v for k, v in record.items() if k.startswith("h:")} if outcome == "counted" else {}
    return AttemptOutcome(
        outcome, text(reply[1]), int(reply[2]), int(reply[3]), hashes, record, retry_ms, text(reply[4])
    )


def job(row: Sequence[Any], partition: int) -> Job:
    return Job(
        job_id=text(row[0]),
        verification_id=text(row[1]),
        send_number=int(row[2]),
        to=text(row[3]),
        sealed_code=text(row[4]),
        locale=text(row[5]),
        tries=int(row[6]),
        expires_ms=int(row[7]),
        partition=partition,
        app_name=text(row[8]) if len(row) > 8 else "",
        lease_deadline_ms=int(row[9]) if len(row) > 9 else 0,
        app_hash=text(row[10]) if len(row) > 10 else "",
        template=text(row[11]) if len(row) > 11 else "",
        substitutions=json.loads(text(row[12])) if len(row) > 12 and row[12] else {},
        messaging_service_sid=text(row[13]) if len(row) > 13 else "",
        sender_slot=text(row[14]) if len(row) > 14 else "",
    )


def poll_due(row: Sequence[Any]) -> tuple[str, int, str, int]:
    """(verification id, send number, message sid, sent at ms)."""
    return text(row[0]), int(row[1]), text(row[2]), int(float(text(row[3])))


def queued_event(row: Sequence[Any], partition: int) -> QueuedEvent:
    """One row of event_claim.lua."""
    f = [text(v) for v in row]
    return QueuedEvent(
        event_sid=f[0],
        event_type=f[1],
        verification_id=f[2],
        send_number=int(f[3]),
        at_ms=int(f[4]),
        owner=f[5],
        error_code=f[6],
        done=tuple(sid for sid in f[7].split(",") if sid),
        tries=int(f[8]),
        lease_deadline_ms=int(f[9]),
        to=f[10],
        channel=f[11],
        tags=f[12],
        status=f[13],
        first_try_ms=int(f[14]),
        partition=partition,
    )
