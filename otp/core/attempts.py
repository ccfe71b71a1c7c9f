"""The Attempts read model: the sends of an account's verifications, as Twilio's VerificationAttempts.

Read from the audit log (``started``/``resent`` events, newest first) and completed from each
verification (conversion, delivery, price) while it is retained. Every read examines at most
``audit.DEFAULT_SCAN_LIMIT`` log entries and reads at most a page's worth of verifications, so one
request never holds Redis up: a list page that runs out hands back a cursor to go on with; a
summary that runs out narrows its window and says so.

The log is read through ``PageReader`` (bound by the caller to its store and partitions), so this
module holds no client and knows no transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Protocol

from otp.core import audit, services
from otp.core.phone import parse_e164
from otp.core.verification import APPROVED, Caller, SendAttempt, Verification, Verifier
from otp.errors import NotFound
from otp.storage import keys as keyspace

SEND_EVENTS = ("started", "resent")
ATTEMPTS_WINDOW_MS = 30 * 86_400_000  # without DateCreatedAfter: the last 30 days, as Twilio
SUMMARY_MAX_SENDS = 500
# A page of attempts filtered on the verification (Status, DestinationPrefix) reads up to this
# many verifications (or its page size) before it ends short, with a cursor to go on.
LIST_BATCH = 200
FETCH_CONCURRENCY = 64
# The most service sids an audit read filters on inside Redis (see ``query``).
MAX_KEYS_IN_SCAN = 64


def timeline(send: SendAttempt) -> dict[str, int]:
    """A send's moments in order (epoch ms): ``queued`` (the start or resend), ``accepted`` (Twilio
    took the create), then the first ``sent`` and the final state Twilio reported."""
    moments = {"queued": round(send.at * 1000)}
    if send.sent_at is not None:
        moments["accepted"] = round(send.sent_at * 1000)
    moments.update(sorted(send.timeline.items(), key=lambda item: item[1]))
    return moments


def time_to_delivered_ms(send: SendAttempt) -> int | None:
    delivered = send.timeline.get("delivered")
    return None if delivered is None else max(0, delivered - round(send.at * 1000))


class PageReader(Protocol):
    """The audit log's paged read (``otp.core.audit.read_page`` bound to a client and partitions)."""

    def __call__(
        self, flt: audit.AuditFilter, *, limit: int, before: str | None = None, scan_limit: int | None
    ) -> Awaitable[audit.Page]: ...


@dataclass(frozen=True)
class Attempt:
    """One send of a verification, as Twilio's VerificationAttempt."""

    sid: str
    service_sid: str
    verification_id: str
    number: int
    at: float
    country: str
    verification: Verification | None  # None once past its retention period

    @property
    def send(self) -> SendAttempt | None:
        v = self.verification
        return next((a for a in v.send_attempts if a.number == self.number), None) if v else None

    @property
    def tags(self) -> dict[str, str]:
        """The caller's Tags of the verification (Twilio's), while it is retained; {} after."""
        return dict(self.verification.tags) if self.verification else {}

    @property
    def converted(self) -> bool:
        return self.verification is not None and self.verification.status == APPROVED


@dataclass(frozen=True)
class AttemptFilters:
    """What a caller asked for, already validated; ``number_hash`` is the keyed hash of a number."""

    since_ms: int | None = None
    until_ms: int | None = None
    country: str | None = None
    number_hash: str | None = None
    channel: str | None = None
    service_sid: str | None = None
    verification_id: str | None = None
    status: str | None = None  # converted | unconverted
    prefix: str | None = None


@dataclass(frozen=True)
class AttemptQuery:
    """``flt`` narrows the log read to sends (only ``started``/``resent`` entries are
    ``decision=allowed``) by time, country, number and, for one service, key; what the audit
    filter can't say (one of several services, one verification) ``sends`` checks on what it
    returns, and what the log doesn't hold (conversion, full number) ``keeps`` checks on the
    verification."""

    flt: audit.AuditFilter
    keys: frozenset[str]
    verification_id: str | None = None
    nothing: bool = False  # a filter nothing can match: another channel, a service not the account's
    status: str | None = None  # converted | unconverted
    prefix: str | None = None

    def sends(self, events: Iterable[audit.AuditEvent]) -> list[audit.AuditEvent]:
        return [
            e
            for e in events
            if e.get("event") in SEND_EVENTS
            and e.get("key") in self.keys
            and (self.verification_id is None or e.get("vid") == self.verification_id)
        ]

    def keeps(self, attempt: Attempt) -> bool:
        if self.status is not None and (attempt.converted != (self.status == "converted")):
            return False
        if self.prefix is not None:
            v = attempt.verification
            return v is not None and v.to.startswith(self.prefix)
        return True


def query(filters: AttemptFilters, account_services: frozenset[str], now: float) -> AttemptQuery:
    """The query of ``filters`` over the sends of ``account_services`` (the account's service sids)."""
    keys = account_services
    if filters.service_sid is not None:
        keys = keys & {filters.service_sid}
    since = filters.since_ms
    if since is None:
        # Twilio's Attempts cover the last 30 days; a window also ends every walk of the log.
        since = int(now * 1000) - ATTEMPTS_WINDOW_MS
    flt = audit.AuditFilter(
        since_ms=since,
        until_ms=filters.until_ms,
        country=filters.country,
        number_hash=filters.number_hash,
        # Inside Redis, so other tenants' sends never cross the wire (nor fill a page) -- while
        # the account has few services: audit_scan.lua builds the set of them on every call (one
        # per partition per round trip), which for thousands of services held Redis for tens of
        # milliseconds per call. Past MAX_KEYS_IN_SCAN, ``sends`` alone checks the key, on what a
        # read bounded by entries examined returns.
        key_in=keys if len(keys) <= MAX_KEYS_IN_SCAN else None,
        decision="allowed",
    )
    nothing = not keys or filters.channel not in (None, "sms")
    return AttemptQuery(
        flt, keys, filters.verification_id, nothing=nothing, status=filters.status, prefix=filters.prefix
    )


