"""The SMS worker: claim due jobs under a lease, send through the `SmsSender` (on the loop), record
the Message SID (or retry with backoff, or fail visibly), and beat a heartbeat (the
``otp_worker_last_seen_seconds`` gauge)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import phonenumbers

from otp import delivery_errors
from otp.audit_fields import Event
from otp.clock import SYSTEM, Clock
from otp.core import delivery_reports, events, messages, metrics, optouts, sealing
from otp.core.budget import Budgets
from otp.core.keyring import Keyring
from otp.core.phone import mask_in_record, mask_numbers
from otp.core.senders import SenderPool
from otp.delivery import FINAL
from otp.edge.pacer import Pacer
from otp.edge.sms import MessageFetcher, MessageState, Receipt, SendError, SmsMessage, SmsSender
from otp.errors import Unavailable
from otp.model import Job
from otp.storage import workers
from otp.storage.store import Store

log = logging.getLogger("otp.worker")

# A worker beats every third of this; a stopping worker is given this long to finish.
HEARTBEAT_TTL_MS = 15_000

T = TypeVar("T")
# A status poll due: (partition, verification id, send number, message sid, sent at ms).
Poll = tuple[int, str, int, str, int]


# A final send is polled for its price (Twilio's callbacks carry none) until the price shows, or
# for this long after it was sent: Twilio prices a message within minutes, and a send it never
# prices would otherwise be fetched every OTP_DELIVERY_POLL_AFTER until retention ends.
PRICE_WAIT = 3600.0

# A job sent this soon after its claim still has nearly all of its lease (at least 90 %), which
# is what a renewal would give it: the renewal's round trip buys nothing then. A job that waited
# longer for a send slot is renewed, so a lease that ran out meanwhile is never sent on.
FRESH_CLAIM_MS = 1000


def freshly_claimed(job: Job, *, now_ms: int, lease_ms: int) -> bool:
    return job.lease_deadline_ms - now_ms >= lease_ms - min(FRESH_CLAIM_MS, lease_ms // 10)


@dataclass(frozen=True)
class WorkerOptions:
    """The worker's settings (the shell builds them: ``otp.app.worker_options``) and its tuning."""

    lease: float
    backoff_base: float
    app_name: str
    webotp_domain: str
    public_url: str
    retention: float
    code_ttl: float
    # A send with no final delivery state this long after Twilio accepted it is polled, then
    # polled again at this interval until the retention period ends.
    poll_after: float
    prices: Mapping[str, Decimal] | None
    # How long a number that replied STOP (Twilio 21610) stays marked opted out (otp.core.optouts).
    opt_out_ttl: float = optouts.DEFAULT_TTL
    # The operator's senders, each paced at its MPS (None: no pool, nothing paced).
    pool: SenderPool | None = None
    # Tuning, no setting: how many jobs a claim takes, how many sends at once, how idle polling backs off.
    batch: int = 20
    concurrency: int = 16
    poll_interval: float = 0.05
    max_idle: float = 1.0
    backoff_cap: float = 60.0
    # While the wake-up channel is heard, a round claims only the partitions start.lua announced
    # and those that had work in the last round; what comes due unannounced (a retry after its
    # backoff, a status poll, a lease that ran out, a webhook event) waits for the next full sweep
    # of every partition: at most one per this interval while rounds come faster, else every idle
    # round (at most `max_idle` apart). A paced job's slot coming due sweeps at once. Without the
    # channel (a burst, a lost or not yet heard subscription) every round is a full sweep.
    sweep_interval: float = 0.25


async def _first_of(*waits: Awaitable[Any], seconds: float) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def gathered(batches: Sequence[list[T] | BaseException], what: str) -> list[T]:
    """What a claim took from the partitions (SMS jobs, status polls, webhook events), each one's
    rows or the error it answered, which is logged. What those that answered gave must be
    processed even when one failed, or it would sit leased until the lease runs out."""
    for failure in (b for b in batches if isinstance(b, BaseException)):
        log.warning("worker: a partition's %s could not be claimed: %s", what, failure)
    return [item for batch in batches if not isinstance(batch, BaseException) for item in batch]


