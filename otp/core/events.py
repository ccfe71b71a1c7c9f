"""Audit events as they happen in this process: one line on the ``otp.audit`` log, its fields
under ``audit`` (a JSON object in the JSON log, otp/logs.py), and the matching Prometheus
counters.  (The durable record is the Redis audit stream, written by the same Lua step as the
change itself; this is its live mirror for log pipelines.)"""

from __future__ import annotations

import logging
from typing import Any

from otp.audit_fields import Event, recorded
from otp.core import metrics

log = logging.getLogger("otp.audit")


def _refused(fields: dict[str, Any]) -> None:
    rule = str(fields.get("rule", ""))
    metrics.REFUSALS.labels(rule, str(fields.get("reason", ""))).inc()
    if fields.get("_est"):
        # The estimated cost of the send the rule refused (otp.core.budget): the spend it saved.
        metrics.BLOCKED_SPEND.labels(rule).inc(int(fields["_est"]) / 1_000_000)


def emit(event: str, now: float, /, **fields: Any) -> None:
    """Log ``event`` at ``now`` (unix seconds, from the caller's clock) and count it.

    ``now`` is positional-only so that no event field can be mistaken for it."""
    record = {"ts": round(now, 3), "event": str(event), **recorded(fields)}
    # Nested, not spread over the line: an event's field can't collide with the record's own
    # attributes (logging refuses an extra named "name" or "message") or with another line's
    # field of another type (the access line's "status" is a number, a delivery's a word).
    log.info("audit", extra={"audit": record})
    country = str(fields.get("country") or "unknown")
    if event == Event.STARTED:
        metrics.STARTED.labels(country).inc()
    elif event == Event.RESENT:
        metrics.RESENT.labels(country).inc()
    elif event == Event.APPROVED:
        metrics.APPROVED.labels(country).inc()
    elif event == Event.REFUSED:
        _refused(fields)
    elif event == Event.CHECK_FAILED:
        metrics.FAILED_CHECKS.inc()
    elif event == Event.MAX_ATTEMPTS:
        metrics.MAX_ATTEMPTS.inc()
    elif event == Event.EXPIRED:
        metrics.EXPIRED.inc()
    elif event == Event.CANCELED:
        metrics.CANCELED.inc()
    elif event == Event.DELIVERY:
        metrics.DELIVERY.labels(str(fields.get("status", ""))).inc()
    for scope in str(fields.get("flagged", "")).split(","):
        if scope:
            metrics.FLAGGED.labels(scope.split(":")[0]).inc()
