"""Who is attacking: destinations (prefixes, countries), sources (end-user IPs, API keys, /v2
services) and rules ranked by **refused** attempts over a window, each with its allowed starts,
approvals, first and last seen, and its refusals per minute (the 1h and 6h windows) or per hour.

Read from the counters ``audit()`` writes beside the audit stream (lua/lib.lua), never from the
stream itself: the minute counters for the short windows; for the long ones the hourly refusal
tallies (a hash of their own, small unless something is under attack) to rank, then the top rows'
counts from the refusal, source and destination hashes, and the last 6 hours' minute counters to
put first and last seen to the minute where they fall in them (to the hour before that).

Two passes, like the fraud ranking: the first sums every ``refused@…`` field (``incidents.lua
rank``), the second reads only the top rows' fields, per time slot (``series``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otp import audit_fields as names
from otp.core.services import SERVICE_SID
from otp.core.stats import HOUR_MS, MINUTE_MS, WINDOWS, Window, window_slots
from otp.storage import keys as keyspace
from otp.storage.store import Store

TOP = 10
REFUSED = "refused@"
# Minutes the minute counters keep for certain (keys.MINUTE_COUNTER_TTL_MS less its margin).
FINE_MINUTES = 360


@dataclass(frozen=True)
class Kind:
    """One table: its tallies' field names (``allowed``/``approved`` None for rules), where a long
    window finds the allowed ones (``agg`` the destination tallies, ``aggs`` the sources'), and the
    audit filter a row links to."""

    name: str
    title: str
    refused: str
    allowed: str | None
    approved: str | None
    hourly: str
    param: str


KINDS = (
    Kind(
        "prefix", "Prefixes", names.REFUSED_TO_PREFIX, names.SENT_TO_PREFIX, names.APPROVED_TO_PREFIX, "agg", "prefix"
    ),
    Kind(
        "country",
        "Countries",
        names.REFUSED_TO_COUNTRY,
        names.SENT_TO_COUNTRY,
        names.APPROVED_TO_COUNTRY,
        "agg",
        "country",
    ),
    Kind("ip", "IPs", names.REFUSED_FROM_IP, names.SENT_FROM_IP, names.APPROVED_FROM_IP, "aggs", "ip"),
    Kind("key", "API keys", names.REFUSED_BY_KEY, names.SENT_BY_KEY, names.APPROVED_BY_KEY, "aggs", "key"),
    # /v2 services are audited as the key of their verifications: the same tallies, told apart by sid.
    Kind("service", "/v2 services", names.REFUSED_BY_KEY, names.SENT_BY_KEY, names.APPROVED_BY_KEY, "aggs", "service"),
    Kind("rule", "Rules", names.REFUSED_BY_RULE, None, None, "aggr", "rule"),
)
BY_NAME = {kind.name: kind for kind in KINDS}


@dataclass(frozen=True)
class Seen:
    """A time and whether it is to the minute (else to the hour: it began before the minute
    counters' reach)."""

    ms: int
    exact: bool


@dataclass(frozen=True)
class Row:
    kind: str
    value: str
    refused: int
    allowed: int | None  # starts let through; None for a rule (every allowed start passed them all)
    approved: int | None
    first: Seen | None
    last: Seen | None
    series: list[int]  # refused per slot of the window

    @property
    def conversion(self) -> float | None:
        if not self.allowed or self.approved is None:
            return None
        return round(self.approved / self.allowed, 4)

    def audit_filter(self) -> dict[str, str]:
        """The audit log's filter for this row (its parameter and value)."""
        return {BY_NAME[self.kind].param: self.value}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": self.value,
            "refused": self.refused,
            "allowed": self.allowed,
            "approved": self.approved,
            "conversion_rate": self.conversion,
            "first_seen_ms": self.first.ms if self.first else None,
            "last_seen_ms": self.last.ms if self.last else None,
        }


@dataclass(frozen=True)
class Incidents:
    window: Window
    now_ms: int
    slots: list[int]  # minutes or hours since the epoch
    slot_ms: int
    tables: dict[str, list[Row]]

    @property
    def first_ms(self) -> int:
        return self.slots[0] * self.slot_ms


def _is_service(value: str) -> bool:
    return bool(SERVICE_SID.match(value))


def _kind_of(field: str) -> tuple[str, str] | None:
    """``refused@key:VA…`` → ("service", "VA…"); the kind and value of a refusal tally."""
    for kind in KINDS:
        if kind.name == "service":
            continue
        if field.startswith(kind.refused):
            value = field[len(kind.refused) :]
            if kind.name == "key" and _is_service(value):
                return "service", value
            return kind.name, value
    return None


# The ranking reads every refusal tally of the window (HGETALL into Lua), and a client can fill each
# hash to its cap (keys.REFUSAL_TALLIES_PER_HOUR, …_PER_MINUTE) with refusals from fresh IPs: so one
# call, and one round trip, reads at most this many hashes (~7 ms of Redis at the caps), and other
# clients' commands run between them. Sums add up across calls.
RANK_HOURS_PER_CALL = 8
RANK_MINUTES_PER_CALL = 24
SERIES_SLOTS_PER_CALL = 24


async def _rank(store: Store, lists: Sequence[Sequence[str]], by_minute: bool) -> Counter[str]:
    step = RANK_MINUTES_PER_CALL if by_minute else RANK_HOURS_PER_CALL
    chunks = [keys[i : i + step] for keys in lists for i in range(0, len(keys), step)]
    sums: Counter[str] = Counter()
    replies = await store.counter_script("incidents", chunks, ["rank", REFUSED], by_minute=by_minute, round_keys=step)
    for reply in replies:
        sums.update({str(k): int(v) for k, v in (reply or {}).items()})
    return sums


async def _series(
    store: Store, lists: Sequence[Sequence[str]], wanted: Sequence[Sequence[str]], by_minute: bool
) -> list[Counter[str]]:
    """Per slot, the wanted fields summed over the partitions; ``wanted``: the fields of each of a
    slot's hashes (its keys come in that order). SERIES_SLOTS_PER_CALL slots a call and a round
    trip: a 6-hour window asks up to ~150 fields of each of 360 minute hashes."""
    per_slot = len(wanted)
    step = SERIES_SLOTS_PER_CALL * per_slot
    chunks, offsets = [], []
    for keys in lists:
        for i in range(0, len(keys), step):
            chunks.append(keys[i : i + step])
            offsets.append(i // per_slot)
    merged: list[Counter[str]] = []
    args = ["series", str(per_slot), json.dumps([list(fields) for fields in wanted])]
    replies = await store.counter_script("incidents", chunks, args, by_minute=by_minute, round_keys=step)
    for offset, reply in zip(offsets, replies, strict=True):
        for i, row in enumerate(reply if isinstance(reply, list) else [], start=offset):
            while len(merged) <= i:
                merged.append(Counter())
            merged[i].update({str(k): int(v) for k, v in (row or {}).items()})
    return merged


def _minute_keys(store: Store, minutes: Sequence[int]) -> list[list[str]]:
    return [[keyspace.audit_minute_counter_of(p, m) for m in minutes] for p in range(store.partitions)]


HOURLY_KEYS = {
    "agg": keyspace.audit_counter_of_hour,
    "aggs": keyspace.audit_source_counter_of_hour,
    "aggr": keyspace.audit_refusal_counter_of_hour,
}


def _held_by(wanted: Sequence[str], hourly: str) -> list[str]:
    """The wanted fields an hourly hash holds: refusals in ``aggr``, the sources' starts and
    approvals in ``aggs``, the destinations' in ``agg``."""
    refusal = [f for f in wanted if f.startswith(REFUSED)]
    if hourly == "aggr":
        return refusal
    sources = {k.allowed for k in KINDS if k.hourly == "aggs"} | {k.approved for k in KINDS if k.hourly == "aggs"}
    held = [f for f in wanted if f not in refusal and any(f.startswith(str(name)) for name in sources)]
    return held if hourly == "aggs" else [f for f in wanted if f not in refusal and f not in held]


def _fields(kind: Kind, value: str) -> list[str]:
    return [f"{name}{value}" for name in (kind.refused, kind.allowed, kind.approved) if name]


def _activity(kind: Kind, value: str, counts: Counter[str]) -> int:
    """Attempts of a row in one slot: its refusals and its allowed starts."""
    return sum(counts[f"{name}{value}"] for name in (kind.refused, kind.allowed) if name)


def _first_last(
    kind: Kind,
    value: str,
    slots: Sequence[int],
    per_slot: Sequence[Counter[str]],
    slot_ms: int,
    fine: dict[int, Counter[str]] | None,
) -> tuple[Seen | None, Seen | None]:
    """When a row was first and last active in the window. ``fine`` (a long window): the minute
    counters of the last hours, which put a time to the minute wherever they hold all of its
    hour's attempts."""
    active = [(slot, n) for slot, counts in zip(slots, per_slot, strict=False) if (n := _activity(kind, value, counts))]
    if not active:
        return None, None
    if fine is None:
        return Seen(active[0][0] * slot_ms, True), Seen(active[-1][0] * slot_ms, True)

    def refined(hour: int, hourly: int, last: bool) -> Seen:
        minutes = [m for m in range(hour * 60, hour * 60 + 60) if m in fine and _activity(kind, value, fine[m])]
        if minutes and sum(_activity(kind, value, fine[m]) for m in minutes) == hourly:
            return Seen((minutes[-1] if last else minutes[0]) * MINUTE_MS, True)
        return Seen(hour * HOUR_MS, False)

    (first_hour, first_n), (last_hour, last_n) = active[0], active[-1]
    return refined(first_hour, first_n, False), refined(last_hour, last_n, True)


async def incidents(store: Store, win: Window, now_ms: int, *, top: int = TOP) -> Incidents:
    slots = window_slots(win, now_ms)
    by_minute = bool(win.minutes)
    slot_ms = MINUTE_MS if by_minute else HOUR_MS
    if by_minute:
        rank_lists = _minute_keys(store, slots)
    else:
        rank_lists = [[keyspace.audit_refusal_counter_of_hour(p, h) for h in slots] for p in range(store.partitions)]
    refused = await _rank(store, rank_lists, by_minute)

    ranked: dict[str, Counter[str]] = {kind.name: Counter() for kind in KINDS}
    for field_name, n in refused.items():
        found = _kind_of(field_name)
        if found and n > 0:
            ranked[found[0]][found[1]] += n
    chosen = {
        name: [value for value, _ in sorted(c.items(), key=lambda i: (-i[1], i[0]))[:top]] for name, c in ranked.items()
    }
    wanted = sorted({f for name, values in chosen.items() for v in values for f in _fields(BY_NAME[name], v)})

    fine: dict[int, Counter[str]] | None = None
    if not wanted:
        per_slot: list[Counter[str]] = [Counter() for _ in slots]
    elif by_minute:
        per_slot = await _series(store, rank_lists, [wanted], True)
    else:
        # Slot by slot, the hour's destination, source and refusal hashes, each asked for its own.
        order = ("agg", "aggs", "aggr")
        lists = [[HOURLY_KEYS[h](p, hour) for hour in slots for h in order] for p in range(store.partitions)]
        per_slot = await _series(store, lists, [_held_by(wanted, h) for h in order], False)
        last_minute = now_ms // MINUTE_MS
        minutes = list(range(last_minute - FINE_MINUTES + 1, last_minute + 1))
        fine = dict(zip(minutes, await _series(store, _minute_keys(store, minutes), [wanted], True), strict=False))
    per_slot += [Counter() for _ in range(len(slots) - len(per_slot))]

    totals: Counter[str] = Counter()
    for counts in per_slot:
        totals.update(counts)
    tables: dict[str, list[Row]] = {}
    for kind in KINDS:
        rows = []
        for value in chosen[kind.name]:
            first, last = _first_last(kind, value, slots, per_slot, slot_ms, fine)
            rows.append(
                Row(
                    kind.name,
                    value,
                    totals[kind.refused + value],
                    totals[kind.allowed + value] if kind.allowed else None,
                    totals[kind.approved + value] if kind.approved else None,
                    first,
                    last,
                    [counts[kind.refused + value] for counts in per_slot],
                )
            )
        tables[kind.name] = rows
    return Incidents(win, now_ms, slots, slot_ms, tables)


__all__ = ["BY_NAME", "KINDS", "WINDOWS", "Incidents", "Kind", "Row", "Seen", "incidents"]
