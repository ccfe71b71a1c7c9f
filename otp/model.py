"""Domain records shared by every layer: storage decodes into them, the core works with them,
adapters render them. Kernel: imports nothing from core, storage or web."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A verification's statuses: the core decides them, the adapters and the /v1 models name them.
PENDING = "pending"
APPROVED = "approved"
CANCELED = "canceled"
EXPIRED = "expired"
MAX_ATTEMPTS = "max_attempts_reached"


@dataclass(frozen=True)
class SendAttempt:
    number: int
    at: float
    channel: str
    delivery: dict[str, Any]
    message_sid: str | None = None
    segments: int | None = None
    price: str | None = None
    price_unit: str | None = None
    sent_at: float | None = None
    tries: int = 0
    last_error: str | None = None
    # The first time each of otp.delivery.TIMELINE's states was reached (epoch ms), and the
    # destination country (the worker's word, at the send).
    timeline: dict[str, int] = field(default_factory=dict)
    country: str | None = None
    # The pool's sender it went (or waits to go) out with, and the wait for that sender's slot the
    # worker expected (seconds) when the sender was busy: the time the code spends queued at the sender.
    sender: str | None = None
    queued_at_sender: float | None = None


@dataclass(frozen=True)
class Verification:
    id: str
    to: str  # E.164: adapters mask it
    channel: str
    locale: str
    status: str
    created_at: float
    updated_at: float
    expires_at: float
    attempts: int
    max_attempts: int
    sends: int
    key_id: str
    approved_at: float | None = None
    send_attempts: list[SendAttempt] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # the caller's metadata (Twilio's Tags)
    # What Twilio Lookup said the number is (otp's type name, otp.core.phone) and its carrier's
    # name, when Lookup decided the latest start ("" otherwise).
    line_type: str = ""
    carrier: str = ""

    @property
    def attempts_left(self) -> int:
        if self.status != PENDING:
            return 0
        return max(0, self.max_attempts - self.attempts)

    @property
    def latest_delivery(self) -> dict[str, Any] | None:
        return self.send_attempts[-1].delivery if self.send_attempts else None


# -- what the store's operations take ------------------------------------------------------------


@dataclass(frozen=True)
class NumberLimits:
    safe: bool
    sends_per_hour: int
    sends_per_day: int
    cooldown_ms: int
    shared_hold_ms: int = 60_000


@dataclass(frozen=True)
class NumberGateArgs:
    """What ``number_gate.lua`` needs to ask the number's own limits before the admission: the
    start's key, limits and retention (as in StartArgs). Whether it applies a refusal is the
    store's choice (`Store.before_admission` reads, `Store.refuse_by_number` applies)."""

    key_id: str
    number_limits: NumberLimits
    retention_ms: int


@dataclass(frozen=True)
class StartArgs:
    """What ``start.lua`` needs to start or resend one verification (its JSON argument)."""

    new_id: str
    to: str
    channel: str
    locale: str
    key_id: str
    ttl_ms: int
    max_attempts: int
    max_sends: int
    codes_kept: int
    retention_ms: int
    code_hash: str
    sealed_code: str  # for the outbox
    number_limits: NumberLimits
    decisions: str  # of the other scopes (JSON, for the audit record)
    app_name: str = ""  # name in the SMS ("" default)
    app_hash: str = ""  # Android's SMS Retriever hash, last in the SMS ("" none); kept on the job
    tags: str = ""  # the caller's tags as a JSON object ("" none), kept on the record (tg)
    # What this send's SMS is, kept on its job (each only when it isn't the default, so a pending
    # job stays small): the template's name in otp.core.messages.CATALOGUE ("" the verification
    # one), its substitutions as a JSON object, and the Messaging Service to send it with.
    template: str = ""
    substitutions: str = ""
    messaging_service_sid: str = ""
    # The caller chose the code (CustomCode): its approval proves nothing about the number.
    custom_code: bool = False
    # The send was to an unproven destination, and its end-user IP's pumping scope: kept on a new
    # record, so its approval converts where the send counted.
    unproven: bool = False
    ip_scope: str = ""
    # The fraud tenant when it isn't ``key_id`` (a /v2 service's account), kept on a new record (ft).
    fraud_tenant: str = ""
    # The owner has webhooks: the record is marked (ev) and its events go to the event outbox.
    events: bool = False
    # The send's spend reservation, for its reconciliation with the real price (otp.core.budget):
    # "estimate|day|country|scope kinds", kept on the attempt as bu:<n>; "" for none.
    budget: str = ""
    # ``<type>|<carrier>`` when Twilio Lookup decided the number's type (otp.core.line_types),
    # kept on the record (lt) for the /v2 ``lookup`` field; "" none.
    line_type: str = ""