def refused_round(*claims: Sequence[list[Any] | BaseException]) -> BaseException | None:
    """The error a claim round that found nothing fails with, so the worker backs off as for any
    outage: every partition failed, or storage refused some (``Unavailable``: a primary without its
    replicas refuses the writes of the partitions that had work, not the empty ones' reads). A
    round that found something never fails, and one partition's broken key never fails a round."""
    replies = [reply for claim in claims for reply in claim]
    if any(not isinstance(reply, BaseException) and reply for reply in replies):
        return None
    failures = [reply for reply in replies if isinstance(reply, BaseException)]
    if failures and (len(failures) == len(replies) or any(isinstance(f, Unavailable) for f in failures)):
        return next((f for f in failures if isinstance(f, Unavailable)), failures[0])
    return None


async def each_partition(
    store: Store, claim: Callable[[int], Awaitable[list[T]]], partitions: Sequence[int] | None = None
) -> list[list[T] | BaseException]:
    """``claim`` on each of ``partitions`` (all by default) on its own: when the one pipelined
    claim fails whole (a Cluster pipeline does when one node is down), the partitions that answer
    are still served."""
    named = range(store.partitions) if partitions is None else partitions
    return await asyncio.gather(*(claim(p) for p in named), return_exceptions=True)


class EventLoop(Protocol):
    """The webhook delivery loop (otp.edge.webhook_delivery.EventDelivery), run beside the outbox."""

    async def run_once(self) -> int: ...

    async def aclose(self) -> None: ...


