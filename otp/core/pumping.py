"""SMS-pumping defence: the scopes a send counts in, and the decision from their counts.

A send counts in six scopes (each a ``fraud.lua`` window in a slot of its own, read in one round
trip): the tenant's destination **prefix** (the number without its last 4 digits; per tenant, so
one tenant's sends never block another's users or tell it whom they approved), the **range**
(without its last 6) and **country** (or the calling code of a number of no country) across
tenants, the tenant's end-user **IP** (per /64 on IPv6) when given, and the **tenant** (API key or
Verify service) in all and per country.

The decision, from committed counts only (see ``fraud.lua``):

- A number the tenant saw approved by a code within ``known_good_days`` (a keyed hash per number,
  in the tenant's prefix scope) passes every pumping rule, until it has had ``KNOWN_GOOD_SENDS``
  sends without a new approval: a number bought once doesn't pump for a month.
- A prefix is **proven** when its week converts like the tenant's own traffic: the lower bound of
  its conversion (Wilson, 90 %) reaches ``proven_share`` of the tenant's conversion on proven
  destinations. Approving a third of one's own codes doesn't prove a range.
- The tenant's prefix refuses any other number once its unverified verifications pass its
  threshold (the narrowest scope); the IP, the range and the country judge and refuse only
  verifications to unproven prefixes, so an attack on a country doesn't refuse its real users, nor
  users behind one address that isn't pumping.
- Sends to unproven prefixes that nobody approves spend a **budget** per country and per tenant
  (a floor, plus a share of the approvals there), which bounds low-and-slow attacks spread over
  many prefixes and countries: each unproven send that isn't approved takes one, each approval
  gives it back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otp.core.ipaddr import ip_scope
from otp.core.phone import Phone
from otp.storage import keys as keyspace
from otp.storage.store import Call

PREFIX, RANGE, COUNTRY, IP, TENANT, TENANT_COUNTRY = "prefix", "range", "country", "ip", "tenant", "tenant_country"
KINDS = {PREFIX: "pfx", RANGE: "rng", COUNTRY: "cc", IP: "pip", TENANT: "ten", TENANT_COUNTRY: "tcc"}
# The scope whose threshold refuses every number that isn't known good; the others refuse only
# numbers of unproven prefixes.
NARROW = (PREFIX,)
WILSON_Z = 1.2816  # one-sided 90 %


@dataclass(frozen=True)
class Floors:
    daily: int  # 0: the scope only counts
    hourly: int


@dataclass(frozen=True)
class Scope:
    name: str
    value: str

    @property
    def kind(self) -> str:
        return KINDS[self.name]

    @property
    def tag(self) -> str:
        return keyspace.scope_tag(self.kind, self.value)

    @property
    def keys(self) -> list[str]:
        return keyspace.fraud_keys(self.kind, self.value)


@dataclass(frozen=True)
class Counts:
    """One scope's ``fraud.lua check`` reply."""

    verdict: int  # 1 allowed, 0 refused, 2 flagged (record_only)
    reason: str
    retry_ms: int
    sends_24h: int
    approvals_24h: int
    sends_1h: int
    approvals_1h: int
    sends_7d: int
    approvals_7d: int
    unproven_24h: int
    unproven_approvals_24h: int
    in_flight: int
    known_good: bool
    unproven_recent: int  # of the unproven ones, those of the last ~2 minutes
    unproven_approvals_recent: int

    @classmethod
    def from_reply(cls, reply: Sequence[Any]) -> Counts:
        reason = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        n = [int(x) for x in reply[2:15]]
        return cls(
            int(reply[0]), reason, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], bool(n[10]), n[11], n[12]
        )

    @property
    def unproven_unverified(self) -> int:
        """Unapproved verifications to unproven prefixes, those in flight included, less the
        users of the last ~2 minutes who may still be typing their code (at most 2 plus as many
        as approved meanwhile: a burst nobody approves gets no such allowance)."""
        typing = min(self.unproven_recent, 2 + self.unproven_approvals_recent)
        return max(0, self.unproven_24h - self.unproven_approvals_24h - typing)

    def summary(self) -> dict[str, int]:
        """The counts that drove a decision, for its audit record: verifications (s) and approvals
        (v) in the day, the hour (1h) and the week (7d), unproven ones (u, uv); zeros left out,
        since every start's record carries one of these per scope."""
        named = {
            "s": self.sends_24h,
            "v": self.approvals_24h,
            "s1h": self.sends_1h,
            "v1h": self.approvals_1h,
            "s7d": self.sends_7d,
            "v7d": self.approvals_7d,
            "u": self.unproven_24h,
            "uv": self.unproven_approvals_24h,
        }
        return {name: count for name, count in named.items() if count}


def scopes(phone: Phone, *, key_id: str, ip: str) -> list[Scope]:
    # A number of no country counts in a scope of its calling code (+881), like a country's.
    country = phone.country or f"+{phone.calling_code}"
    found = [
        Scope(PREFIX, f"{key_id}:{phone.prefix}"),
        Scope(RANGE, phone.prefix[:-2]),
        Scope(COUNTRY, country),
        # The budgets are the tenant's own: another tenant's attack never spends them.
        Scope(TENANT, key_id),
        Scope(TENANT_COUNTRY, f"{key_id}:{country}"),
    ]
    if ip:
        found.append(Scope(IP, f"{key_id}:{ip_scope(ip)}"))  # as verification.pumping_ip keeps it
    return found


