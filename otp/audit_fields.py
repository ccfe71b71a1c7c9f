"""The audit vocabulary, for every Python reader and writer: the event names, the names of the
hourly counter fields, and which fields of an audit context reach a record or a log line.

The Lua writer keeps the same names: ``audit()`` in ``storage/lua/lib.lua`` (it names the counter
fields and skips the counter-only context names) and the tally names in ``storage/lua/counters.lua``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final


class Event(StrEnum):
    """An audit event's ``event`` field (a `str`: it is stored, logged and compared as its value)."""

    STARTED = "started"
    RESENT = "resent"
    REFUSED = "refused"
    APPROVED = "approved"
    CHECK_FAILED = "check_failed"
    MAX_ATTEMPTS = "max_attempts"
    EXPIRED = "expired"
    CANCELED = "canceled"
    DELIVERY = "delivery"
    ADMIN = "admin"  # an admin action (AdminAction), with who took it: otp.core.admin_audit
    OPTED_OUT = "opted_out"  # Twilio said 21610 (the user replied STOP): the number is marked
    # A send's expected wait for its sender's slot is past OTP_SENDER_MAX_WAIT (settle_job.lua).
    SENDER_QUEUED = "sender_queued"
    BUDGET = "budget"  # a spend budget reached 80 % or 100 % today (once each per scope and day)


class AdminAction(StrEnum):
    """An ``admin`` event's ``action``: every change an operator makes to who may do what, written
    by otp.core.admin_audit.record from the admin API, the dashboard and the command line alike."""

    SAFELIST_ADD = "safelist_add"
    SAFELIST_REMOVE = "safelist_remove"
    UNBLOCK = "unblock"  # a pumping block lifted (a prefix or a country)
    OPT_OUT_CLEAR = "opt_out_clear"
    BUDGET_SET = "budget_set"
    BUDGET_REMOVE = "budget_remove"
    KEY_CREATE = "key_create"
    KEY_REVOKE = "key_revoke"
    DASHBOARD_SIGN_IN = "dashboard_sign_in"
    DASHBOARD_SIGN_IN_FAILED = "dashboard_sign_in_failed"
    DASHBOARD_SIGN_OUT = "dashboard_sign_out"


EVENTS: Final[tuple[Event, ...]] = tuple(Event)
# Events a verification goes through, in the order the overview lists them.
VERIFICATION_EVENTS: Final[tuple[Event, ...]] = (
    Event.STARTED,
    Event.RESENT,
    Event.APPROVED,
    Event.CHECK_FAILED,
    Event.MAX_ATTEMPTS,
    Event.EXPIRED,
    Event.CANCELED,
)

# Hourly counter fields (``otp:{pNN}:agg:<hour>``): an event counts under its name, except these,
# whose fields name more (lib.lua's audit()):
REFUSED_COUNTER: Final = "refused:"  # refused:<rule>:<reason>
DELIVERY_COUNTER: Final = "delivery:"  # delivery:<status>:<error code or "">
FLAGGED_COUNTER: Final = "flagged:"  # flagged:<scope>:<reason>[,<scope>:<reason>], beside the event
# Final delivery states per country and per sender (the operator's From number or Messaging Service),
# and the time to delivered in buckets (otp.delivery.TIME_TO_DELIVERED_BUCKETS, by upper bound):
#   country_delivery:<status>:<CC>  sender_delivery:<status>:<sender>
#   country_ttd:<CC>:<bound>        sender_ttd:<sender>:<bound>   (lib.lua's count_delivery)
COUNTRY_DELIVERY_COUNTER: Final = "country_delivery:"
SENDER_DELIVERY_COUNTER: Final = "sender_delivery:"
COUNTRY_TTD_COUNTER: Final = "country_ttd:"
SENDER_TTD_COUNTER: Final = "sender_ttd:"
# … and the destination tallies of ``started`` and ``approved`` events: <tally><prefix or country>.
SENT_TO_PREFIX: Final = "sent@prefix:"
APPROVED_TO_PREFIX: Final = "approved@prefix:"
SENT_TO_COUNTRY: Final = "sent@country:"
APPROVED_TO_COUNTRY: Final = "approved@country:"

