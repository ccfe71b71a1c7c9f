"""SMS-pumping replay: a legitimate background and the attacks of issue 12, driven through the real
app (in-process, real Redis, the real worker delivering to a recording sender) with an injected
clock. ``tests/test_fraud_replay.py`` runs small versions; ``bench/fraud_replay.py`` the full ones.

Time runs over two simulated days: day 1 is background only, day 2 background plus the attack.
Every start is an HTTP request to ``/v1/verifications``; a legitimate user (and an attacker who
approves) types the code from the SMS the worker sent into ``/v1/verifications/check``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import phonenumbers
from conftest import RecordingSender, Service
from phonenumbers import PhoneNumberType

from otp.core.messages import estimate_price
from otp.edge.sms import Receipt, SmsMessage

DAY = 86_400.0
LEGIT_COUNTRIES = ("US", "GB", "DE")
# The five most expensive countries of otp's own price table (E).
EXPENSIVE = ("NL", "DE", "IT", "FR", "ES")
CODE = re.compile(r"(?<!\d)\d{4,10}(?!\d)")


class LatestCodes(RecordingSender):
    """The recording sender, keeping only each number's latest code (a replay sends thousands)."""

    def __init__(self) -> None:
        super().__init__()
        self.latest: dict[str, str] = {}
        self.count = 0

    async def send(self, message: SmsMessage) -> Receipt:
        self.count += 1
        self.latest[message.to] = CODE.findall(message.body)[0]
        return Receipt(message_sid=f"SM{self.count:032x}", status="queued", segments=1)


MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)


def _valid(e164: str) -> bool:
    """A valid mobile number: what an attacker would pick, since otp refuses other types anyway."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in MOBILE_TYPES


def prefixes(region: str, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct destination prefixes (E.164 minus the last 4 digits) of valid mobile
    numbers of ``region``, made by varying the digits just before the last four of its example."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    if example is None:
        return []
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    head, tail = e164[:-6], e164[-4:]
    found: list[str] = []
    candidates = [f"{n:02d}" for n in range(100)]
    rng.shuffle(candidates)
    for middle in candidates:
        if _valid(head + middle + tail):
            found.append(head + middle)
        if len(found) == count:
            break
    return found


def number_in(prefix: str, rng: random.Random) -> str:
    return f"{prefix}{rng.randrange(10_000):04d}"


def attack_regions(count: int) -> list[str]:
    """``count`` countries with valid mobile numbers and prefixes to spare, none of the legitimate ones."""
    rng = random.Random(7)
    chosen = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        if region in LEGIT_COUNTRIES or region in ("CA",):
            continue
        if len(prefixes(region, 10, rng)) == 10:
            chosen.append(region)
        if len(chosen) == count:
            break
    return chosen


@dataclass
class Tally:
    attempts: int = 0
    sent: int = 0
    cost: Decimal = Decimal("0")
    refused_by: Counter[str] = field(default_factory=Counter)
    first_refusal: dict[str, float] = field(default_factory=dict)

    def add(self, answer: dict[str, Any], status: int, country: str, at: float) -> None:
        self.attempts += 1
        if status == 201:
            self.sent += 1
            self.cost += Decimal(estimate_price(country, 1)[0])
            return
        error = answer.get("error", {})
        rule = f"{error.get('rule') or '-'}:{error.get('code')}"
        self.refused_by[rule] += 1
        self.first_refusal.setdefault(rule, at)


# An event: (time, sequence, kind, payload); the sequence keeps the heap stable.
Event = tuple[float, int, str, dict[str, Any]]


@dataclass
class Replay:
    service: Service
    sender: LatestCodes
    seed: int = 1
    legit: Tally = field(default_factory=Tally)
    attack: Tally = field(default_factory=Tally)
    legit_refusals: list[dict[str, Any]] = field(default_factory=list)
    _queue: list[Event] = field(default_factory=list)
    _seq: Iterable[int] = field(default_factory=itertools.count)
    _start: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._start = self.service.clock()

    def at(self, offset: float, kind: str, **payload: Any) -> None:
        heapq.heappush(self._queue, (self._start + offset, next(self._seq), kind, payload))  # type: ignore[call-overload]

    # -- traffic ------------------------------------------------------------------------------

    def background(self, *, per_day: int, days: int = 2, rotating: bool = False, key: str = "") -> None:
        """Legitimate users: ``per_day`` starts a day over 30 US/GB/DE prefixes, at random times
        (or evenly spaced, the prefix turning each time, when ``rotating``); four in five type
        their code within a minute."""
        pool = [p for region in LEGIT_COUNTRIES for p in prefixes(region, 10, random.Random(region))]
        total = per_day * days
        for i in range(total):
            when = (i + 0.5) * DAY * days / total if rotating else self.rng.uniform(0, DAY * days)
            prefix = pool[i % len(pool)] if rotating else self.rng.choice(pool)
            check = self.rng.uniform(5, 60) if self.rng.random() < 0.8 else None
            self.at(
                when,
                "start",
                who="legit",
                to=number_in(prefix, self.rng),
                key=key,
                ip=f"198.51.{self.rng.randrange(256)}.{self.rng.randrange(256)}",
                check=check,
            )

    def attack_start(self, when: float, to: str, *, key: str = "", ip: str = "", approve: float | None = None) -> None:
        self.at(DAY + when, "start", who="attack", to=to, key=key, ip=ip, check=approve)

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        while self._queue:
            when, _, kind, payload = heapq.heappop(self._queue)
            self.service.clock.set(when)
            if kind == "start":
                await self._start_one(**payload)
            elif kind == "check":
                await self._check_one(**payload)
            elif kind == "burst":
                await self._burst(**payload)

    def _headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.service.key}"}

    async def _start_one(self, *, who: str, to: str, key: str, ip: str, check: float | None) -> None:
        body: dict[str, Any] = {"to": to}
        if ip:
            body["ip"] = ip
        response = await self.service.http.post("/v1/verifications", json=body, headers=self._headers(key))
        answer = response.json()
        country = phonenumbers.region_code_for_number(phonenumbers.parse(to)) or ""
        tally = self.legit if who == "legit" else self.attack
        tally.add(answer, response.status_code, country, self.service.clock() - self._start)
        if who == "legit" and response.status_code != 201:
            self.legit_refusals.append({"at": self.service.clock() - self._start, "to": to, **answer})
        if response.status_code == 201 and check is not None:
            heapq.heappush(
                self._queue,
                (self.service.clock() + check, next(self._seq), "check", {"vid": answer["id"], "to": to, "key": key}),  # type: ignore[call-overload]
            )

    async def _check_one(self, *, vid: str, to: str, key: str) -> None:
        await self.service.deliver()
        code = self.sender.latest.get(to)
        if code is None:  # no SMS reached the user (the rules of an older otp can drop one): no check
            return
        response = await self.service.http.post(
            "/v1/verifications/check", json={"id": vid, "code": code}, headers=self._headers(key)
        )
        assert response.status_code == 200, response.text

    async def _burst(self, *, to: str, count: int, key: str) -> None:
        answers = await asyncio.gather(
            *(
                self.service.http.post("/v1/verifications", json={"to": to}, headers=self._headers(key))
                for _ in range(count)
            )
        )
        for response in answers:
            self.attack.add(response.json(), response.status_code, "", self.service.clock() - self._start)


# -- the attacks (offsets are from the start of day 2) ------------------------------------------


def attack_a(replay: Replay, *, count: int = 500) -> None:
    """A: ``count`` starts to one prefix within an hour, one IP."""
    prefix = prefixes("GB", 11, random.Random("GB"))[10]  # a GB prefix no legitimate user has
    for i in range(count):
        replay.attack_start(36_000 + i * 3600 / count, number_in(prefix, replay.rng), ip="203.0.113.9")


def attack_a_prime(
    replay: Replay, *, count: int = 500, new_ip_each: bool = False, keys: list[str] | None = None
) -> None:
    """A': ``count`` starts to +447700 and six random digits (100 prefixes) within an hour, one IP;
    D' when ``new_ip_each`` and ``keys``: a fresh IP per start, spread over API keys."""
    for i in range(count):
        to = f"+447700{replay.rng.randrange(1_000_000):06d}"
        while not _valid(to):
            to = f"+447700{replay.rng.randrange(1_000_000):06d}"
        ip = f"203.0.{replay.rng.randrange(256)}.{replay.rng.randrange(256)}" if new_ip_each else "203.0.113.9"
        key = keys[i % len(keys)] if keys else ""
        replay.attack_start(36_000 + i * 3600 / count, to, ip=ip, key=key)


