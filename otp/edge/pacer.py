"""Which sender of the pool a job goes out with, and when: the worker asks before every send.

A job a /v2 MessagingConfiguration gave a Messaging Service keeps it (paced on its bucket when the
pool lists that service with its MPS and countries, and refused for a country the pool's entry
doesn't list; else sent at once as before); every other job may use the
pool's senders that serve its destination country, and takes the slot that comes first among them
(otp.storage.pacing, shared by every worker). A slot in the future is not waited for on a send
thread: the job goes back to the outbox, due at its slot, with the slot reserved for it.

Past the wait bound (``OTP_SENDER_MAX_WAIT``) the code still goes out when its turn comes (the pool
already chose the shortest queue, and a late code that still works beats none), announced by a
metric and an audit event; when no slot comes before the code expires, nothing is reserved and
the send fails at once, visibly, instead of paying for an SMS nobody can use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from otp.audit_fields import Event
from otp.clock import Clock
from otp.core import events, metrics
from otp.core.senders import Sender, SenderPool
from otp.model import Job
from otp.storage import pacing
from otp.storage.store import SenderWait, Store

log = logging.getLogger("otp.worker")


@dataclass(frozen=True)
class Route:
    """``sender``: the pool's sender to send with ("" the sender's own default); ``slot_ms``: when;
    ``refused``: why it must not go out at all ("" it may)."""

    sender: str
    slot_ms: int
    wait_ms: int
    refused: str = ""
    reserved: bool = False  # the slot was reserved earlier: waiting again takes no new one


def _reservation(job: Job) -> tuple[str, int] | None:
    address, _, slot = job.sender_slot.rpartition("|")
    return (address, int(slot)) if address and slot.isdigit() else None


class Pacer:
    def __init__(self, store: Store, pool: SenderPool | None, clock: Clock) -> None:
        self.store = store
        self.pool = pool
        self.clock = clock

    def candidates(self, job: Job, country: str) -> tuple[Sender, ...] | None:
        """The senders that may carry the job; None: it isn't paced (no pool, or a Messaging
        Service the pool doesn't list)."""
        if self.pool is None or not self.pool.senders:
            return None
        if job.messaging_service_sid:
            own = self.pool.find(job.messaging_service_sid)
            if own is None:
                return None
            # The pool's countries bind the Messaging Service whoever names it: a tenant's
            # MessagingConfiguration for another country gets no sender (the job fails, unsent).
            return (own,) if own.serves(country) else ()
        return self.pool.for_country(country)

    async def route(self, job: Job, country: str, segments: int, now_ms: int) -> Route:
        candidates = self.candidates(job, country)
        if candidates is None:
            return Route("", now_ms, 0)
        if not candidates:
            return Route("", now_ms, 0, refused=f"not sent: no sender in OTP_TWILIO_FROM serves {country or '??'}")
        reserved = _reservation(job)
        if reserved and any(s.address == reserved[0] for s in candidates):
            address, slot = reserved
            return Route(address, slot, max(0, slot - now_ms), reserved=True)
        taken = await pacing.take(
            self.store,
            now_ms=now_ms,
            candidates=[(s.address, s.interval_ms(segments)) for s in candidates],
            deadline_ms=job.expires_ms,
        )
        wait_ms = max(0, taken.at_ms - now_ms)
        if taken.index < 0:
            return Route("", taken.at_ms, wait_ms, refused="not sent: every sender's queue outlasts the code")
        address = candidates[taken.index].address
        metrics.SENDER_WAIT.labels(address).observe(wait_ms / 1000)
        return Route(address, taken.at_ms, wait_ms)

    def over_bound(self, route: Route) -> bool:
        return self.pool is not None and route.wait_ms > self.pool.max_wait * 1000

    async def hold_back(self, job: Job, route: Route, country: str, now_ms: int) -> bool:
        """Whether the job does not go out now: its sender's slot is later (the job goes back to the
        outbox, due then, its slot kept), or no slot comes before the code expires (it fails)."""
        over = self.over_bound(route) and not route.reserved  # a reserved slot was announced already
        if over:
            metrics.SENDER_WAIT_EXCEEDED.labels(route.sender or "none").inc()
            fields = {"vid": job.verification_id, "send": job.send_number, "sender": route.sender}
            events.emit(Event.SENDER_QUEUED, self.clock.now(), **fields, wait_ms=route.wait_ms, country=country)
        waiting = {"sender": route.sender or None, "queued_ms": route.wait_ms or None}
        if route.refused:
            log.warning("sms not sent job=%s country=%s: %s", job.job_id, country, route.refused)
            metrics.SENDER_QUEUE_EXPIRED.labels("queue" if route.wait_ms else "no_sender").inc()
            changes = {"status": "failed", "error_message": route.refused, **waiting}
            await self._settle(job, "failed", changes, now_ms, SenderWait(over_bound=over))
            return True
        if route.wait_ms <= 0:
            return False
        if not route.reserved:
            log.info("sms job=%s waits %.1fs for sender %s", job.job_id, route.wait_ms / 1000, route.sender)
        wait = SenderWait(f"{route.sender}|{route.slot_ms}", over_bound=over)
        await self._settle(job, "paced", waiting, now_ms, wait, due_ms=route.slot_ms)
        return True

    async def _settle(
        self, job: Job, outcome: str, changes: dict[str, Any], now_ms: int, wait: SenderWait, due_ms: int = 0
    ) -> None:
        await self.store.settle_job(
            partition=job.partition,
            now_ms=now_ms,
            job_id=job.job_id,
            outcome=outcome,
            changes=changes,
            retry_due_ms=due_ms,
            wait=wait,
        )
