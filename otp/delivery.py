"""Delivery states of an SMS and their order: the one home of this rule.

Twilio's Message resource moves through these states; callbacks may arrive out of order or
twice, so a send attempt only ever moves to a state of higher rank. The Lua scripts receive
the same table from the script registry, the webhook accepts only these names, the OpenAPI
enum and the dashboard's funnel are built from them.
"""

from __future__ import annotations

from typing import Final

# Twilio's MessageStatus values a send to a handset can take, each with its rank.
RANK: Final[dict[str, int]] = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "delivered": 5,
    "read": 5,
}
STATES: Final[tuple[str, ...]] = tuple(RANK)

# Nothing moves a send on from these.
FINAL: Final[frozenset[str]] = frozenset({"delivered", "undelivered", "failed", "canceled", "read"})
FAILED: Final[frozenset[str]] = frozenset({"undelivered", "failed"})

# Twilio's MessageStatus values for inbound and aggregate messages: a callback may name them,
# and it is answered 2xx and ignored rather than refused.
OTHER_TWILIO_STATES: Final[frozenset[str]] = frozenset({"receiving", "received", "partially_delivered"})

# The steps the dashboard and /v1/stats count, in the order they are drawn.
FUNNEL: Final[tuple[str, ...]] = ("queued", "sent", "delivered", "undelivered", "failed")

# The states a send attempt's timeline records (the first time each is reached, in ms after the
# attempt was queued): its start is the attempt's own time, Twilio's acceptance its ``sent_at``.
TIMELINE: Final[tuple[str, ...]] = ("sent", "delivered", "undelivered", "failed")
# Final states a send is counted in per country and per sender (delivery rate, time to delivered).
COUNTED: Final[tuple[str, ...]] = ("delivered", "undelivered", "failed")
# Upper bounds (seconds) of the time-to-delivered buckets: the Prometheus histogram and the hourly
# counters the dashboard's p50/p95 are read from use the same ones.
TIME_TO_DELIVERED_BUCKETS: Final[tuple[float, ...]] = (1, 2, 3, 5, 10, 15, 30, 60, 120, 300, 600)