def attack_b(
    replay: Replay, *, countries: int = 50, per_country: int = 10, hours: int = 24, approve: float = 0.0
) -> None:
    """B: one unverified start per prefix-hour to ``per_country`` prefixes in each of ``countries``
    countries for ``hours`` hours; C when ``approve`` > 0: the attacker approves that share."""
    pools = [prefixes(region, per_country, random.Random(region)) for region in attack_regions(countries)]
    for hour in range(hours):
        for pool in pools:
            for prefix in pool:
                when = hour * 3600 + replay.rng.uniform(0, 3600)
                approves = replay.rng.uniform(5, 60) if replay.rng.random() < approve else None
                replay.attack_start(when, number_in(prefix, replay.rng), approve=approves)


def attack_e(replay: Replay, *, per_hour: int = 20, hours: int = 24) -> None:
    """E: ``per_hour`` starts an hour spread over the five most expensive countries, random numbers."""
    for hour in range(hours):
        for i in range(per_hour):
            region = EXPENSIVE[i % len(EXPENSIVE)]
            pool = prefixes(region, 60, random.Random(f"E{region}"))
            when = hour * 3600 + replay.rng.uniform(0, 3600)
            replay.attack_start(when, number_in(replay.rng.choice(pool), replay.rng))


def attack_f(replay: Replay, *, countries: int = 10, per_country: int = 10, hours: int = 24) -> None:
    """F: a start and four resends per verification, one verification per prefix-hour, 10 × 10."""
    pools = [prefixes(region, per_country, random.Random(region)) for region in attack_regions(countries)]
    for hour in range(hours):
        for pool in pools:
            for prefix in pool:
                when = hour * 3600 + replay.rng.uniform(0, 3000)
                to = number_in(prefix, replay.rng)
                for resend, wait in enumerate((0, 31, 92, 213, 454)):
                    replay.attack_start(when + wait + resend * 0.001, to)


def refused_burst(replay: Replay, *, count: int = 100) -> str:
    """Two SMS (a start and its free first resend), then ``count`` concurrent starts to the same
    number (all refused); returns a neighbouring number for another tenant to try."""
    prefix = prefixes("GB", 12, random.Random("GB"))[11]
    to = number_in(prefix, replay.rng)
    replay.attack_start(36_000, to)
    replay.attack_start(36_000, to)  # the verification's first resend: the cooldown lets it through
    replay.at(DAY + 36_001, "burst", to=to, count=count, key="")
    return f"{prefix}{(int(to[-4:]) + 1) % 10_000:04d}"


SCENARIOS: dict[str, Callable[..., Any]] = {
    "A": attack_a,
    "A'": attack_a_prime,
    "B": attack_b,
    "E": attack_e,
    "F": attack_f,
}
