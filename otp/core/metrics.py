"""The Prometheus metric definitions: what the core and the worker count.  No HTTP here — the
``/metrics`` endpoint and the latency middleware that serve and add to them are in `otp.web.metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from otp.delivery import TIME_TO_DELIVERED_BUCKETS

STARTED = Counter("otp_verifications_started_total", "Verifications started (first send)", ["country"])
RESENT = Counter("otp_verifications_resent_total", "Resends on a pending verification", ["country"])
APPROVED = Counter("otp_verifications_approved_total", "Verifications approved (conversions)", ["country"])
FAILED_CHECKS = Counter("otp_checks_failed_total", "Checks with a wrong code")
MAX_ATTEMPTS = Counter("otp_verifications_max_attempts_total", "Verifications locked after the last wrong code")
EXPIRED = Counter("otp_verifications_expired_seen_total", "Checks that found their verification expired")
CANCELED = Counter("otp_verifications_canceled_total", "Verifications canceled")
REFUSALS = Counter("otp_refusals_total", "Requests refused by a rule", ["rule", "reason"])
FLAGGED = Counter("otp_pumping_flagged_total", "Sends over a pumping threshold in record_only mode", ["scope"])
DELIVERY = Counter("otp_delivery_reports_total", "Delivery states recorded (callbacks, polls, sends)", ["status"])
SMS_SENT = Counter("otp_sms_sent_total", "SMS accepted by the provider")
SMS_FAILED = Counter("otp_sms_failed_total", "SMS given up on", ["transient"])
WEBHOOK_POSTS = Counter(
    "otp_webhook_posts_total", "Webhook event posts by outcome (delivered, retry, refused)", ["outcome"]
)
WEBHOOK_DROPPED = Counter(
    "otp_webhook_events_dropped_total",
    "Webhook events given up on (retries_exhausted, no_webhook); queue_full drops are counted in the"
    " audit counters (webhook_dropped:queue_full)",
    ["reason"],
)
SENDER_WAIT = Histogram(
    "otp_sender_wait_seconds",
    "Expected wait for a slot of the sender pool (senders are paced at their MPS)",
    ["sender"],
    buckets=(0.0, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)
SENDER_WAIT_EXCEEDED = Counter(
    "otp_sender_wait_exceeded_total",
    "Sends whose expected wait for their sender passed OTP_SENDER_MAX_WAIT",
    ["sender"],
)
SENDER_QUEUE_EXPIRED = Counter(
    "otp_sender_queue_expired_total",
    "SMS not sent: no allowed sender had a slot before the code expired (or none serves the country)",
    ["reason"],
)
# Spend budgets (otp.core.budget), in the price table's currency; scope: global, country:<CC>, key:<id>.
BUDGET_SPENT = Gauge("otp_budget_spent_today", "Spend reserved today in a budget scope, as last seen", ["scope"])
BUDGET_REFUSED = Counter("otp_budget_refusals_total", "Starts refused because a budget scope was spent", ["scope"])
BLOCKED_SPEND = Counter(
    "otp_blocked_spend_total", "Estimated cost of the sends each rule refused (price table currency)", ["rule"]
)
LOOKUPS = Counter(
    "otp_lookups_total",
    "Line types of starts Twilio Lookup was asked about, by source (lookup and no_data were paid for;"
    " cached, fallback)",
    ["source"],
)
OUTBOX = Gauge("otp_outbox_depth", "SMS jobs queued or leased, all partitions")
# Computed at scrape time from the workers' heartbeat in Redis (otp.storage.workers): alert on it
# instead of taking API processes out of service when workers stop. +Inf: no beat is known.
WORKER_LAST_SEEN = Gauge(
    "otp_worker_last_seen_seconds", "Seconds since some SMS worker last beat (+Inf: none within the heartbeat's keep)"
)
LATENCY = Histogram(
    "otp_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# From the send's queueing (the start or resend) to Twilio's "delivered": what a user waits. Labelled
# by destination country only (ISO codes, or "unknown"), so the label set stays bounded.
TIME_TO_DELIVERED = Histogram(
    "otp_sms_time_to_delivered_seconds",
    "Time from queueing an SMS to its delivered report, per destination country",
    ["country"],
    buckets=TIME_TO_DELIVERED_BUCKETS,
)
OPTED_OUT = Counter("otp_opt_outs_total", "Numbers marked opted out (Twilio 21610), by where it was learnt", ["source"])
