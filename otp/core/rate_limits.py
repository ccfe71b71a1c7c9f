"""Verify v2 *Service Rate Limits* and their *Buckets* (Twilio's programmable rate limits).

A rate limit names a key a start passes in ``RateLimits={"<unique name>": "<value>"}``; each of
its buckets allows at most ``Max`` sends per ``Interval`` seconds for one value. The records are
configuration beside their service (``otp.storage.accounts``: one hash in the {cfg} slot, edited
atomically by rate_limits.lua), deleted with it. The counting is the policy's
(``otp.core.policy``, buckets.lua): every bucket of a rate limit decides in the same atomic step
as the start's other limits.

Bounds, so no tenant grows Redis without limit: at most ``MAX_RATE_LIMITS`` per service (Twilio
answers 60207 at its own, unpublished, cap) and ``MAX_BUCKETS`` per rate limit (60210), one per
interval (60211); ``Max`` at most ``MAX_COUNT``, which also bounds each value's log, and
``Interval`` at most ``MAX_INTERVAL``, its lifetime.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from otp.core import services
from otp.core.services import Service
from otp.core.validators import whole_number
from otp.errors import InvalidInput, NotFound
from otp.storage import accounts
from otp.storage.store import Store

# A unique name, and each key of a start's RateLimits: Twilio's 60209 allows letters, digits and
# - _ . ; 64 characters at most keep a name (it goes into audit records) short.
UNIQUE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
UNIQUE_NAME_RULE: Final = "1 to 64 letters, digits or _ . -"
RATE_LIMIT_SID: Final = re.compile(r"RK[0-9a-fA-F]{32}")
BUCKET_SID: Final = re.compile(r"BL[0-9a-fA-F]{32}")
MAX_RATE_LIMITS: Final = 100
MAX_BUCKETS: Final = 5
MAX_DESCRIPTION: Final = 256
MAX_COUNT: Final = 10_000
MAX_INTERVAL: Final = 30 * 86_400

# Codes of the refusals (Twilio's in otp.web.verify_v2.errors).
UNIQUE_NAME_INVALID: Final = "unique_name_invalid"
RATE_LIMIT_EXISTS: Final = "rate_limit_exists"
TOO_MANY_RATE_LIMITS: Final = "too_many_rate_limits"
TOO_MANY_BUCKETS: Final = "too_many_buckets"
BUCKET_INTERVAL_EXISTS: Final = "bucket_interval_exists"


@dataclass(frozen=True)
class Bucket:
    sid: str
    max: int
    interval: int  # seconds
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class RateLimit:
    sid: str
    unique_name: str
    description: str | None
    created_at: float
    updated_at: float
    buckets: tuple[Bucket, ...]

    def bucket(self, sid: str) -> Bucket | None:
        return next((b for b in self.buckets if b.sid == sid), None)


def is_unique_name(name: str) -> bool:
    return UNIQUE_NAME.fullmatch(name) is not None  # whole: "$" lets a trailing newline through


# -- parameters ------------------------------------------------------------------------------------


def unique_name(form: Mapping[str, str]) -> str:
    raw = form.get("UniqueName", "")
    if not raw.strip():
        raise InvalidInput("is required", field="UniqueName", code="missing_field")
    if not is_unique_name(raw):
        raise InvalidInput(f"must be {UNIQUE_NAME_RULE}", field="UniqueName", code=UNIQUE_NAME_INVALID)
    return raw


def description(form: Mapping[str, str]) -> str | None:
    raw = form.get("Description")
    if raw is not None and len(raw) > MAX_DESCRIPTION:
        raise InvalidInput(f"is longer than {MAX_DESCRIPTION} characters", field="Description")
    return raw


def bucket_params(form: Mapping[str, str], *, creating: bool) -> dict[str, int]:
    """``Max`` and ``Interval`` of a bucket form (both required to create one)."""
    found: dict[str, int] = {}
    for name, key, high in (("Max", "max", MAX_COUNT), ("Interval", "interval", MAX_INTERVAL)):
        raw = form.get(name, "").strip()
        if not raw:
            if creating:
                raise InvalidInput("is required", field=name, code="missing_field")
            continue
        found[key] = whole_number(raw, field=name, low=1, high=high)
    return found


# -- records ---------------------------------------------------------------------------------------


def _bucket(raw: Mapping[str, Any]) -> Bucket:
    return Bucket(raw["sid"], int(raw["max"]), int(raw["interval"]), raw["created"] / 1000, raw["updated"] / 1000)


def _rate_limit(raw: Mapping[str, Any]) -> RateLimit:
    # An empty Lua table is encoded as {} (cjson can't tell it from an empty list): no buckets.
    buckets = raw.get("buckets") or []
    return RateLimit(
        sid=raw["sid"],
        unique_name=raw["unique_name"],
        description=raw.get("description"),
        created_at=raw["created"] / 1000,
        updated_at=raw["updated"] / 1000,
        buckets=tuple(_bucket(b) for b in buckets),
    )


def _not_found(ref: str, field: str = "Sid") -> NotFound:
    return NotFound(f"no rate limit {ref} in this service", field=field)


async def _op(store: Store, service: Service, op: str, fields: Mapping[str, Any], now: float) -> tuple[str, Any]:
    return await accounts.rate_limit_op(store, service.sid, op, fields, now_ms=int(now * 1000))


async def create(store: Store, service: Service, name: str, text: str | None, *, now: float) -> RateLimit:
    fields: dict[str, Any] = {"sid": "RK" + secrets.token_hex(16), "unique_name": name, "most": MAX_RATE_LIMITS}
    if text is not None:
        fields["description"] = text
    status, record = await _op(store, service, "create", fields, now)
    if status == "exists":
        raise InvalidInput(
            f"a rate limit named {name} exists in this service", field="UniqueName", code=RATE_LIMIT_EXISTS
        )
    if status == "full":
        raise InvalidInput(
            f"a service has at most {MAX_RATE_LIMITS} rate limits: delete one first",
            field="UniqueName",
            code=TOO_MANY_RATE_LIMITS,
        )
    return _rate_limit(record)


async def _on(store: Store, service: Service, op: str, ref: str, fields: Mapping[str, Any], now: float) -> Any:
    """An operation on the rate limit ``ref`` (its sid, or as Twilio allows, its unique name)."""
    if not (RATE_LIMIT_SID.fullmatch(ref) or is_unique_name(ref)):
        raise _not_found(ref)
    status, record = await _op(store, service, op, {**fields, "ref": ref}, now)
    if status == "none":
        raise _not_found(ref)
    return status, record


async def get(store: Store, service: Service, ref: str, *, now: float) -> RateLimit:
    _, record = await _on(store, service, "get", ref, {}, now)
    return _rate_limit(record)


async def update(store: Store, service: Service, ref: str, text: str | None, *, now: float) -> RateLimit:
    _, record = await _on(store, service, "update", ref, {} if text is None else {"description": text}, now)
    return _rate_limit(record)


async def delete(store: Store, service: Service, ref: str, *, now: float) -> None:
    """The rate limit and its buckets; the sends its buckets counted run out with their logs."""
    await _on(store, service, "delete", ref, {}, now)


async def page(store: Store, service: Service, *, offset: int, count: int) -> tuple[list[RateLimit], int]:
    """One page of the service's rate limits, oldest first, and how many it has in all."""
    records = sorted(await accounts.rate_limit_records(store, service.sid), key=lambda r: int(r.get("seq", 0)))
    return [_rate_limit(r) for r in records[offset : offset + count]], len(records)


