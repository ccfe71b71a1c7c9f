"""Rate limits and fraud rules, decided before every send.

Permissions (country allowlist, number types) need no state and are decided here.  Every counted
rule is one Lua script per slot, so limits hold under concurrency: the number's own limits inside
``start.lua``; the end user's IP (per API key) and the API key in ``limit.lua``, which decides and
counts in one step; the destination prefix and the country in ``fraud.lua``, pipelined in the same
round trip.

The pumping windows count committed sends only: ``fraud.lua check`` decides on what is already
counted and counts nothing, and ``commit`` counts the send once ``start.lua`` has written it. A
burst of refused requests therefore never moves a window or sets a block (several sends in flight
at once may each pass the check: the windows are thresholds, and the atomic per-IP, per-key and
per-number limits bound how many can be in flight). A sliding-log limit counts at once, so that it
holds exactly; a send another rule refuses is released from it (``release``) within the request.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from otp import keyspace
from otp.ipaddr import ip_scope
from otp.phone import Phone
from otp.store import Call, Store

# Numbers of no country (+870 Inmarsat, +881 satellite, +882/+883 international networks):
# refused by default like premium rate, since they are a favourite of SMS pumping. Not a
# phonenumbers type: a name in this list that otp.phone's Phone.country being empty stands for.
NON_GEOGRAPHIC = "non_geographic"
DEFAULT_BLOCKED_TYPES = frozenset(
    {"premium_rate", "shared_cost", "uan", "voicemail", "pager", "personal_number", "fixed_line", NON_GEOGRAPHIC}
)
NUMBER_TYPES = frozenset(
    {
        "fixed_line",
        "mobile",
        "fixed_line_or_mobile",
        "toll_free",
        "premium_rate",
        "shared_cost",
        "voip",
        "personal_number",
        "pager",
        "uan",
        "voicemail",
        "unknown",
        NON_GEOGRAPHIC,
    }
)
MODES = ("enforce", "record_only")
LIMIT_REASONS = {"ip": ("ip_sends", "ip_hourly_limit"), "key": ("key_sends", "key_minute_limit")}


@dataclass(frozen=True)
class PolicyConfig:
    number_sends_per_hour: int = 10
    number_sends_per_day: int = 20
    resend_cooldown: float = 30.0
    failed_checks_per_hour: int = 10
    ip_sends_per_hour: int = 20
    key_sends_per_minute: int = 1000
    key_checks_per_minute: int = 1200
    allowed_countries: frozenset[str] = frozenset()  # empty: every country
    blocked_number_types: frozenset[str] = DEFAULT_BLOCKED_TYPES
    pumping_mode: str = "enforce"
    prefix_daily_floor: int = 20
    prefix_hourly_floor: int = 3
    country_daily_floor: int = 200
    country_hourly_floor: int = 50
    # authgear publishes 0.2, which assumes more than 83 % of codes are used; 0.3 keeps a healthy
    # 80 % conversion (unverified = 25 % of verified) clear of the rule.
    pumping_ratio: float = 0.3
    block_base: float = 300.0
    block_max: float = 43200.0
    prefix_keep_hours: int = 25
    country_keep_hours: int = 24 * 8


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str = ""
    reason: str = ""
    retry_after: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Admission:
    """The cross-number part of a send decision: what to count once the send is committed, and
    what to release if it isn't."""

    decision: Decision
    commits: tuple[Call, ...] = ()  # pumping windows: counted only after the send is written
    releases: tuple[tuple[str, str], ...] = ()  # (key, member) of sliding-log limits to release
    reservations: tuple[tuple[str, str], ...] = ()  # (key, member) of pumping reservations
    flagged: tuple[str, ...] = ()  # scopes over the pumping threshold in record_only mode


class SafeList:
    """Numbers and prefixes that bypass the fraud rules; read through a short in-process cache."""

    TTL = 5.0

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: frozenset[str] = frozenset()
        self._loaded_at = -1e9

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    async def entries(self) -> frozenset[str]:
        if time.monotonic() - self._loaded_at > self.TTL:
            raw = await self.store.guarded(lambda: self.store.client.smembers(keyspace.safe_list()))
            self._entries = frozenset(v.decode() if isinstance(v, bytes) else str(v) for v in raw)
            self._loaded_at = time.monotonic()
        return self._entries

    async def covers(self, e164: str) -> bool:
        return any(e164.startswith(entry) for entry in await self.entries())

    async def add(self, entry: str) -> None:
        await self.store.guarded(lambda: self.store.client.sadd(keyspace.safe_list(), entry))
        self.invalidate()

    async def remove(self, entry: str) -> bool:
        removed = await self.store.guarded(lambda: self.store.client.srem(keyspace.safe_list(), entry))
        self.invalidate()
        return bool(removed)


