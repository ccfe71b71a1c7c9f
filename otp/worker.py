"""The SMS worker: claim due jobs under a lease, send through the `SmsSender` on a thread, record
the Message SID (or retry with backoff, or fail visibly), and beat a heartbeat for /readyz."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from otp import keyspace, messages, sealing
from otp.errors import Unavailable
from otp.keyring import Keyring
from otp.phone import mask
from otp.sms import Receipt, SendError, SmsMessage, SmsSender
from otp.store import Job, Store

log = logging.getLogger("otp.worker")

HEARTBEAT_TTL_MS = 15_000


@dataclass(frozen=True)
class WorkerOptions:
    lease: float = 30.0
    batch: int = 20
    concurrency: int = 16
    poll_interval: float = 0.1
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    app_name: str = "otp"
    webotp_domain: str = ""
    public_url: str = ""
    retention: float = 86400.0


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.sender = sender
        self.options = options
        self.clock = clock
        self._slots = asyncio.Semaphore(options.concurrency)
        self.sent = 0

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def status_callback(self, job: Job) -> str | None:
        if not self.options.public_url:
            return None
        return f"{self.options.public_url}/webhooks/twilio/status?v={job.verification_id}&n={job.send_number}"

    async def beat(self) -> None:
        await self.store.guarded(
            lambda: self.store.client.set(keyspace.worker_heartbeat(), self._now_ms(), px=HEARTBEAT_TTL_MS)
        )

    async def claim(self) -> list[Job]:
        now = self._now_ms()
        batches = await asyncio.gather(
            *(
                self.store.claim_jobs(
                    partition=p,
                    now_ms=now,
                    lease_ms=int(self.options.lease * 1000),
                    limit=self.options.batch,
                    retention_ms=int(self.options.retention * 1000),
                )
                for p in range(self.store.partitions)
            )
        )
        return [job for batch in batches for job in batch]

    async def run_once(self) -> int:
        """Claim and process every due job once; returns how many were claimed."""
        jobs = await self.claim()
        await asyncio.gather(*(self._process_guarded(job) for job in jobs))
        return len(jobs)

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        last_beat = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - last_beat > HEARTBEAT_TTL_MS / 3000:
                    await self.beat()
                    last_beat = time.monotonic()
                claimed = await self.run_once()
            except Unavailable as exc:
                log.warning("worker: Redis unavailable (%s); retrying", exc.message)
                claimed = 0
                await asyncio.sleep(0.5)
            if burst and claimed == 0 and await self._drained():
                return
            if claimed == 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.options.poll_interval)
                except TimeoutError:
                    pass

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

    async def process(self, job: Job) -> None:
        code = sealing.unseal(self.keyring, job.sealed_code)
        if code is None:
            await self._settle(job, "failed", {"status": "failed", "error_message": "code sealed with a retired key"})
            return
        body = messages.render(
            code, locale=job.locale, app_name=self.options.app_name, webotp_domain=self.options.webotp_domain
        )
        message = SmsMessage(to=job.to, body=body, status_callback=self.status_callback(job))
        try:
            receipt: Receipt = await run_in_threadpool(self.sender.send, message)
        except SendError as exc:
            await self._failed_send(job, exc)
            return
        except Exception as exc:  # a sender bug must not kill the worker: retry like a transient error
            log.exception("worker: sender raised unexpectedly for job %s", job.job_id)
            await self._failed_send(job, SendError(f"{type(exc).__name__}: {exc}", transient=True))
            return
        self.sent += 1
        await self._settle(
            job,
            "sent",
            {
                "status": receipt.status,
                "message_sid": receipt.message_sid,
                "segments": receipt.segments,
                "price": receipt.price,
                "price_unit": receipt.price_unit,
                "sent_at": self._now_ms(),
                "tries": job.tries,
            },
        )
        log.info("sms sent job=%s to=%s sid=%s", job.job_id, mask(job.to), receipt.message_sid)

    async def _failed_send(self, job: Job, exc: SendError) -> None:
        delay = backoff(job.tries, self.options.backoff_base, self.options.backoff_cap)
        due_ms = self._now_ms() + int(delay * 1000)
        if exc.transient and due_ms < job.expires_ms:
            log.warning("sms retry job=%s try=%d in %.1fs: %s", job.job_id, job.tries, delay, exc.message)
            await self._settle(job, "retry", {"last_error": exc.message, "tries": job.tries}, due_ms)
            return
        log.warning("sms failed job=%s to=%s: %s", job.job_id, mask(job.to), exc.message)
        await self._settle(
            job,
            "failed",
            {
                "status": "failed",
                "error_code": exc.error_code,
                "error_message": exc.message,
                "tries": job.tries,
            },
        )

    async def _settle(self, job: Job, outcome: str, changes: dict[str, Any], due_ms: int = 0) -> None:
        await self.store.settle_job(
            partition=job.partition,
            now_ms=self._now_ms(),
            job_id=job.job_id,
            outcome=outcome,
            changes=changes,
            retry_due_ms=due_ms,
        )
