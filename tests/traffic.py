"""A big audit log for the dashboard's load tests, written the way the service writes one: every
event through the store's ``audit_event`` (lib.lua's ``audit()``), so its stream entries and hourly
counters have their real format (``otp.devtools.synthetic`` writes a million faster, with its own
copy of that format: fine for the bench, not for a test of the counters)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from otp.audit_fields import COUNTER_ONLY_PREFIX
from otp.storage.store import Store

COUNTRIES = {"US": "1", "GB": "44", "FR": "33", "DE": "49", "IN": "91", "BR": "55", "NG": "234", "ID": "62"}
# US four times as often as the others, as in synthetic.py.
WEIGHTS = [4 if cc == "US" else 1 for cc in COUNTRIES]
REFUSALS = [
    ("resend_cooldown", "resend_too_soon"),
    ("number_sends", "number_hourly_limit"),
    ("sms_pumping_prefix", "pumping_unverified_hourly"),
    ("ip_sends", "ip_hourly_limit"),
    ("geo_permissions", "country_not_allowed"),
]
# The mix of events: most starts are approved, some deliveries fail, a few requests are refused.
MIX = [("started", 33), ("approved", 27), ("delivery", 18), ("check_failed", 7), ("expired", 5)]
MIX += [("resent", 3), ("refused", 7)]
CONCURRENT = 200  # calls in flight: within the client's connection pool


def _event(rng: random.Random) -> dict[str, Any]:
    cc = rng.choices(list(COUNTRIES), WEIGHTS)[0]
    prefix = f"+{COUNTRIES[cc]}{200 + 17 * rng.randint(0, 39)}{rng.randint(200, 699)}"
    event = rng.choices([name for name, _ in MIX], [weight for _, weight in MIX])[0]
    fields: dict[str, Any] = {
        "event": event,
        "to": f"+{COUNTRIES[cc]}*********{rng.randint(0, 99):02d}",
        "country": cc,
        COUNTER_ONLY_PREFIX: prefix,
        "key": "traffic000000001",
        "ip": f"203.0.113.{rng.randint(1, 254)}",
        "vid": "VE" + "".join(rng.choice("0123456789abcdef") for _ in range(32)),
    }
    if event == "delivery":
        status, code = rng.choices(
            [("sent", ""), ("delivered", ""), ("undelivered", "30003"), ("failed", "30008")], [50, 43, 5, 2]
        )[0]
        fields.update(status=status, error_code=code)
    elif event == "refused":
        rule, reason = rng.choice(REFUSALS)
        fields.update(decision="refused", rule=rule, reason=reason)
    elif event == "check_failed":
        fields["attempt"] = rng.randint(1, 5)
    return fields


async def fill(store: Store, total: int, *, now_ms: int, span_ms: int = 7 * 86_400_000, seed: int = 1) -> int:
    """``total`` events spread evenly over ``span_ms`` before ``now_ms`` and over the partitions."""
    rng = random.Random(seed)
    step = max(1, span_ms // max(1, total))
    first = now_ms - step * total
    for start in range(0, total, CONCURRENT):
        batch = range(start, min(total, start + CONCURRENT))
        await asyncio.gather(*(store.audit_event(i % store.partitions, first + i * step, _event(rng)) for i in batch))
    return total