# Sends a known-good number may have without a new approval before it counts as unknown again.
KNOWN_GOOD_SENDS = 3


def check_call(
    scope: Scope,
    floors: Floors,
    *,
    ratio: float,
    enforce: bool,
    block: tuple[int, int],
    event: str,
    good: tuple[str, int],
) -> Call:
    """``good``: (number hash, known-good lifetime ms), read by the prefix scope only."""
    base_ms, max_ms = block
    number_hash, good_ms = good if scope.name == PREFIX else ("", 0)
    basis = "all" if scope.name in NARROW else "unproven"
    args = {
        "action": "check",
        "daily_floor": floors.daily,
        "hourly_floor": floors.hourly,
        "ratio": ratio,
        "enforce": enforce,
        "block_base_ms": base_ms,
        "block_max_ms": max_ms,
        "reservation": event,
        "number_hash": number_hash,
        "good_ms": good_ms,
        "basis": basis,
        "good_sends": KNOWN_GOOD_SENDS,
    }
    return Call("fraud", scope.tag, scope.keys, args)


def commit_call(scope: Scope, event: str, *, unproven: bool, number_hash: str) -> Call:
    """``number_hash``: counted against the number's known-good standing (the prefix scope)."""
    counted = number_hash if scope.name == PREFIX else ""
    args = {"action": "commit", "reservation": event, "unproven": unproven, "resend": False, "number_hash": counted}
    return Call("fraud", scope.tag, scope.keys, args)


def convert_calls(found: Sequence[Scope], *, sends: int, unproven: bool, good: tuple[str, int]) -> list[Call]:
    """An approval by a code: each of the verification's ``sends`` converted, in each scope, and
    the number is known good (``good``: its hash and for how long, kept by the prefix scope)."""
    calls = []
    for s in found:
        number_hash, good_ms = good if s.name == PREFIX else ("", 0)
        args = {
            "action": "convert",
            "unproven": unproven,
            "number_hash": number_hash,
            "good_ms": good_ms,
            "sends": sends,
        }
        calls.append(Call("fraud", s.tag, s.keys, args))
    return calls


def _buckets(reply: Sequence[Any]) -> dict[str, int]:
    """The hour, 5-minute bucket and day a conversion counted in (convert's reply)."""
    hour, five, day = (int(x) for x in reply[:3])
    return {"hour": hour, "five": five, "day": day}


def unconvert_calls(calls: Sequence[Call], replies: Sequence[Any]) -> list[Call]:
    """Take back conversions counted by ``calls`` (their replies say which buckets); a reply
    that is None (its node failed) counted nothing."""
    return [
        Call(
            "fraud",
            c.tag,
            c.keys,
            {"action": "unconvert", "unproven": c.args["unproven"], **_buckets(r), "sends": c.args["sends"]},
        )
        for c, r in zip(calls, replies, strict=True)
        if r is not None
    ]


def scopes_of_record(record: dict[str, str], phone: Phone) -> list[Scope]:
    """The scopes a verification's sends counted in (the IP scope as stored on the record)."""
    tenant = record.get("ft") or record.get("key", "")
    found = [s for s in scopes(phone, key_id=tenant, ip="") if s.name != IP]
    if record.get("ips"):
        found.append(Scope(IP, record["ips"]))
    return found


def wilson_lower(successes: int, trials: int, z: float = WILSON_Z) -> float:
    if trials <= 0:
        return 0.0
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - margin) / (1 + z2 / trials))


@dataclass(frozen=True)
class Tuning:
    ratio: float
    proven_share: float
    prior_conversion: float
    prior_weight: int
    country_budget: tuple[int, float]  # (floor, allowed per approved unproven verification in the day)
    tenant_budget: tuple[int, float]


def baseline(tenant: Counts, tuning: Tuning) -> float:
    """The tenant's conversion on proven destinations over the day, pulled towards a prior while
    it has little traffic."""
    sends = max(0, tenant.sends_24h - tenant.unproven_24h)
    approvals = max(0, tenant.approvals_24h - tenant.unproven_approvals_24h)
    weight = tuning.prior_weight
    return (approvals + tuning.prior_conversion * weight) / (sends + weight)


def proven(prefix: Counts, tenant: Counts, tuning: Tuning) -> bool:
    bound = wilson_lower(min(prefix.approvals_7d, prefix.sends_7d), prefix.sends_7d)
    return prefix.approvals_7d >= 2 and bound >= tuning.proven_share * baseline(tenant, tuning)


def over_budget(counts: Counts, budget: tuple[int, float]) -> bool:
    """Whether one more unapproved verification to an unproven prefix would pass the budget (those
    in flight count, less two users who may still be typing: ``unproven_unverified``)."""
    floor, share = budget
    # Additive, not max(): a few approvals already widen it, so a real country's first hour (few
    # sends, most of them approved) keeps room where a pumped one (none approved) has the floor.
    return counts.unproven_unverified + 1 > floor + share * counts.unproven_approvals_24h