def _bucket_of(record: Any, sid: str, ref: str) -> tuple[RateLimit, Bucket]:
    """The rate limit of a record and its bucket ``sid`` (a bucket's answer names both)."""
    limit = _rate_limit(record) if record is not None else None
    found = limit.bucket(sid) if limit is not None else None
    if limit is None or found is None:
        raise _no_bucket(sid, ref)
    return limit, found


def _interval_taken(interval: int | None) -> InvalidInput:
    return InvalidInput(
        f"this rate limit has a bucket of {interval} seconds already: update that one",
        field="Interval",
        code=BUCKET_INTERVAL_EXISTS,
    )


async def create_bucket(
    store: Store, service: Service, ref: str, params: Mapping[str, int], *, now: float
) -> tuple[RateLimit, Bucket]:
    sid = "BL" + secrets.token_hex(16)
    status, record = await _on(store, service, "bucket_create", ref, {**params, "sid": sid, "most": MAX_BUCKETS}, now)
    if status == "full":
        raise InvalidInput(
            f"a rate limit has at most {MAX_BUCKETS} buckets: delete or update one",
            field="Interval",
            code=TOO_MANY_BUCKETS,
        )
    if status == "exists":
        raise _interval_taken(params.get("interval"))
    return _bucket_of(record, sid, ref)


def _no_bucket(sid: str, ref: str) -> NotFound:
    return NotFound(f"no bucket {sid} in rate limit {ref}", field="Sid")


def _known_bucket(sid: str, ref: str) -> None:
    if not BUCKET_SID.fullmatch(sid):
        raise _no_bucket(sid, ref)


async def get_bucket(store: Store, service: Service, ref: str, sid: str, *, now: float) -> tuple[RateLimit, Bucket]:
    _known_bucket(sid, ref)
    return _bucket_of((await _on(store, service, "get", ref, {}, now))[1], sid, ref)


async def update_bucket(
    store: Store, service: Service, ref: str, sid: str, params: Mapping[str, int], *, now: float
) -> tuple[RateLimit, Bucket]:
    _known_bucket(sid, ref)
    status, record = await _on(store, service, "bucket_update", ref, {**params, "bucket": sid}, now)
    if status == "exists":
        raise _interval_taken(params.get("interval"))
    return _bucket_of(record, sid, ref)


async def delete_bucket(store: Store, service: Service, ref: str, sid: str, *, now: float) -> None:
    _known_bucket(sid, ref)
    status, _ = await _on(store, service, "bucket_delete", ref, {"bucket": sid}, now)
    if status == "no_bucket":
        raise _no_bucket(sid, ref)


# -- a start ---------------------------------------------------------------------------------------


async def service_with(store: Store, sid: str, names: Iterable[str]) -> tuple[Service | None, dict[str, RateLimit]]:
    """A service and its rate limits that ``names`` names, in one read: what a start needs."""
    if not services.SERVICE_SID.match(sid):
        return None, {}
    wanted = sorted(set(names))
    fields, records = await accounts.service_with_rate_limits(store, sid, wanted)
    if not fields:
        return None, {}
    return services.from_record(sid, fields), {name: _rate_limit(r) for name, r in records.items()}
