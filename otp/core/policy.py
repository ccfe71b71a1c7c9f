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
The buckets of one service Rate Limit (``BucketLimit``, buckets.lua) share one log per value and
decide together: a bucket that refuses leaves no count in its siblings, even for that moment.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from otp.core import pumping
from otp.core.ipaddr import ip_scope
from otp.core.phone import NON_GEOGRAPHIC, TYPE_FAMILY, Phone
from otp.core.verification_io import Caller
from otp.storage import audit_log, blocks, windows
from otp.storage import keys as keyspace
from otp.storage.safelist import SafeList
from otp.storage.store import Call, Read, Store

MODES = ("enforce", "record_only")
LIMIT_REASONS = {"ip": ("ip_sends", "ip_hourly_limit"), "key": ("key_sends", "key_minute_limit")}
# The sliding-log scripts: {allowed, count, retry ms[, limit]} each.
SLIDING_LOGS = ("limit", "buckets")
BUCKET_REFUSAL = ("service_rate_limit", "rate_limit_bucket")
BUDGET_RULE = "budget"


@dataclass(frozen=True)
class PolicyConfig:
    """The fraud and rate-limit settings: the shell builds them (its defaults are in otp/settings.py)."""

    number_sends_per_hour: int
    number_sends_per_day: int
    # Seconds after a send to a number, doubled for each send to it in the hour; a verification's
    # first resend is free (start.lua). 10 s lets a user's "Resend" after 5 s through (at once, in
    # fact) and a second one 10 s later, while a loop of starts to one number, however it mixes
    # resends and new verifications, gets at most 4 SMS in 20 s, 5 in 50 s, and its 10th (the
    # hourly cap) no sooner than 28 minutes in. Pumping spreads over many numbers, so this is no
    # pumping defence: the pumping rules count verifications, not resends.
    resend_cooldown: float
    failed_checks_per_hour: int
    ip_sends_per_hour: int
    key_sends_per_minute: int
    key_checks_per_minute: int
    allowed_countries: frozenset[str]  # empty: every country
    blocked_number_types: frozenset[str]
    pumping_mode: str
    # Unverified sends a scope may always have in an hour / a day (bench/fraud_replay.py: at 6 an
    # hour a random legitimate background of 80 % conversion never meets the prefix's, at 3 it
    # did ~50 times a day).
    prefix_daily_floor: int
    prefix_hourly_floor: int
    # A range and a country judge their day of verifications to unproven prefixes only.
    range_daily_floor: int
    country_daily_floor: int
    # An end-user IP judges its day of verifications to unproven prefixes, so
    # users behind one address resending or typing slowly are never its business.
    ip_pumping_daily_floor: int
    # authgear publishes 0.2, which assumes more than 83 % of codes are used; at 80 % conversion
    # unverified = 25 % of verified, and a prefix's day of ~60 sends varies by a few: 0.5 keeps real
    # traffic clear of the rule in the replay, and a third of codes approved (U/V 1.9) far above it.
    pumping_ratio: float
    block_base: float
    block_max: float
    # A prefix is proven when the lower bound of its week's conversion reaches this share of the
    # tenant's conversion on proven destinations (a prior of 80 % over 10 sends while it has none).
    proven_share: float
    # Unverified sends to unproven prefixes a tenant may have in a day, per country and in all:
    # a floor, plus one per such send that was approved. Real new users convert at ~80 %, but the
    # sends that stay unproven are those of the prefixes whose first users didn't approve (the
    # others are proven by then), so in a real country's first hour they may convert at half.
    unproven_country_floor: int
    unproven_tenant_floor: int
    unproven_share: float
    known_good_days: float


@dataclass(frozen=True)
class BucketLimit:
    """A service Rate Limit named by a start, with the value it passed: ``log_id`` names the
    value's log (``<RK sid>:<keyed hash of the value>``); ``windows`` its buckets as (Max,
    Interval ms)."""

    name: str
    log_id: str
    windows: tuple[tuple[int, int], ...]


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
    unproven: bool = False  # to a prefix with no record of real users, and not a known-good number
    # Spend budgets (otp.core.budget): the reservations to give back if the send isn't written,
    # and the levels (scope label, level, spent, limit) this one reached first today.
    budget_releases: tuple[Call, ...] = ()
    budget_levels: tuple[tuple[str, int, int, int], ...] = ()
    read: tuple[Any, ...] = ()  # the replies of admit_send's ``reads``, in order


