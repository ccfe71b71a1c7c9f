"""Audit events as they happen in this process: one JSON line on the ``otp.audit`` log, and the
matching Prometheus counters.  (The durable record is the Redis audit stream, written by the same
Lua step as the change itself; this is its live mirror for log pipelines.)"""

from __future__ import annotations

import json
import logging
from typing import Any

from otp.audit_fields import recorded
from otp.core import metrics

log = logging.getLogger("otp.audit")


def emit(event: str, now: float, /, **fields: Any) -> None:
    """Log ``event`` at ``now`` (unix seconds, from the caller's clock) and count it.

    ``now`` is positional-only so that no event field can be mistaken for it."""
    record = {"ts": round(now, 3), "event": event, **recorded(fields)}
    log.info(json.dumps(record, separators=(",", ":"), sort_keys=True, default=str))
    country = str(fields.get("country") or "unknown")
    if event == "started":
        metrics.STARTED.labels(country).inc()
    elif event == "resent":
        metrics.RESENT.labels(country).inc()
    elif event == "approved":
        metrics.APPROVED.labels(country).inc()
    elif event == "refused":
        metrics.REFUSALS.labels(str(fields.get("rule", "")), str(fields.get("reason", ""))).inc()
    elif event == "check_failed":
        metrics.FAILED_CHECKS.inc()
    elif event == "max_attempts":
        metrics.MAX_ATTEMPTS.inc()
    elif event == "expired":
        metrics.EXPIRED.inc()
    elif event == "canceled":
        metrics.CANCELED.inc()
    elif event == "delivery":
        metrics.DELIVERY.labels(str(fields.get("status", ""))).inc()
    for scope in str(fields.get("flagged", "")).split(","):
        if scope:
            metrics.FLAGGED.labels(scope.split(":")[0]).inc()