class Policy:
    def __init__(self, store: Store, config: PolicyConfig) -> None:
        self.store = store
        self.config = config
        self.safe_list = SafeList(store)

    def permission(self, phone: Phone) -> Decision:
        allowed = self.config.allowed_countries
        if allowed and phone.country not in allowed:
            return Decision(False, "geo_permissions", "country_not_allowed", details={"country": phone.country})
        if phone.number_type in self.config.blocked_number_types:
            return Decision(False, "number_type", "number_type_not_allowed", details={"number_type": phone.number_type})
        if not phone.country and NON_GEOGRAPHIC in self.config.blocked_number_types:
            return Decision(False, "number_type", "number_type_not_allowed", details={"number_type": NON_GEOGRAPHIC})
        return Decision(True)

    def _fraud_call(self, kind: str, value: str, daily_floor: int, hourly_floor: int, event: str) -> Call:
        c = self.config
        enforce = "1" if c.pumping_mode == "enforce" else "0"
        return Call(
            "fraud",
            keyspace.scope_tag(kind, value),
            [keyspace.scope_window(kind, value), keyspace.scope_reservations(kind, value)],
            [
                "check",
                daily_floor,
                hourly_floor,
                c.pumping_ratio,
                enforce,
                int(c.block_base * 1000),
                int(c.block_max * 1000),
                event,
            ],
        )

    def _pumping_scopes(self, phone: Phone) -> list[tuple[str, str, str, int]]:
        """(name, kind, value, keep hours) of the destination scopes a send to ``phone`` counts in."""
        c = self.config
        # A number of no country counts in a scope of its calling code (+881), like a country's.
        destination = phone.country or f"+{phone.calling_code}"
        return [
            ("prefix", "pfx", phone.prefix, c.prefix_keep_hours),
            ("country", "cc", destination, c.country_keep_hours),
        ]

    async def admit_send(
        self, phone: Phone, *, key_id: str, ip: str, risk_check: bool, now_ms: int, custom: dict[str, str] | None = None
    ) -> Admission:
        """Decide and count the IP, API-key, prefix and country rules in one round trip."""
        c = self.config
        event = f"{now_ms}:{secrets.token_hex(6)}"
        names: list[str] = []
        calls: list[Call] = []
        if ip:
            # Per API key: an IP a tenant reports is its own user's; another tenant's traffic
            # (or a hostile tenant naming a victim's IP) must not spend it.
            scope = keyspace.scope_tag("ip", f"{key_id}:{ip_scope(ip)}")
            names.append("ip")
            calls.append(Call("limit", scope, [scope + "sends"], [3_600_000, c.ip_sends_per_hour, event]))
        names.append("key")
        calls.append(
            Call(
                "limit",
                keyspace.scope_tag("key", key_id),
                [keyspace.scope_tag("key", key_id) + "sends"],
                [60_000, c.key_sends_per_minute, event],
            )
        )
        for name, value in sorted((custom or {}).items()):
            # A tenant's own limit key (Twilio's RateLimits): sends per hour per value, like a number.
            scope = keyspace.scope_tag("rl", f"{key_id}:{name}:{value}")
            names.append(f"custom:{name}")
            calls.append(Call("limit", scope, [scope + "sends"], [3_600_000, c.number_sends_per_hour, event]))
        floors = {
            "prefix": (c.prefix_daily_floor, c.prefix_hourly_floor),
            "country": (c.country_daily_floor, c.country_hourly_floor),
        }
        commits: list[Call] = []
        if risk_check:
            for name, kind, value, keep_hours in self._pumping_scopes(phone):
                names.append(name)
                calls.append(self._fraud_call(kind, value, *floors[name], event))
                keys = [keyspace.scope_window(kind, value), keyspace.scope_reservations(kind, value)]
                commits.append(Call("fraud", keyspace.scope_tag(kind, value), keys, ["commit", keep_hours, event]))
        results = await self.store.run_many(calls, now_ms)

        details: dict[str, Any] = {}
        refusal: Decision | None = None
        releases: list[tuple[str, str]] = []
        reservations: list[tuple[str, str]] = []
        flagged: list[str] = []
        new_blocks: list[tuple[str, int]] = []
        for name, call, result in zip(names, calls, results, strict=True):
            if call.script == "limit":
                allowed, count, retry_ms = (int(x) for x in result)
                limit = int(call.args[1])
                details[name] = {"count": count, "limit": limit}
                if allowed:
                    releases.append((call.keys[0], event))
                elif refusal is None:
                    rule, reason = LIMIT_REASONS.get(name, ("custom_rate_limit", "custom_limit"))
                    refusal = Decision(False, rule, reason, _seconds(retry_ms))
                continue
            verdict, reason, retry_ms = int(result[0]), _text(result[1]), int(result[2])
            s24, v24, s1, v1 = (int(x) for x in result[3:7])
            details[name] = {"sends_24h": s24, "verified_24h": v24, "sends_1h": s1, "verified_1h": v1}
            if verdict in (1, 2):
                reservations.append((call.keys[1], event))
            if verdict == 2:
                flagged.append(name)
                details[name]["flagged"] = reason
            elif verdict == 0:
                if reason not in ("blocked", "in_flight"):  # a block set just now, whichever rule refused first
                    new_blocks.append((call.tag, now_ms + retry_ms))
                if refusal is not None:
                    continue
                scope = "prefix" if name == "prefix" else "country"
                reason = f"{scope}_blocked" if reason == "blocked" else f"pumping_{reason}"
                rule = f"sms_pumping_{scope}"
                refusal = Decision(False, rule, reason, _seconds(retry_ms))
        if new_blocks:
            await self._index_blocks(new_blocks)
        decision = refusal or Decision(True, details=details)
        if refusal is not None:
            decision = Decision(False, refusal.rule, refusal.reason, refusal.retry_after, details)
        return Admission(decision, tuple(commits), tuple(releases), tuple(reservations), tuple(flagged))

    async def _index_blocks(self, blocks: list[tuple[str, int]]) -> None:
        """Remember which scopes got blocked, for readers (the dashboard): the block itself lives in
        the scope's own slot, the index in a small one of its own."""
        index = keyspace.stats_index("blocked")
        await self.store.guarded(lambda: self.store.client.zadd(index, {tag: until for tag, until in blocks}))
        await self.store.guarded(lambda: self.store.client.expire(index, int(self.config.block_max) + 86400))

    async def blocked(self, now_ms: int) -> list[dict[str, Any]]:
        """Scopes blocked now: kind, value, level and seconds left."""
        index = keyspace.stats_index("blocked")
        tags = await self.store.guarded(lambda: self.store.client.zrangebyscore(index, now_ms, "+inf"))
        found = []
        for raw in tags:
            tag = _text(raw)
            ttl, level = await self.store.guarded(functools.partial(self._block_state, tag))
            if ttl > 0:
                kind, _, value = tag[len(keyspace.PREFIX) + 1 : -2].partition(":")
                found.append(
                    {
                        "kind": "prefix" if kind == "pfx" else "country",
                        "value": value,
                        "level": int(level or 1),
                        "seconds_left": -(-ttl // 1000),
                    }
                )
        return found

    async def _block_state(self, tag: str) -> tuple[int, Any]:
        async with self.store.client.pipeline(transaction=False) as pipe:
            pipe.pttl(tag + "block")
            pipe.get(tag + "block")
            ttl, level = await pipe.execute()
        return int(ttl), level

    async def release(self, admission: Admission, *, sent: bool = False) -> None:
        """Take a send that didn't happen back from the sliding-log limits that counted it and
        the pumping reservations; with ``sent`` (a resend: the windows count verifications), the
        reservations only."""
        entries = admission.reservations if sent else admission.releases + admission.reservations
        if not entries:
            return

        async def drop() -> None:
            async with self.store.client.pipeline(transaction=False) as pipe:
                for key, member in entries:
                    pipe.zrem(key, member)
                await pipe.execute()

        await self.store.guarded(drop)

    async def commit(self, admission: Admission, now_ms: int) -> None:
        """Count a written send in the pumping windows."""
        await self.store.run_many(admission.commits, now_ms)

    def conversion_calls(self, phone: Phone) -> list[Call]:
        return [
            Call("fraud", keyspace.scope_tag(kind, value), [keyspace.scope_window(kind, value)], ["convert", keep])
            for _, kind, value, keep in self._pumping_scopes(phone)
        ]

    async def take_back_conversions(self, calls: Sequence[Call], results: Sequence[Any], now_ms: int) -> None:
        undo = [
            Call("fraud", c.tag, c.keys, ["unconvert", int(r[7]), int(r[8])])
            for c, r in zip(calls, results, strict=True)
        ]
        await self.store.run_many(undo, now_ms)

    async def conversion(
        self, *, country: str = "", prefix: str = "", since_hours: int = 24, now_ms: int
    ) -> dict[str, Any]:
        """Sends, approvals and their rate for a country or a prefix over the last hours."""
        kind, value = ("pfx", prefix) if prefix else ("cc", country)
        raw = await self.store.guarded(lambda: self.store.client.hgetall(keyspace.scope_window(kind, value)))
        hour = now_ms // 3_600_000
        sends = approvals = 0
        for name_raw, count_raw in raw.items():
            name = _text(name_raw)
            if not name[1:].startswith("h:"):
                continue
            if hour - int(name[3:]) < since_hours:
                if name[0] == "s":
                    sends += int(count_raw)
                else:
                    approvals += int(count_raw)
        rate = round(approvals / sends, 4) if sends else None
        scope = {"prefix": prefix} if prefix else {"country": country}
        return {**scope, "since_hours": since_hours, "sends": sends, "approvals": approvals, "rate": rate}

    async def unblock(self, kind: str, value: str) -> bool:
        tag = keyspace.scope_tag(kind, value)
        removed = await self.store.guarded(lambda: self.store.client.delete(tag + "block", tag + "level"))
        return bool(removed)


def decisions_json(admission: Admission) -> str:
    return json.dumps(admission.decision.details, separators=(",", ":"), sort_keys=True)


def _seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_list(raw: str, *, known: Sequence[str] | None = None, name: str) -> frozenset[str]:
    items = frozenset(part.strip() for part in raw.split(",") if part.strip())
    if known is not None:
        unknown = sorted(items - set(known))
        if unknown:
            raise ValueError(f"{name}: unknown value(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return items