@dataclass(frozen=True)
class CheckArgs:
    """What ``attempt.lua`` needs to count one check."""

    verification_id: str
    to: str
    retention_ms: int
    caller: str
    admin: bool
    failed_per_hour: int
    checks_per_minute: int  # in this partition, for ``rate_key``; 0: no limit
    rate_key: str
    member: str
    replay_ms: int
    replays: int = 3


@dataclass(frozen=True)
class ApproveArgs:
    """What ``approve.lua`` needs to approve one verification (compare-and-set on its attempt)."""

    verification_id: str
    attempt: int  # the attempt that matched; 0 for an approval out of band
    retention_ms: int
    matched: str = ""  # the hash field of the code that matched, for replays of the same code
    replay_ms: int = 0


# -- what they answer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StartOutcome:
    mode: str  # created | resent | refused
    record: dict[str, str]
    rule: str
    reason: str
    retry_ms: int
    foreign: bool = False  # a number-wide refusal that another API key's sends took part in


@dataclass(frozen=True)
class AttemptOutcome:
    outcome: str  # counted | not_found | throttled | refused | a status
    verification_id: str = ""
    attempts: int = 0
    max_attempts: int = 0
    hashes: dict[str, str] = field(default_factory=dict)  # "h:n" → hash, for a counted attempt
    record: dict[str, str] = field(default_factory=dict)
    retry_ms: int = 0
    replay_hash: str = ""  # the approving code's hash, while it may repeat the approval


@dataclass(frozen=True)
class DeliveryUpdate:
    """What delivery.lua says after a delivery report: the send's state, whether this report moved
    it, how long since the send was queued (ms), its destination country ("" unknown) and its
    opt-out scope (its Messaging Service from a MessagingConfiguration, "" the operator's sender)."""

    status: str
    moved: bool = False
    elapsed_ms: int = 0
    country: str = ""
    scope: str = ""


@dataclass(frozen=True)
class Job:
    job_id: str
    verification_id: str
    send_number: int
    to: str
    sealed_code: str
    locale: str
    tries: int
    expires_ms: int
    partition: int
    app_name: str = ""
    lease_deadline_ms: int = 0
    app_hash: str = ""
    template: str = ""  # "" the verification template
    substitutions: dict[str, str] = field(default_factory=dict)
    messaging_service_sid: str = ""  # "" the operator's sender (OTP_TWILIO_FROM / _MESSAGING_SERVICE_SID)
    sender_slot: str = ""  # "<sender>|<slot ms>" it waited for (the worker paced it); "" none


@dataclass(frozen=True)
class QueuedEvent:
    """A webhook event claimed from a partition's event outbox (event_claim.lua), with what the
    verification says at the claim: its number is read there, never stored with the event."""

    event_sid: str
    event_type: str
    verification_id: str
    send_number: int
    at_ms: int
    owner: str  # the /v2 service sid or /v1 key id the verification belongs to
    error_code: str
    done: tuple[str, ...]  # webhook sids already served
    tries: int
    lease_deadline_ms: int
    to: str
    channel: str
    tags: str  # JSON object, "" for none
    status: str  # the verification's
    first_try_ms: int
    partition: int