def backoff(tries: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: spreads a crowd of retries after an outage."""
    return float(random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, tries - 1)))  # noqa: S311


class Worker:
    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        sender: SmsSender,
        options: WorkerOptions,
        *,
        clock: Clock = SYSTEM,
        events: EventLoop | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.events = events
        self.budgets = budgets
        # The webhook round in flight (beside the sends, never in front of them) and what the
        # last one finished claimed; `run` (but a burst) sets ``_wake``, so a finished round that
        # claimed some starts the next at once.
        self._events_round: asyncio.Task[int] | None = None
        self._events_claimed = 0
        self._events_at = -float("inf")  # monotonic: when the last webhook round started
        self._wake: asyncio.Event | None = None
        # The wake-up channel (`_listen`): whether it is heard, the partitions it announced since
        # the last round, those the last round found work in, and when every partition was last swept.
        self._listening = False
        self._woken: set[int] = set()
        self._busy: set[int] = set()
        self._swept_at = -float("inf")
        self.store = store
        self.keyring = keyring
        self.sender = sender
        self.options = options
        self.clock = clock
        # Every send and poll holds a slot: at most this many calls to the sender at once (the
        # Twilio sender's connection pool is as large).
        self._slots = asyncio.Semaphore(options.concurrency)
        self.sent = 0
        self.pacer = Pacer(store, options.pool, clock)
        self._next_slot_ms = 0  # the earliest slot of a job this worker paced and hasn't seen come due

    def _now_ms(self) -> int:
        return self.clock.now_ms()

    def _emit(self, event: str, **fields: Any) -> None:
        events.emit(event, self.clock.now(), **fields)

    def status_callback(self, job: Job) -> str | None:
        if not self.options.public_url:
            return None
        return f"{self.options.public_url}/webhooks/twilio/status?v={job.verification_id}&n={job.send_number}"

    async def beat(self) -> None:
        await workers.beat(self.store, self._now_ms())

    def _round_partitions(self) -> list[int] | None:
        """The partitions this round claims: None for every one (a full sweep)."""
        now = time.monotonic()
        slot_came = bool(self._next_slot_ms) and self._now_ms() >= self._next_slot_ms  # a paced job is due
        if not self._listening or slot_came or now - self._swept_at >= self.options.sweep_interval:
            self._swept_at = now
            self._next_slot_ms = 0 if slot_came else self._next_slot_ms  # this sweep claims it
            self._woken.clear()
            return None
        named = sorted(self._woken | self._busy)
        self._woken.clear()
        return named

    async def claim(self) -> tuple[list[Job], list[Poll]]:
        """The due SMS jobs and status polls of this round's partitions (`_round_partitions`): one
        round trip as a rule, none when nothing was announced between sweeps."""
        partitions = self._round_partitions()
        if partitions is not None and not partitions:
            return [], []
        named = range(self.store.partitions) if partitions is None else partitions
        now, lease_ms, limit = self._now_ms(), int(self.options.lease * 1000), self.options.batch
        retention_ms = int(self.options.retention * 1000)
        try:
            jobs, polls, more = await self.store.claim_due(
                now_ms=now, lease_ms=lease_ms, limit=limit, retention_ms=retention_ms, partitions=partitions
            )
        except Unavailable:

            def one_jobs(partition: int) -> Awaitable[list[Job]]:
                return self.store.claim_jobs(
                    partition=partition, now_ms=now, lease_ms=lease_ms, limit=limit, retention_ms=retention_ms
                )

            def one_polls(partition: int) -> Awaitable[list[tuple[str, int, str, int]]]:
                return self.store.claim_polls(partition=partition, now_ms=now, lease_ms=lease_ms, limit=limit)

            jobs = await each_partition(self.store, one_jobs, partitions)
            polls = await each_partition(self.store, one_polls, partitions)
            # Degraded (one call per partition): any partition that had work is claimed again.
            more = {
                p for p, *found in zip(named, jobs, polls, strict=True) if any(isinstance(f, list) and f for f in found)
            }
        with_partition: list[list[Poll] | BaseException] = [
            rows if isinstance(rows, BaseException) else [(p, *row) for row in rows]
            for p, rows in zip(named, polls, strict=True)
        ]
        refused = refused_round(jobs, with_partition)
        if refused is not None:
            raise refused
        claimed_jobs, claimed_polls = gathered(jobs, "jobs"), gathered(with_partition, "status polls")
        # A partition whose claim looked at a whole batch (claimed or dropped) may have more due:
        # claim it again next round. One that looked at less has none due now (what comes due
        # later is announced or swept); claiming it again anyway cost every SMS a second round.
        self._busy = more
        return claimed_jobs, claimed_polls

    async def run_once(self) -> int:
        """Claim and process every due job and status poll once; returns how many were claimed."""
        jobs, polls = await self.claim()
        await asyncio.gather(
            *(self._process_guarded(job) for job in jobs), *(self._poll_guarded(*poll) for poll in polls)
        )
        if self._wake is None:
            # Called on its own (or a burst run, which must not end before its events went out):
            # the webhook round is part of this one.
            events = await self.events.run_once() if self.events is not None else 0
        else:
            events = self._webhook_round()
        return len(jobs) + len(polls) + events

    def _webhook_round(self) -> int:
        """Start a round of webhook posts unless one is in flight; how many events the last
        finished round claimed. Not awaited: a post may take its whole timeout, and a tenant's
        slow endpoint must not hold up every tenant's SMS. A delivery outcome recorded by this
        round's sends goes out in the next webhook round."""
        if self.events is None or (self._events_round is not None and not self._events_round.done()):
            return 0
        # Events are not announced: claimed again at once after a round that found some, else
        # at the sweep pace while the wake-up channel keeps the outbox's own rounds short.
        now = time.monotonic()
        if self._listening and not self._events_claimed and now - self._events_at < self.options.sweep_interval:
            return 0
        self._events_at = now
        claimed, self._events_claimed = self._events_claimed, 0
        task = asyncio.create_task(self.events.run_once())
        task.add_done_callback(self._webhook_round_done)
        self._events_round = task
        return claimed

    def _webhook_round_done(self, task: asyncio.Task[int]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.warning("worker: a webhook round failed: %r", task.exception())
            return
        self._events_claimed = task.result()
        if self._events_claimed and self._wake is not None:
            self._wake.set()  # more may be due: go round again now

    async def _poll_guarded(self, partition: int, vid: str, n: int, sid: str, sent_at_ms: int) -> None:
        async with self._slots:
            try:
                await self.poll(partition, vid, n, sid, sent_at_ms)
            except Unavailable as exc:
                log.warning("worker: could not record poll of %s (%s); it will be retried", sid, exc.message)

    async def poll(self, partition: int, vid: str, n: int, sid: str, sent_at_ms: int) -> None:
        """Settle a send whose status callback never came, from the Message resource."""
        now = self._now_ms()
        give_up = now - sent_at_ms > self.options.retention * 1000
        next_poll = -1 if give_up else now + int(self.options.poll_after * 1000)
        try:
            state = await self._fetch(sid)
        except SendError as exc:
            log.warning("status poll of %s failed: %s", sid, exc.message)
            await self.store.record_delivery(
                partition=partition,
                now_ms=now,
                verification_id=vid,
                send_number=n,
                changes={},
                next_poll_ms=next_poll,
            )
            return
        if state.status in FINAL and state.price is None and now - sent_at_ms > PRICE_WAIT * 1000:
            next_poll = -1  # no price within the wait: the estimate stands (a final state, so nothing else is due)
        # The price first: once it has reconciled the budgets, a final state ends the polls.
        await self._reconcile(partition, vid, n, state)
        now = self._now_ms()
        update = await self.store.record_delivery(
            partition=partition,
            now_ms=now,
            verification_id=vid,
            send_number=n,
            changes={"status": state.status, "error_code": state.error_code, "error_message": state.error_message},
            next_poll_ms=next_poll,
        )
        await delivery_reports.after_report(
            self.store,
            delivery_reports.ReportRules(self.keyring, self.options.opt_out_ttl, int(self.options.retention * 1000)),
            update,
            partition=partition,
            verification_id=vid,
            error_code=state.error_code,
            now_ms=now,
            source="poll",
        )

    async def _fetch(self, sid: str) -> MessageState:
        if isinstance(self.sender, MessageFetcher):
            return await self.sender.fetch_message(sid)
        status, error_code, error_message = await self.sender.fetch_status(sid)
        return MessageState(status, error_code, error_message)

    async def _reconcile(self, partition: int, vid: str, n: int, state: MessageState) -> None:
        """Twilio's real price into the day's budgets (otp.core.budget); a failed message costs nothing."""
        if self.budgets is None:
            return
        price = (state.price, state.price_unit)
        if state.price is None and state.status == "failed":
            price = ("0", messages.PRICE_UNIT)
        await self.budgets.reconcile(partition, self._now_ms(), vid, n, price)

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        last_beat = 0.0  # monotonic: how often to beat is a duration, not a time of day
        idle = self.options.poll_interval
        wake = asyncio.Event()
        self._wake = None if burst else wake
        # A burst ends when the outbox is drained and waits on nothing else; a listener cancelled
        # while it is still subscribing can hang redis-py's pub/sub clean-up, so a burst has none.
        listener = None if burst else asyncio.create_task(self._listen(wake, stop))
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    # Monotonic: how long since the last beat, a duration (the beat itself carries the clock's time).
                    if time.monotonic() - last_beat > HEARTBEAT_TTL_MS / 3000:
                        await self.beat()
                        last_beat = time.monotonic()
                    claimed = await self.run_once()
                except Unavailable as exc:
                    log.warning("worker: Redis unavailable (%s); retrying", exc.message)
                    claimed = 0
                    await asyncio.sleep(0.5)
                except Exception:
                    # A worker inside `otp serve` must not die silently: log, back off, go on.
                    log.exception("worker: unexpected error; retrying in 1 s")
                    claimed = 0
                    await asyncio.sleep(1.0)
                if burst and claimed == 0 and await self._drained():
                    return
                if claimed:
                    idle = self.options.poll_interval
                    continue
                # Idle: poll less and less often; a new job's wake-up message cuts the wait short,
                # and so does the slot of a job this worker paced (its sender is free then).
                await _first_of(wake.wait(), stop.wait(), seconds=self._idle_wait(idle))
                idle = min(idle * 2, self.options.max_idle)
        finally:
            if listener is not None:
                listener.cancel()
                # Bounded: a pub/sub connection torn down mid-handshake may never finish closing.
                await asyncio.wait({listener}, timeout=1.0)
            self._wake = None
            if self._events_round is not None:
                # The round's events stay leased and are claimed again: at least once.
                self._events_round.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._events_round
            await self.aclose()

    async def aclose(self) -> None:
        """Closes the sender's and the webhook poster's connections (`run` does, when it stops)."""
        try:
            await self.sender.aclose()
        finally:
            if self.events is not None:
                await self.events.aclose()

    def _idle_wait(self, idle: float) -> float:
        until = (self._next_slot_ms - self._now_ms()) / 1000
        if until <= 0:
            self._next_slot_ms = 0
            return idle
        return min(idle, until)

    async def _listen(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """Set ``wake`` whenever start.lua announces a new job (a PUBLISH reaches subscribers on
        every Cluster node too); a client without pub/sub leaves the worker sweeping every round."""
        if not workers.has_wake_channel(self.store):
            return
        while not stop.is_set():
            try:
                async for partition in workers.wake_ups(self.store):
                    if partition is None:
                        self._swept_at = -float("inf")  # unannounced work may be anywhere: sweep
                    else:
                        self._woken.add(partition)
                    self._listening = True
                    wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("worker: wake-up channel lost (%s)", exc)
            finally:
                # Unheard announcements: full sweeps until the channel is heard again.
                self._listening = False
            await asyncio.sleep(1.0)

    async def _drained(self) -> bool:
        """Nothing left that is due now or will come due (a retry waiting on its backoff)."""
        return await self.store.outbox_depth() == 0

    async def _process_guarded(self, job: Job) -> None:
        async with self._slots:
            try:
                await self.process(job)
            except Unavailable as exc:
                # The lease runs out and the job is claimed again: nothing is lost.
                log.warning("worker: could not record job %s (%s); it will be retried", job.job_id, exc.message)
            except Exception:
                # Whatever else Redis says (OOM under noeviction, say), the job is retried after its
                # lease, and the worker goes on with the others.
                log.exception("worker: job %s failed; it will be retried after its lease", job.job_id)

    async def process(self, job: Job) -> None:
        code = sealing.unseal(self.keyring, job.sealed_code)
        if code is None:
            await self._settle(job, "failed", {"status": "failed", "error_message": "code sealed with a retired key"})
            return
        country = phonenumbers.region_code_for_number(phonenumbers.parse(job.to)) or ""
        body = messages.render(
            code,
            locale=job.locale,
            country=country,
            app_name=job.app_name or self.options.app_name,
            webotp_domain=self.options.webotp_domain,
            app_hash=job.app_hash,
            template=job.template or messages.VERIFICATION,
            substitutions=job.substitutions,
        )
        lease_ms, now_ms = int(self.options.lease * 1000), self._now_ms()
        if not freshly_claimed(job, now_ms=now_ms, lease_ms=lease_ms) and not await self.store.renew_lease(
            job, now_ms=now_ms, lease_ms=lease_ms
        ):
            # The lease ran out while the job waited for a send slot and another worker has it now.
            log.info("worker: job %s was taken over by another worker; not sending it", job.job_id)
            return
        route = await self.pacer.route(job, country, messages.segments(body), self._now_ms())
        if await self.pacer.hold_back(job, route, country, self._now_ms()):
            if route.wait_ms and not route.refused:
                self._next_slot_ms = min(self._next_slot_ms or route.slot_ms, route.slot_ms)
            return
        if self._now_ms() >= job.expires_ms:
            # Claimed in time, but the code expired while the job waited here: never send a dead code.
            await self._settle(job, "failed", {"status": "canceled", "error_message": "not sent: code expired"})
            return
        message = SmsMessage(
            to=job.to,
            body=body,
            status_callback=self.status_callback(job),
            messaging_service_sid=job.messaging_service_sid,
            sender=route.sender,
        )
        try:
            receipt: Receipt | None = None
            if job.tries > 1:
                # An earlier try may have reached Twilio (a timeout, or a worker killed before it
                # stored the SID): adopt that message instead of sending the code twice.
                since = datetime.fromtimestamp(job.expires_ms / 1000 - self.options.code_ttl, UTC)
                receipt = await self.sender.find_sent(message, since)
            if receipt is None:
                receipt = await self.sender.send(message)
        except SendError as exc:
            await self._failed_send(job, exc, country)
            return
        except Exception as exc:  # a sender bug must not kill the worker: retry like a transient error
            log.exception("worker: sender raised unexpectedly for job %s", job.job_id)
            await self._failed_send(job, SendError(f"{type(exc).__name__}: {exc}", transient=True), country)
            return
        self.sent += 1
        metrics.SMS_SENT.inc()
        self._emit(
            Event.DELIVERY,
            vid=job.verification_id,
            send=job.send_number,
            status=receipt.status,
            message_sid=receipt.message_sid,
            source="send",
        )
        segments = receipt.segments or messages.segments(body)
        price, unit = receipt.price, receipt.price_unit
        if price is not None:
            # Twilio's create answer rarely has it yet; when it has, the budgets learn it now.
            state = MessageState(receipt.status, price=price, price_unit=unit)
            await self._reconcile(job.partition, job.verification_id, job.send_number, state)
        else:
            price, unit = messages.estimate_price(country, segments, self.options.prices)
        now = self._now_ms()
        await self._settle(
            job,
            "sent",
            {
                "status": receipt.status,
                "message_sid": receipt.message_sid,
                "segments": segments,
                "price": price,
                "price_unit": unit,
                "sent_at": now,
                "tries": job.tries,
                # Where it went and from which sender: the per-country and per-sender delivery figures.
                "country": country,
                "sender": route.sender or receipt.sender or None,
                "scope": job.messaging_service_sid,
            },
            poll_due_ms=now + int(self.options.poll_after * 1000),
        )
        log.info("sms sent job=%s to=%s sid=%s", job.job_id, mask_in_record(job.to), receipt.message_sid)

    async def _failed_send(self, job: Job, exc: SendError, country: str = "") -> None:
        delay = backoff(job.tries, self.options.backoff_base, self.options.backoff_cap)
        due_ms = self._now_ms() + int(delay * 1000)
        if exc.transient and due_ms < job.expires_ms:
            log.warning("sms retry job=%s try=%d in %.1fs: %s", job.job_id, job.tries, delay, exc.message)
            await self._settle(job, "retry", {"last_error": exc.message, "tries": job.tries}, due_ms)
            return
        log.warning("sms failed job=%s to=%s: %s", job.job_id, mask_in_record(job.to), exc.message)
        metrics.SMS_FAILED.labels(str(exc.transient).lower()).inc()
        self._emit(
            Event.DELIVERY,
            vid=job.verification_id,
            send=job.send_number,
            status="failed",
            error_code=exc.error_code,
            source="send",
        )
        await self._settle(
            job,
            "failed",
            {
                "status": "failed",
                "error_code": exc.error_code,
                "error_message": exc.message,
                "tries": job.tries,
                "country": country,
                "sender": exc.sender,
                "scope": job.messaging_service_sid,
            },
        )
        if delivery_errors.opts_out(exc.error_code):
            # The user replied STOP: every later send would fail alike, so later starts are refused.
            await optouts.record(
                self.store,
                self.keyring,
                job.to,
                now_ms=self._now_ms(),
                ttl=self.options.opt_out_ttl,
                source="send",
                verification_id=job.verification_id,
                scope=job.messaging_service_sid,
            )
            metrics.OPTED_OUT.labels("send").inc()
        # Never sent, never billed: the day's budgets get the estimate back.
        await self._reconcile(job.partition, job.verification_id, job.send_number, MessageState("failed"))

    async def _settle(
        self, job: Job, outcome: str, changes: dict[str, Any], due_ms: int = 0, poll_due_ms: int = 0
    ) -> None:
        for name in ("error_message", "last_error"):
            if isinstance(changes.get(name), str):
                # No full number in Redis, whichever sender wrote the text (the job's own number
                # too, written without its plus); then within 64 bytes (Redis's compact hash encoding).
                text = mask_numbers(changes[name], job.to)
                changes[name] = text.encode()[:64].decode(errors="ignore")
        await self.store.settle_job(
            partition=job.partition,
            now_ms=self._now_ms(),
            job_id=job.job_id,
            outcome=outcome,
            changes=changes,
            retry_due_ms=due_ms,
            poll_due_ms=poll_due_ms,
        )