@dataclass(frozen=True)
class Along:
    """What a start sends in the admission's round trip beside the rate limits and pumping rules:
    its spend reservations (otp.core.budget), last, so a send another rule refuses is blocked in
    that rule's name, and plain reads the start needs (their replies are the admission's ``read``)."""

    budget: Sequence[tuple[str, Call]] = ()
    reads: Sequence[Read] = ()


@dataclass(frozen=True)
class PumpingVerdict:
    refusal: Decision | None
    flags: tuple[tuple[str, str], ...]  # (scope, reason) that would refuse, in record_only mode
    known_good: bool
    unproven: bool


class Policy:
    def __init__(self, store: Store, config: PolicyConfig) -> None:
        self.store = store
        self.config = config
        self.safe_list = SafeList(store)

    def permission(self, phone: Phone) -> Decision:
        allowed = self.config.allowed_countries
        if allowed and phone.country not in allowed:
            return Decision(False, "geo_permissions", "country_not_allowed", details={"country": phone.country})
        blocked = self.config.blocked_number_types
        if phone.number_type in blocked or TYPE_FAMILY.get(phone.number_type) in blocked:
            return Decision(False, "number_type", "number_type_not_allowed", details={"number_type": phone.number_type})
        if not phone.country and NON_GEOGRAPHIC in self.config.blocked_number_types:
            return Decision(False, "number_type", "number_type_not_allowed", details={"number_type": NON_GEOGRAPHIC})
        return Decision(True)

    def _tuning(self) -> pumping.Tuning:
        c = self.config
        return pumping.Tuning(
            ratio=c.pumping_ratio,
            proven_share=c.proven_share,
            prior_conversion=0.8,
            prior_weight=10,
            country_budget=(c.unproven_country_floor, c.unproven_share),
            tenant_budget=(c.unproven_tenant_floor, c.unproven_share),
        )

    def _floors(self, name: str) -> pumping.Floors:
        c = self.config
        return {
            pumping.PREFIX: pumping.Floors(c.prefix_daily_floor, c.prefix_hourly_floor),
            pumping.RANGE: pumping.Floors(c.range_daily_floor, 0),
            pumping.COUNTRY: pumping.Floors(c.country_daily_floor, 0),
            pumping.IP: pumping.Floors(c.ip_pumping_daily_floor, 0),
        }.get(name, pumping.Floors(0, 0))

    def good_for(self, number_hash: str) -> tuple[str, int]:
        return number_hash, int(self.config.known_good_days * 86_400_000)

    def _limit_calls(
        self,
        *,
        key_id: str,
        tenant: str,
        ip: str,
        custom: dict[str, str],
        buckets: Sequence[BucketLimit],
        event: str,
    ) -> list[tuple[str, Call]]:
        """The sliding-window limits of a send: the end user's IP and the API key (per fraud
        tenant), the caller's own (per ``key_id``: a RateLimits value with no service Rate Limit of
        its name, and the buckets of those that have one)."""
        c = self.config

        def limit(kind: str, value: str, window_ms: int, most: int) -> Call:
            args = {"window_ms": window_ms, "limit": most, "member": event}
            return Call("limit", keyspace.scope_tag(kind, value), [keyspace.scope_sends(kind, value)], args)

        calls: list[tuple[str, Call]] = []
        if ip:
            # Per API key: an IP a tenant reports is its own user's; another tenant's traffic
            # (or a hostile tenant naming a victim's IP) must not spend it.
            calls.append(("ip", limit("ip", f"{tenant}:{ip_scope(ip)}", 3_600_000, c.ip_sends_per_hour)))
        calls.append(("key", limit("key", tenant, 60_000, c.key_sends_per_minute)))
        for name, value in sorted(custom.items()):
            # A tenant's own limit key (Twilio's RateLimits): sends per hour per value, like a number
            # (the value comes keyed-hashed from the verifier: it may be a phone number).
            calls.append(
                (f"custom:{name}", limit("rl", f"{key_id}:{name}:{value}", 3_600_000, c.number_sends_per_hour))
            )
        for bucket in buckets:
            args = {"windows": [list(w) for w in bucket.windows], "member": event}
            tag = keyspace.scope_tag("rlb", bucket.log_id)
            calls.append(
                (f"bucket:{bucket.name}", Call("buckets", tag, [keyspace.rate_limit_log(bucket.log_id)], args))
            )
        return calls

    def _pumping_call(self, scope: pumping.Scope, event: str, number_hash: str) -> Call:
        c = self.config
        return pumping.check_call(
            scope,
            self._floors(scope.name),
            ratio=c.pumping_ratio,
            enforce=c.pumping_mode == "enforce",
            block=(int(c.block_base * 1000), int(c.block_max * 1000)),
            event=event,
            good=self.good_for(number_hash),
        )

    async def admit_send(
        self,
        phone: Phone,
        *,
        caller: Caller,
        risk_check: bool,
        now_ms: int,
        number_hash: str = "",
        custom: dict[str, str] | None = None,
        buckets: Sequence[BucketLimit] = (),
        along: Along = Along(),
    ) -> Admission:
        """Decide and count the IP, API-key, tenant and pumping rules in one round trip (otp/core/pumping.py).
        The IP, key and pumping rules count per fraud tenant (``Caller.fraud_tenant``), the
        caller's own RateLimits per ``caller.key_id``; ``along`` goes in the same round trip."""
        budget, reads = along.budget, along.reads
        event = f"{now_ms}:{secrets.token_hex(6)}"
        key_id, tenant, ip = caller.key_id, caller.fraud_tenant, caller.ip
        limits = self._limit_calls(
            key_id=key_id, tenant=tenant, ip=ip, custom=custom or {}, buckets=buckets, event=event
        )
        found = pumping.scopes(phone, key_id=tenant, ip=ip) if risk_check else []
        checks = [(s.name, self._pumping_call(s, event, number_hash)) for s in found]
        names = [name for name, _ in (*limits, *checks, *budget)]
        calls = [call for _, call in (*limits, *checks, *budget)]
        replies = await self.store.run_many([*calls, *reads], now_ms)
        results, read = replies[: len(calls)], tuple(replies[len(calls) :])

        details: dict[str, Any] = {}
        refusal: Decision | None = None
        releases: list[tuple[str, str]] = []
        counted: dict[str, pumping.Counts] = {}
        calls_by_name: dict[str, Call] = {}
        spend = _BudgetReplies()
        for name, call, result in zip(names, calls, results, strict=True):
            if call.script == "budget":
                refused = spend.read(name, call, result, now_ms)
                details[name] = spend.summaries[name]
                if refused is not None and refusal is None:
                    refusal = refused
                    details[BUDGET_RULE] = name  # the scope that refused, for the refusal's answer
                continue
            if call.script in SLIDING_LOGS:
                allowed, count, retry_ms, *most = (int(x) for x in result)
                details[name] = {"count": count, "limit": most[0] if most else int(call.args["limit"])}
                if allowed:
                    releases.append((call.keys[0], event))
                elif refusal is None:
                    refusal = Decision(False, *_limit_reason(name, call), _seconds(retry_ms))
                continue
            counted[name] = pumping.Counts.from_reply(result)
            calls_by_name[name] = call
            details[name] = counted[name].summary()

        reservations = tuple((calls_by_name[s.name].keys[1], event) for s in found)
        new_blocks = [
            (calls_by_name[name].tag, now_ms + n.retry_ms)
            for name, n in counted.items()
            if n.verdict == 0 and n.reason not in ("blocked", "in_flight")
        ]
        if new_blocks:
            # For readers (the dashboard): the block itself lives in the scope's own slot.
            await blocks.index(self.store, new_blocks, int(self.config.block_max) + 86400)
        verdict = self._pumping_verdict(counted, self.config.pumping_mode == "enforce") if found else None
        unproven = bool(verdict and verdict.unproven)
        flagged: list[str] = []
        if verdict is not None:
            details["pumping"] = "known_good" if verdict.known_good else "unproven" if verdict.unproven else "proven"
            for name, reason in verdict.flags:
                flagged.append(name)
                details.setdefault(name, {})["flagged"] = reason
            if refusal is None and verdict.refusal is not None:
                refusal = verdict.refusal
        commits = tuple(pumping.commit_call(s, event, unproven=unproven, number_hash=number_hash) for s in found)
        if refusal is not None:
            return Admission(
                Decision(False, refusal.rule, refusal.reason, refusal.retry_after, details),
                releases=tuple(releases),
                reservations=reservations,
                budget_releases=tuple(spend.releases),
                budget_levels=tuple(spend.levels),
                read=read,
            )
        return Admission(
            Decision(True, details=details),
            commits,
            tuple(releases),
            reservations,
            tuple(flagged),
            unproven,
            tuple(spend.releases),
            tuple(spend.levels),
            read,
        )

    def _pumping_verdict(self, counted: dict[str, pumping.Counts], enforce: bool) -> PumpingVerdict:
        """Which pumping rule, if any, refuses the send (see otp/core/pumping.py for the rules)."""
        tuning = self._tuning()
        prefix, tenant = counted[pumping.PREFIX], counted[pumping.TENANT]
        known_good = prefix.known_good
        unproven = not known_good and not pumping.proven(prefix, tenant, tuning)
        candidates: list[tuple[str, str, int]] = []  # (scope, reason, retry ms)
        if not known_good:
            for name in (pumping.PREFIX, pumping.IP, pumping.RANGE, pumping.COUNTRY):
                n = counted.get(name)
                if n is None or n.verdict == 1:
                    continue
                if name not in pumping.NARROW and not unproven:
                    continue  # a range or country action spares numbers of proven prefixes
                candidates.append((name, n.reason, n.retry_ms))
            if unproven:
                # Sends nobody has shown to reach a real user: the tenant's daily budgets.
                for name, budget in (
                    (pumping.TENANT_COUNTRY, tuning.country_budget),
                    (pumping.TENANT, tuning.tenant_budget),
                ):
                    if pumping.over_budget(counted[name], budget):
                        candidates.append((name, "unproven_budget", 3_600_000))
        refusal = None
        flags: list[tuple[str, str]] = []
        for name, reason, retry_ms in candidates:
            if not enforce or counted.get(name, prefix).verdict == 2:
                flags.append((name, reason))
                continue
            if refusal is None:
                label = f"{name}_blocked" if reason == "blocked" else f"pumping_{reason}"
                refusal = Decision(False, f"sms_pumping_{name}", label, _seconds(retry_ms))
        return PumpingVerdict(refusal, tuple(flags), known_good, unproven)

    async def blocked(self, now_ms: int) -> list[dict[str, Any]]:
        """Scopes blocked now: kind, value, level and seconds left, and why when the block says
        (the reason, the unverified count, and since when with the sends, approvals and threshold)."""
        found = []
        for tag in await blocks.indexed(self.store, until_after_ms=now_ms):
            state = await blocks.state(self.store, tag)
            if state is None or state.until_ms <= now_ms:
                continue  # lifted, or run out since it was indexed
            ttl = state.until_ms - now_ms
            block = {**_scope_of(tag), "level": state.level or 1, "seconds_left": -(-ttl // 1000)}
            if state.unverified is not None:
                block.update(reason=state.reason, unverified=state.unverified)
            if state.since_ms is not None:
                block.update(
                    since_ms=state.since_ms, sends=state.sends, approvals=state.approvals, threshold=state.threshold
                )
            found.append(block)
        return found

    async def release(self, admission: Admission, *, keep_limits: bool = False) -> None:
        """Take a send that didn't happen back from the sliding-log limits that counted it (unless
        ``keep_limits``: it cost something all the same, a paid Lookup) and the pumping reservations."""
        kept = () if keep_limits else admission.releases
        await windows.release(self.store, kept + admission.reservations)
        await self.store.run_many(admission.budget_releases, 0)

    async def commit(self, admission: Admission, now_ms: int, *, resent: bool = False) -> None:
        """Count a written send in the pumping windows. The windows count verifications: a resend
        only releases its reservation (and counts against a known-good number's standing), so a
        user who resends a few times never looks like pumping; the per-number limits bound resends."""
        calls = admission.commits
        if resent:
            calls = tuple(Call(c.script, c.tag, c.keys, {**c.args, "unproven": False, "resend": True}) for c in calls)
        await self.store.run_many(calls, now_ms)

    def conversion_calls(self, record: dict[str, str], number: Phone, number_hash: str) -> list[Call]:
        """An approval by a code of the verification ``record``: it converts in the scopes it
        counted in (one: the windows count verifications), and the number becomes known good."""
        found = pumping.scopes_of_record(record, number)
        return pumping.convert_calls(found, sends=1, unproven=record.get("up") == "1", good=self.good_for(number_hash))

    async def take_back_conversions(self, calls: Sequence[Call], results: Sequence[Any], now_ms: int) -> None:
        await self.store.run_many(pumping.unconvert_calls(calls, results), now_ms)

    async def conversion(
        self, *, country: str = "", prefix: str = "", since_hours: int = 24, now_ms: int
    ) -> dict[str, Any]:
        """Sends (new verifications), approvals and their rate for a country or a prefix over the
        last hours. A prefix's windows are per tenant, so its figures, across tenants, come from the
        hourly audit counters (``sent@prefix:`` / ``approved@prefix:``, lib.lua)."""
        hour = now_ms // 3_600_000
        sends = approvals = 0
        if prefix:
            hours = range(hour - since_hours + 1, hour + 1)
            fields = [f"sent@prefix:{prefix}", f"approved@prefix:{prefix}"]
            sends, approvals = await audit_log.counter_totals(self.store, hours, fields)
        else:
            for name, count_raw in (await windows.window(self.store, "cc", country)).items():
                if name[:3] in ("sh:", "vh:") and hour - int(name[3:]) < since_hours:
                    if name[0] == "s":
                        sends += int(count_raw)
                    else:
                        approvals += int(count_raw)
        rate = round(approvals / sends, 4) if sends else None
        scope = {"prefix": prefix} if prefix else {"country": country}
        return {**scope, "since_hours": since_hours, "sends": sends, "approvals": approvals, "rate": rate}

    async def unblock(self, kind: str, value: str) -> bool:
        """Lift the blocks of a prefix (every tenant's) or a country, with their levels."""
        name = "prefix" if kind == "pfx" else "country"
        tags = await blocks.indexed(self.store)
        chosen = [t for t in tags if _scope_of(t)["kind"] == name and _scope_of(t)["value"] == value]
        chosen.append(keyspace.scope_tag(kind, value))
        return await blocks.lift(self.store, chosen)


class _BudgetReplies:
    """The replies of budget.lua reservations (otp.core.budget): what to give back, which levels
    were reached, and the refusal of a scope the send doesn't fit."""

    def __init__(self) -> None:
        self.releases: list[Call] = []
        self.levels: list[tuple[str, int, int, int]] = []
        self.summaries: dict[str, dict[str, int]] = {}

    def read(self, name: str, call: Call, result: Sequence[Any], now_ms: int) -> Decision | None:
        allowed, spent, most, *crossed = (int(x) for x in result)
        self.summaries[name] = {"spent": spent, "limit": most}
        self.levels.extend((name, level, spent, most) for level in crossed)
        if allowed:
            self.releases.append(replace(call, args={**call.args, "op": "adjust", "amount": -int(call.args["amount"])}))
            return None
        reset_ms = int(call.args["reset_ms"])
        return Decision(False, BUDGET_RULE, "budget_exhausted", _seconds(reset_ms - now_ms), {"scope": name})


SCOPE_NAMES = {kind: name for name, kind in pumping.KINDS.items()}


def _scope_of(tag: str) -> dict[str, str]:
    """``otp:{pfx:<key>:+1415555}:`` → kind, value (and the tenant of a per-tenant scope)."""
    kind, _, value = tag[len(keyspace.PREFIX) + 1 : -2].partition(":")
    scope = {"kind": SCOPE_NAMES.get(kind, kind)}
    if kind in ("pfx", "pip", "tcc", "ten") and ":" in value:
        tenant, _, value = value.partition(":")
        scope["tenant"] = tenant
    scope["value"] = value
    return scope


def _limit_reason(name: str, call: Call) -> tuple[str, str]:
    """(rule, reason) of a sliding-log limit that refuses."""
    if call.script == "buckets":
        return BUCKET_REFUSAL
    return LIMIT_REASONS.get(name, ("custom_rate_limit", "custom_limit"))


def decisions_json(admission: Admission) -> str:
    return json.dumps(admission.decision.details, separators=(",", ":"), sort_keys=True)


def _seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))
