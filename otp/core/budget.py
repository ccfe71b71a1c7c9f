"""Daily spend budgets: the SMS bill bounded by construction.

Three scopes, each a counter per day of the budget's time zone in a Redis slot of its own
(keys.budget_day): everything (``OTP_BUDGET_DAILY``), the destination country
(``OTP_BUDGET_COUNTRY``, ``*`` for every country not named) and the budget tenant, an API key or a
/v2 account for all of its services (set with the admin API or ``otp keys budget``). Amounts are
integer millionths of the price table's currency (`messages.PRICE_UNIT`).

A start's estimate (its SMS's segments × the destination's price) is reserved by ``budget.lua``
in the same round trip as the other limits (`Policy.admit_send`): each scope reserves only if the
estimate fits, atomically, so no budget is overspent however many starts run at once, on one
Redis or many. A send refused anywhere (another scope, another rule, the number's own limits in
start.lua) gives every reservation back within the request, like the sliding-log limits; a
concurrent start may meet that reservation for the moment and be refused, never the other way
round: the error is always on the side of spending less. The tenant scope always counts, so a
budget set at noon already knows the morning's spend.

When Twilio's real price arrives (the worker's send receipt or a poll of the Message resource;
Twilio's status callbacks carry none, but one that does is used), the day the send reserved in
moves by (real − estimate), once per send (`reconcile`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from otp.audit_fields import BLOCKED_SPEND, SPEND_BY_KEY, SPEND_TO_COUNTRY
from otp.core import messages
from otp.core.phone import Phone
from otp.core.stats import HOUR_MS, hourly_events
from otp.errors import RateLimited
from otp.storage import budgets
from otp.storage import keys as keyspace
from otp.storage.store import Call, Store

log = logging.getLogger("otp.budget")

MICRO = 1_000_000
GLOBAL = "g"
COUNTRY = "c"
TENANT = "t"
# A number without a country (non-geographic): its country scope, under the "*" budget.
NO_COUNTRY = "ZZ"
# The levels that write an audit event, once per scope and day (budget.lua).
LEVELS = (80, 100)
# The most a budget may be: far above any real day, far below what Lua's doubles count exactly.
MAX_AMOUNT = Decimal(1_000_000_000)


@dataclass(frozen=True)
class BudgetConfig:
    """The budgets the operator set (the shell builds them from OTP_BUDGET_*), and what the
    estimate needs to render the SMS as the worker will."""

    daily: Decimal | None = None
    countries: Mapping[str, Decimal] = field(default_factory=dict)  # "*": every other country
    timezone: str = "UTC"
    prices: Mapping[str, Decimal] | None = None  # None: messages.DEFAULT_PRICES
    app_name: str = "otp"
    webotp_domain: str = ""

    def country_budget(self, country: str) -> Decimal | None:
        return self.countries.get(country, self.countries.get("*"))


@dataclass(frozen=True)
class Scope:
    """One budget scope: ``kind`` g / c / t and its value (a country, a tenant)."""

    kind: str
    value: str = ""

    @property
    def id(self) -> str:
        return self.kind if self.kind == GLOBAL else f"{self.kind}:{self.value}"

    @property
    def label(self) -> str:
        """As the refusal, the audit and the metric name it: ``global``, ``country:GB``, ``key:<id>``."""
        return {GLOBAL: "global", COUNTRY: f"country:{self.value}", TENANT: f"key:{self.value}"}[self.kind]

    @classmethod
    def from_label(cls, label: str) -> Scope:
        kind, _, value = label.partition(":")
        return cls({"global": GLOBAL, "country": COUNTRY, "key": TENANT}[kind], value)


def is_label(name: str) -> bool:
    """Whether ``name`` (of a start's decision details) is a budget scope's label."""
    return name == "global" or name.startswith(("country:", "key:"))


def to_micro(amount: Decimal | str) -> int:
    """Millionths of ``amount`` (its absolute value: Twilio's prices are negative, a debit)."""
    value = abs(Decimal(amount))
    return int((value * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_micro(amount: int) -> str:
    return str((Decimal(amount) / MICRO).quantize(Decimal("0.000001")).normalize()) if amount else "0"


def parse_amount(raw: str, field_name: str) -> Decimal:
    """A budget amount: a finite number, not negative, at most `MAX_AMOUNT`; ValueError naming ``field_name``."""
    try:
        value = Decimal(raw.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"{field_name}: {raw!r} is not a number") from None
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise ValueError(f"{field_name}: {raw!r} must be an amount from 0 to {MAX_AMOUNT}")
    return value


def parse_country_budgets(text: str) -> dict[str, Decimal]:
    """``"US=50,GB=20,*=5"``: the price table's format (`messages.parse_price_table`)."""
    table = messages.parse_price_table(text, what="OTP_BUDGET_COUNTRY", example="US=50,GB=20,*=5")
    for country, amount in table.items():
        if amount > MAX_AMOUNT:
            raise ValueError(f"OTP_BUDGET_COUNTRY: {amount} for {country} is above {MAX_AMOUNT}")
    return table


@dataclass(frozen=True)
class Day:
    """A day of the budget's time zone: its name (YYYYMMDD) and when the next one starts."""

    name: str
    resets_ms: int

    @property
    def resets_at(self) -> str:
        return datetime.fromtimestamp(self.resets_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_of(now_ms: int, timezone: str) -> Day:
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now_ms / 1000, zone)
    # The next local midnight (zoneinfo gives the right offset across a DST change).
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), zone)
    return Day(local.strftime("%Y%m%d"), int(midnight.timestamp() * 1000))


@dataclass(frozen=True)
class Crossing:
    scope: str  # its label
    level: int
    spent: int
    limit: int


class Budgets:
    def __init__(self, store: Store, config: BudgetConfig) -> None:
        self.store = store
        self.config = config

    def estimate(self, phone: Phone, body: str) -> int:
        """The send's cost as the price table has it, in millionths."""
        price, _ = messages.estimate_price(phone.country, messages.segments(body), self.config.prices)
        return to_micro(price)

    def scopes(self, country: str, tenant: str) -> list[tuple[Scope, int | None]]:
        """The scopes a send spends in, with their limits (None: the tenant's own, read by the script)."""
        found: list[tuple[Scope, int | None]] = [(Scope(TENANT, tenant), None)]
        if self.config.daily is not None:
            found.insert(0, (Scope(GLOBAL), to_micro(self.config.daily)))
        per_country = self.config.country_budget(country)
        if per_country is not None:
            found.insert(-1, (Scope(COUNTRY, country or NO_COUNTRY), to_micro(per_country)))
        return found

    def reserve_calls(self, country: str, tenant: str, amount: int, now_ms: int) -> tuple[Day, list[tuple[str, Call]]]:
        """The reservations of a send for `Policy.admit_send`, named by the scopes' labels."""
        day = day_of(now_ms, self.config.timezone)
        calls = []
        for scope, limit in self.scopes(country, tenant):
            args: dict[str, Any] = {"op": "reserve", "amount": amount, "ttl_ms": keyspace.BUDGET_DAY_TTL_MS}
            args["reset_ms"] = day.resets_ms
            if limit is not None:
                args["limit"] = limit
            calls.append((scope.label, _call(scope, day.name, args)))
        return day, calls

    def charge_calls(self, country: str, tenant: str, price: Decimal, now_ms: int) -> list[Call]:
        """Spend already paid (a Lookup) into today's counter of every scope of the start: counted,
        never refused (it is spent), so a day may end a Lookup's price over its budget."""
        day = day_of(now_ms, self.config.timezone)
        args = {"op": "adjust", "amount": to_micro(price), "ttl_ms": keyspace.BUDGET_DAY_TTL_MS}
        return [_call(scope, day.name, args) for scope, _ in self.scopes(country, tenant)]

    @staticmethod
    def note(amount: int, day: Day, country: str, calls: Sequence[tuple[str, Call]]) -> str:
        """What the send attempt keeps for its reconciliation (start.lua's ``bu:<n>``)."""
        kinds = "".join(sorted(Scope.from_label(name).kind for name, _ in calls))
        return f"{amount}|{day.name}|{country or NO_COUNTRY}|{kinds}"

    async def reconcile(
        self, partition: int, now_ms: int, vid: str, send: int, price: tuple[str | None, str | None]
    ) -> int | None:
        """Move the send's day by (real − estimate) once its real price is known; the delta, or
        None when there was nothing to do (no price yet, done already); a price in another currency
        settles the send at its estimate.
        ``price`` is Twilio's (price, price_unit)."""
        amount, unit = price
        if not amount or unit is None:
            return None
        real: int | None = None
        if unit.upper() != messages.PRICE_UNIT:
            # The estimate stays, and the note goes: else the send is polled for a price until
            # retention ends, though no price in this currency will ever reconcile it.
            log.warning(
                "budget: a price in %s, not the price table's %s; the estimate stays", unit[:8], messages.PRICE_UNIT
            )
        else:
            try:
                value = Decimal(amount)
            except InvalidOperation:
                return None
            # copy_abs, not abs(): abs() rounds to the context and raises Overflow for 1e999999999.
            if not value.is_finite() or value.copy_abs() > MAX_AMOUNT:
                return None
            real = to_micro(value)
        settled = await self.store.settle_budget(partition, now_ms, vid, send, real)
        if not settled:
            return None
        delta, day, country, kinds, tenant = settled
        if delta:
            values = {GLOBAL: "", COUNTRY: country, TENANT: tenant}
            args = {"op": "adjust", "amount": delta, "ttl_ms": keyspace.BUDGET_DAY_TTL_MS}
            calls = [_call(Scope(kind, values[kind]), day, args) for kind in kinds]
            await self.store.run_many(calls, now_ms)
        return int(delta)

    async def set_tenant_budget(self, tenant: str, amount: Decimal | None) -> None:
        limit = None if amount is None else to_micro(amount)
        await budgets.set_limit(self.store, keyspace.budget_limit(Scope(TENANT, tenant).id), limit)

    async def status(self, tenants: Sequence[str], countries: Sequence[str], now_ms: int) -> dict[str, Any]:
        """Today's spend and budgets: global, per country (those named, and ``countries``) and per tenant."""
        day = day_of(now_ms, self.config.timezone)
        rows: list[tuple[Scope, int | None]] = []
        if self.config.daily is not None:
            rows.append((Scope(GLOBAL), to_micro(self.config.daily)))
        named = sorted({c for c in self.config.countries if c != "*"} | set(countries))
        for country in named:
            amount = self.config.country_budget(country)
            rows.append((Scope(COUNTRY, country), None if amount is None else to_micro(amount)))
        rows.extend((Scope(TENANT, t), None) for t in tenants)
        spent, own = await budgets.figures(
            self.store,
            [keyspace.budget_day(s.id, day.name) for s, _ in rows],
            [keyspace.budget_limit(Scope(TENANT, t).id) for t in tenants],
        )
        limits = dict(zip(tenants, own, strict=True))
        scopes = []
        for (scope, most), used in zip(rows, spent, strict=True):
            scopes.append(_figure(scope, used, limits[scope.value] if scope.kind == TENANT else most))
        return {"day": day.name, "timezone": self.config.timezone, "resets_at": day.resets_at, "scopes": scopes}


def _call(scope: Scope, day: str, args: Mapping[str, Any]) -> Call:
    keys = [keyspace.budget_day(scope.id, day), keyspace.budget_limit(scope.id)]
    return Call("budget", keyspace.scope_tag("bud", scope.id), keys, args)


def _figure(scope: Scope, spent: int, limit: int | None) -> dict[str, Any]:
    left = None if limit is None else max(0, limit - spent)
    return {
        "scope": scope.label,
        "spent": from_micro(spent),
        "budget": None if limit is None else from_micro(limit),
        "left": None if left is None else from_micro(left),
        "currency": messages.PRICE_UNIT,
    }


def exhausted(scope_label: str, retry_after: int | None, resets_ms: int, timezone: str) -> RateLimited:
    """The refusal of a start that the budget ``scope_label`` can't hold."""
    resets = Day("", resets_ms).resets_at
    scope = Scope.from_label(scope_label)
    what = {GLOBAL: "the service's", COUNTRY: f"country {scope.value}'s", TENANT: "this API key's"}[scope.kind]
    return RateLimited(
        f"{what} daily SMS budget is spent; it resets at midnight {timezone} ({resets})",
        code="budget_exhausted",
        field="Authorization" if scope.kind == TENANT else "to",
        retry_after=retry_after,
        details={"rule": "budget", "scope": scope_label, "resets_at": resets},
    )


@dataclass(frozen=True)
class SpendToday:
    """The dashboard's spend figures for today (the budgets' day): estimates moved by the real
    prices reconciled so far, from the hourly audit counters (hours since the day's start)."""

    day: Day
    by_country: dict[str, int]
    by_key: dict[str, int]
    blocked_by_rule: dict[str, int]
    budgets: dict[str, Any]


async def spend_today(budgets: Budgets, now_ms: int) -> SpendToday:
    day = day_of(now_ms, budgets.config.timezone)
    # The hour the day began in (a zone 30 minutes off the hour counts that hour whole).
    first = (day.resets_ms - 86_400_000) // HOUR_MS
    hours = list(range(first, now_ms // HOUR_MS + 1))
    totals: dict[str, dict[str, int]] = {SPEND_TO_COUNTRY: {}, SPEND_BY_KEY: {}, BLOCKED_SPEND: {}}
    for counts in (await hourly_events(budgets.store, hours)).values():
        for name, n in counts.items():
            for prefix, into in totals.items():
                if name.startswith(prefix):
                    value = name[len(prefix) :]
                    into[value] = into.get(value, 0) + n
    by_country, by_key = totals[SPEND_TO_COUNTRY], totals[SPEND_BY_KEY]
    status = await budgets.status(sorted(by_key), sorted(by_country), now_ms)
    return SpendToday(day, by_country, by_key, totals[BLOCKED_SPEND], status)