# Refused attempts by destination, source and rule, in an hourly hash of their own
# (keys.audit_refusal_counter_of_hour: small unless something is under attack) and in the minute
# counters: refused@prefix:<prefix>, refused@country:<CC>, refused@ip:<ip>, refused@key:<key id or
# /v2 service sid>, refused@rule:<rule>. And the starts and approvals by source, in the hourly
# keys.audit_source_counter_of_hour and the minute counters: sent@ip:<ip>, approved@ip:<ip> (the
# check's IP), sent@key:<key>, approved@key:<key>. The minute counters (keys.audit_minute_counter_of)
# hold these, the destination tallies and the event names above, nothing else (lib.lua's audit()).
REFUSED_TO_PREFIX: Final = "refused@prefix:"
REFUSED_TO_COUNTRY: Final = "refused@country:"
REFUSED_FROM_IP: Final = "refused@ip:"
REFUSED_BY_KEY: Final = "refused@key:"
REFUSED_BY_RULE: Final = "refused@rule:"
# How many refused@ip: and refused@prefix: fields a hash holds (capped: keys.REFUSAL_TALLIES_PER_HOUR,
# …_PER_MINUTE), and the IP or prefix tallies of refusals past the cap, counted in no field of their own
# (lib.lua's audit()).
REFUSED_TALLIES: Final = "refused~tallies"
REFUSED_UNTALLIED: Final = "refused~untallied"
SENT_FROM_IP: Final = "sent@ip:"
APPROVED_FROM_IP: Final = "approved@ip:"
SENT_BY_KEY: Final = "sent@key:"
APPROVED_BY_KEY: Final = "approved@key:"

# Spend in millionths of the price table's currency (otp.core.budget): the estimates of sends per
# destination country and per budget tenant (moved by reconciliations with the real price), and
# the estimates of the sends each rule refused: spend:country:<CC>, spend:key:<tenant>,
# blocked_spend:<rule>.
SPEND_TO_COUNTRY: Final = "spend:country:"
SPEND_BY_KEY: Final = "spend:key:"
BLOCKED_SPEND: Final = "blocked_spend:"
# Twilio Lookup's part in a start (otp.core.line_types), on its started, resent or refused event:
# where the line type came from (lookup, cached, no_data, fallback, failed, phonenumbers), the type
# the policy judged, why Lookup gave no answer, and what this start's Lookup cost (only when one
# was paid for, in the price table's currency: the figure spend adds up). Hourly counters count
# the starts by source: lookup:<source>.
LOOKUP: Final = "lookup"
LINE_TYPE: Final = "line_type"
LOOKUP_ERROR: Final = "lookup_error"
LOOKUP_PRICE: Final = "lookup_price"
LOOKUP_COUNTER: Final = "lookup:"

# Webhook events dropped before delivery: webhook_dropped:<reason> (queue_full: the tenant's bounded
# event outbox pushed its oldest event out; lib.lua's emit_event).
WEBHOOK_DROPPED_COUNTER: Final = "webhook_dropped:"

# The events otp posts to a tenant's webhooks (/v2 service Webhooks, a /v1 key's webhook): their
# one home. The Lua writers receive them from the script registry (``VERIFY_EVENT`` for the
# ``verification.`` ones by the status that causes them, ``MESSAGE_EVENT`` for the ``message.`` ones
# by delivery state); the adapters validate EventTypes against them.
WEBHOOK_EVENTS: Final[tuple[str, ...]] = (
    "verification.started",
    "verification.approved",
    "verification.canceled",
    "verification.expired",
    "verification.max_attempts_reached",
    "message.delivered",
    "message.undelivered",
    "message.failed",
)
# An EventTypes entry that subscribes to every event, as at Twilio.
WEBHOOK_ANY: Final = "*"
# What an EventTypes list may name.
WEBHOOK_EVENT_TYPES: Final[tuple[str, ...]] = (WEBHOOK_ANY, *WEBHOOK_EVENTS)

# For the hourly counters only, never written: the destination prefix beside the masked number's
# last digits would spell the whole number.
COUNTER_ONLY_PREFIX = "_prefix"
# … so a record carries the prefix's keyed hash instead (Keyring.prefix_hash): the audit log's
# prefix filter matches it.
PREFIX_HASH = "ph"


def recorded(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields a record or log line may carry: not the counter-only ones (``_…``), not empty."""
    return {k: v for k, v in fields.items() if not k.startswith("_") and v not in (None, "")}
