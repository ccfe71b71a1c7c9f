"""The webhook delivery loop, run by the worker beside the SMS outbox: claim due events under a
lease, post each to the owner's webhooks that want it (signed with Twilio's X-Twilio-Signature),
retry with backoff what went unanswered, and give up within a bound.

At least once: an event stays queued until every webhook answered 2xx or was given up on, and a
loop that dies mid-way leaves it leased, to be claimed again. Each post carries the event's sid
(``EventSid`` and ``I-Twilio-Idempotency-Token``), so a receiver drops a repeat. A webhook that
answers 2xx is not posted to again when another of the same event is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from twilio.request_validator import RequestValidator

from otp.clock import SYSTEM, Clock
from otp.core import metrics, services, webhooks
from otp.core.keyring import Keyring
from otp.edge.webhook_sender import PostResult, WebhookPoster
from otp.edge.worker import backoff, each_partition, gathered, refused_round
from otp.errors import Unavailable
from otp.model import QueuedEvent
from otp.storage.store import Store

log = logging.getLogger("otp.webhooks")


@dataclass(frozen=True)
class EventOptions:
    """The loop's settings (the shell builds them: ``otp.app.event_options``) and its tuning."""

    allow_private: bool
    retention: float
    timeout: float = 5.0
    lease: float = 30.0
    batch: int = 20
    backoff_base: float = 2.0
    backoff_cap: float = 3600.0
    # Give up after this many tries or this long after the first, whichever comes first.
    max_tries: int = 20
    max_age: float = 86_400.0


class EventDelivery:
    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        options: EventOptions,
        *,
        clock: Clock = SYSTEM,
        poster: WebhookPoster | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.options = options
        self.clock = clock
        self.poster = poster or WebhookPoster(allow_private=options.allow_private, timeout=options.timeout)

    async def claim(self) -> list[QueuedEvent]:
        now, lease_ms, limit = self.clock.now_ms(), int(self.options.lease * 1000), self.options.batch
        retention_ms = int(self.options.retention * 1000)
        try:
            batches = await self.store.claim_events_everywhere(
                now_ms=now, lease_ms=lease_ms, limit=limit, retention_ms=retention_ms
            )
        except Unavailable:

            def one(partition: int) -> Awaitable[list[QueuedEvent]]:
                return self.store.claim_events(
                    partition=partition, now_ms=now, lease_ms=lease_ms, limit=limit, retention_ms=retention_ms
                )

            batches = await each_partition(self.store, one)
        refused = refused_round(batches)
        if refused is not None:
            raise refused
        return gathered(batches, "webhook events")

    async def run_once(self) -> int:
        events = await self.claim()
        await asyncio.gather(*(self._guarded(event) for event in events))
        return len(events)

    async def _guarded(self, event: QueuedEvent) -> None:
        try:
            await self.process(event)
        except Exception:
            # The lease runs out and the event is claimed again: nothing is lost.
            log.exception("webhooks: event %s failed; it will be retried after its lease", event.event_sid)

    async def _post(self, event: QueuedEvent, webhook: webhooks.Webhook, secret: str) -> PostResult:
        attempt = services.attempt_sid(event.verification_id, event.send_number) if event.send_number else ""
        params = webhooks.payload(event, webhook, attempt_sid=attempt if webhook.owner.startswith("VA") else "")
        headers = {
            "X-Twilio-Signature": RequestValidator(secret).compute_signature(webhook.url, params),
            "I-Twilio-Idempotency-Token": event.event_sid,
            "User-Agent": "otp-webhooks",
        }
        return await self.poster.post(webhook.url, params, headers)

    async def process(self, event: QueuedEvent) -> None:
        done = list(event.done)
        targets = [(w, s) for w, s in await webhooks.targets(self.store, self.keyring, event) if w.sid not in done]
        if not targets and not done:
            metrics.WEBHOOK_DROPPED.labels("no_webhook").inc()
        retry = False
        for webhook, secret in targets:
            result = await self._post(event, webhook, secret)
            if result.delivered:
                metrics.WEBHOOK_POSTS.labels("delivered").inc()
                done.append(webhook.sid)
            elif result.retryable:
                metrics.WEBHOOK_POSTS.labels("retry").inc()
                retry = True
                log.info(
                    "webhook %s: event %s unanswered (%s)", webhook.sid, event.event_sid, result.error or result.status
                )
            else:
                # A refusal (4xx, a redirect, an address otp doesn't post to): retrying changes nothing.
                metrics.WEBHOOK_POSTS.labels("refused").inc()
                done.append(webhook.sid)
                log.warning(
                    "webhook %s refused event %s (%s); not retried",
                    webhook.sid,
                    event.event_sid,
                    result.error or result.status,
                )
        now = self.clock.now_ms()
        if not retry:
            await self.store.settle_event(event, now_ms=now, outcome="done")
            return
        too_old = now - event.first_try_ms >= self.options.max_age * 1000
        if event.tries >= self.options.max_tries or too_old:
            metrics.WEBHOOK_DROPPED.labels("retries_exhausted").inc()
            log.warning("webhooks: gave up on event %s after %d tries", event.event_sid, event.tries)
            await self.store.settle_event(event, now_ms=now, outcome="done")
            return
        delay = backoff(event.tries, self.options.backoff_base, self.options.backoff_cap)
        await self.store.settle_event(
            event, now_ms=now, outcome="retry", done=done, retry_due_ms=now + int(delay * 1000)
        )

    async def aclose(self) -> None:
        await self.poster.aclose()