@dataclass(frozen=True)
class Summary:
    """Counts over ``[since_ms, until_ms)``: exact for that window, which is narrower than asked
    when ``complete`` is False."""

    total: int
    converted: int
    since_ms: int
    until_ms: int
    complete: bool

    @property
    def unconverted(self) -> int:
        return self.total - self.converted

    @property
    def conversion_rate_percentage(self) -> str | None:
        if not self.total:
            return None
        return f"{self.converted * 100 / self.total:.9f}".rstrip("0").rstrip(".")


class Attempts:
    def __init__(self, verifier: Verifier, read_page: PageReader) -> None:
        self.verifier = verifier
        self.read_page = read_page

    async def _fetch_quietly(self, vid: str, service_sid: str) -> Verification | None:
        try:
            return await self.verifier.fetch(vid, Caller(service_sid))
        except NotFound:
            return None

    async def of(self, events: list[audit.AuditEvent]) -> list[Attempt]:
        """The attempts of send events, each with its verification while it is retained."""
        sends = [
            (e, e.get("vid"), int(e.get("send") or 1))
            for e in events
            if keyspace.VERIFICATION_ID.fullmatch(e.get("vid")) and (e.get("send") or "1").isdigit()
        ]
        owners = {vid: e.get("key") for e, vid, _ in sends}
        fetched: dict[str, Verification | None] = {}
        pending = list(owners.items())
        for start in range(0, len(pending), FETCH_CONCURRENCY):
            chunk = pending[start : start + FETCH_CONCURRENCY]
            found = await asyncio.gather(*(self._fetch_quietly(vid, owner) for vid, owner in chunk))
            fetched.update(zip((vid for vid, _ in chunk), found, strict=True))
        return [
            Attempt(services.attempt_sid(vid, n), e.get("key"), vid, n, e.ts / 1000, e.get("country"), fetched[vid])
            for e, vid, n in sends
        ]

    async def page(self, q: AttemptQuery, page_size: int, token: str | None) -> tuple[list[Attempt], str | None]:
        """One page of attempts, newest first, and the cursor of the next (None: no more). The page
        ends short -- even empty -- with a cursor when it has examined its share of the log or read
        a page's worth of verifications that filters on them (Status, DestinationPrefix) then
        dropped."""
        if q.nothing:
            return [], None
        found: list[Attempt] = []
        cursor = token
        budget = audit.DEFAULT_SCAN_LIMIT
        fetches = max(page_size, LIST_BATCH)
        # Without filters on the verification, every send read is on the page: read no more than it needs.
        filtered = q.status is not None or q.prefix is not None
        while budget > 0:
            page = await self.read_page(
                q.flt,
                limit=fetches if filtered else page_size - len(found),
                before=cursor,
                scan_limit=budget,
            )
            budget -= page.examined
            sends = q.sends(page.events)
            # In chunks of what the page still needs, so verifications are read for about a page.
            while sends:
                room = min(page_size - len(found), fetches)
                chunk, sends = sends[:room], sends[room:]
                fetches -= len(chunk)
                found.extend(a for a in await self.of(chunk) if q.keeps(a))
                if len(found) == page_size or not fetches:
                    # Everything at or above the chunk's last send is on this page or filtered out;
                    # the next page starts strictly below it, so none is skipped or repeated.
                    return found, audit.encode_cursor(chunk[-1].position)
            cursor = page.cursor
            if cursor is None:
                break
        return found, cursor

    async def summary(self, q: AttemptQuery) -> Summary:
        """One bounded read, as Twilio's summary has no cursor: the newest matching sends, down to
        the query's start, examining at most audit.DEFAULT_SCAN_LIMIT log entries and reading at
        most SUMMARY_MAX_SENDS verifications. When either runs out first, the figures are exact for
        a narrower window -- from the newest point every match above which was counted."""
        total = converted = 0
        start, end = q.flt.since_ms, q.flt.until_ms
        complete = True
        if not q.nothing:
            page = await self.read_page(q.flt, limit=SUMMARY_MAX_SENDS, scan_limit=audit.DEFAULT_SCAN_LIMIT)
            sends = q.sends(page.events)
            if page.cursor is not None and page.covered_since is not None:
                complete = False
                start = max(start or 0, page.covered_since)
                # Sends below that point were counted in some partitions only: leave them all out.
                sends = [e for e in sends if e.ts >= start]
            for attempt in await self.of(sends):
                if q.keeps(attempt):
                    total += 1
                    converted += attempt.converted
        end_ms = end if end is not None else int(self.verifier.clock() * 1000)
        return Summary(total, converted, start or 0, end_ms, complete)

    async def one(self, sid: str, service_sid: str, verification_id: str, number: int) -> Attempt:
        """The attempt ``sid``, found by the lookup written at its send; NotFound once its
        verification is gone or never had that send."""
        v = await self.verifier.fetch(verification_id, Caller(service_sid))
        send = next((a for a in v.send_attempts if a.number == number), None)
        if send is None:
            raise NotFound(f"no attempt {sid}", field="Sid")
        return Attempt(sid, service_sid, verification_id, number, send.at, parse_e164(v.to).country, v)
