"""Reading the audit log: filter, merge and page the per-partition audit streams.

Every decision is an entry of one Redis Stream per partition (``otp:{pNN}:audit``, see
``otp.storage.keys``). A reader wants one log, newest first, so ``read`` walks every partition's
stream backwards in growing batches and merges them, stopping as soon as it has ``limit``
matches, or has run past ``since``: it never reads a whole stream to answer a page. The filters
run inside Redis (``audit_scan.lua``, through otp.storage.audit_log), so only matches cross the wire.

Bounded work. Redis is single-threaded and shared by every tenant, and a filter that matches
nothing ends no walk early, so every read is bounded by entries *examined*: at most MAX_BATCH per
script call, ROUND_ENTRIES per pipelined round trip (they run back to back), DEFAULT_SCAN_LIMIT
per page, which then ends early -- even empty -- with a cursor to go on. A reader that must
answer in one request (the Attempts summary) uses ``Page.covered_since``: how far down the page
got, so its figures can be exact for the window it covered.

Order and cursor. Events are ordered by the key ``(ms, seq, partition)`` of their stream id and
partition, newest first. Stream ids all come from one Redis server's clock, so this is time order;
the partition only breaks ties, because two streams can hand out the same id in one millisecond.
A cursor is one position P in that order (base64url of ``v1:<ms>-<seq>:<partition>``): the page
that handed it out has dealt with every entry at or above P (returned it or found it doesn't
match) and none below, and the next page reads strictly below P: in the partitions numbered below
P's, ids up to and including P's id, in the others ids strictly below it. Every entry has exactly
one position, so pages never repeat or skip an entry, and events written meanwhile land above P
and never shift a page. P is usually the page's last event, or just below the lowest point every
partition was read down to when a page stops on its scan budget. One position serves every
partition, so the cursor stays small however many partitions there are; it carries no filters, so
the caller sends the same filters with it.

Time filters use the entry's ``ts`` (the service's clock, which tests inject), not the stream id.
A partition's walk stops at its first entry older than ``since``: a stream is written in ``ts``
order, up to the clock skew between service instances (an entry out of order by more than that
skew can be missed at the ``since`` edge).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from otp.core.audit_events import (
    DECISIONS,
    DEFAULT_WINDOW,
    EVENTS,
    FILTER_PARAMS,
    AuditEvent,
    AuditFilter,
    Position,
    StreamKey,
    event_of,
    filter_from_params,
    iso_ms,
    parse_since,
    stream_key,
    summary,
)
from otp.core.audit_format import (
    CSV_COLUMNS,
    TABLE_COLUMNS,
    TABLE_WIDTH,
    WIDE_COLUMNS,
    csv_header,
    csv_rows,
    detail,
    format_csv,
    format_jsonl,
    format_summary,
    format_table,
    printable,
    table_header,
    table_rows,
)
from otp.storage import audit_log
from otp.storage.store import Store

# The vocabulary and the formats live beside this module; readers find them here too.
__all__ = [
    "CSV_COLUMNS",
    "DECISIONS",
    "DEFAULT_WINDOW",
    "EVENTS",
    "FILTER_PARAMS",
    "TABLE_COLUMNS",
    "TABLE_WIDTH",
    "WIDE_COLUMNS",
    "AuditEvent",
    "AuditFilter",
    "Page",
    "Position",
    "StreamKey",
    "csv_header",
    "csv_rows",
    "decode_cursor",
    "detail",
    "encode_cursor",
    "filter_from_params",
    "follow_step",
    "format_csv",
    "format_jsonl",
    "format_summary",
    "format_table",
    "iso_ms",
    "latest_positions",
    "parse_since",
    "printable",
    "read",
    "read_new",
    "read_page",
    "stream_key",
    "summary",
    "table_header",
    "table_rows",
]

# Redis is single-threaded and shared by every tenant (DESIGN §2, bounded work per request); a
# scan costs about 3 µs of Redis time per entry examined, matching or not, so every bound below
# counts entries examined, never matches.
# A page of a million-entry log must not read it all: batches start near what the page needs and
# double while filters skip entries, up to MAX_BATCH (under 1 ms of Redis time per call).
MIN_BATCH = 16
MAX_BATCH = 200
# Scan calls pipelined in one round trip run back to back in Redis, holding up other clients:
# a round stops at about this many entries (~3 ms), however many partitions wait.
ROUND_ENTRIES = 800
# How many entries one request may examine (~6 ms of Redis time, in a few rounds) before it hands
# back a cursor with what it has: a rare filter over a full log then costs many short requests,
# never one long one. A page that runs out has read every partition at least once, so its cursor
# always moves on.
DEFAULT_SCAN_LIMIT = 2_000
# New events read per partition per poll when following the log; partitions are read in rounds
# of about ROUND_ENTRIES entries.
FOLLOW_BATCH = 200

_CURSOR = re.compile(r"v1:(\d{1,20})-(\d{1,20}):(\d{1,3})")
MAX_STREAM_PART = 2**64 - 1


# -- cursor ---------------------------------------------------------------------------------------


def encode_cursor(position: Position) -> str:
    ms, seq, partition = position
    return base64.urlsafe_b64encode(f"v1:{ms}-{seq}:{partition}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, partitions: int) -> Position:
    """Raises ValueError for anything ``read`` didn't hand out (for this partition count)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor from a previous page") from None
    match = _CURSOR.fullmatch(text)
    # The partition may be one past the last: "just above the last partition's entry at this id".
    if not match or int(match.group(3)) > partitions:
        raise ValueError("not a cursor from a previous page")
    ms, seq = int(match.group(1)), int(match.group(2))
    # A stream id's parts are 64-bit: Redis answers a larger one with an error (which would be a
    # 503, "retry shortly", for a cursor that can never work). No page hands one out.
    # Nor is any position at 0-0 (no entry has that id), below which XREVRANGE's "(0-0" is an error.
    if ms > MAX_STREAM_PART or seq > MAX_STREAM_PART or ms == seq == 0:
        raise ValueError("not a cursor from a previous page")
    return ms, seq, int(match.group(3))


# -- reading --------------------------------------------------------------------------------------

# The walk's frontier before anything is read: above every position.
_TOP: Position = (2**64, 0, 0)


@dataclass
class _Walk:
    """One partition's stream, read backwards. Every entry not read yet lies below ``front`` in
    the (ms, seq, partition) order (None: nothing is left); ``buffer`` holds the matches read but
    not returned, oldest first; ``front_ts`` is the ``ts`` of the entry at ``front`` once read."""

    partition: int
    front: Position | None
    batch: int
    buffer: list[AuditEvent] = field(default_factory=list)
    read_once: bool = False
    front_ts: int | None = None

    @property
    def upper(self) -> str:
        """XREVRANGE's max for "below front" in this partition."""
        assert self.front is not None
        if self.front == _TOP:
            return "+"
        ms, seq, partition = self.front
        # Within one partition the order is the id's; a front in a higher partition at the same
        # id still lets this one's entry at that id through.
        return f"{ms}-{seq}" if self.partition < partition else f"({ms}-{seq}"

    @property
    def head(self) -> Position | None:
        return self.buffer[-1].position if self.buffer else None

    @property
    def unhandled_top(self) -> Position | None:
        """Every entry this page hasn't returned or skipped lies below this position."""
        if self.buffer:
            ms, seq, partition = self.buffer[-1].position
            return ms, seq, partition + 1
        return self.front

    @property
    def unhandled_ts(self) -> int | None:
        """The ``ts`` at or below which this partition's unhandled entries lie (a stream is written
        in ts order); None when none is left."""
        if self.buffer:
            return self.buffer[-1].ts
        if self.front is None:
            return None
        assert self.front_ts is not None, "a walk is read once before a page ends"
        return self.front_ts

    def take(self, reply: audit_log.ScanReply, asked: int) -> int:
        """Apply one scan reply to a read of ``asked`` entries; returns how many it read."""
        matches = [event_of(self.partition, stream_id, fields) for stream_id, fields in reply.matches]
        self.buffer = matches[::-1]  # newest at the end, where pop() is cheap
        self.read_once = True
        if reply.stopped or reply.read < asked:
            self.front = None
        else:
            ms, seq = stream_key(reply.last)
            self.front = (ms, seq, self.partition)
            self.front_ts = reply.last_ts
        self.batch = min(MAX_BATCH, self.batch * 2)
        return reply.read


def _round(walks: Sequence[_Walk], cap: int) -> list[_Walk]:
    """The walks one round trip reads: the highest fronts first (they hold the page up), up to
    ``cap`` entries, and always at least one."""
    chosen: list[_Walk] = []
    entries = 0
    for walk in sorted(walks, key=lambda w: w.front or (-1, 0, 0), reverse=True):
        if chosen and entries + walk.batch > cap:
            break
        chosen.append(walk)
        entries += walk.batch
    return chosen


async def _scan(store: Store, walks: Sequence[_Walk], flt: AuditFilter) -> int:
    """Read the next batch of each walk in one round trip (the caller keeps the round to about
    ROUND_ENTRIES); returns how many entries Redis examined."""
    asked = [w.batch for w in walks]
    replies = await audit_log.scan(
        store,
        [audit_log.ScanRequest(w.partition, w.upper, n) for w, n in zip(walks, asked, strict=True)],
        since_ms=flt.since_ms,
        until_ms=flt.until_ms,
        criteria=flt.criteria(),
    )
    return sum(walk.take(reply, n) for walk, reply, n in zip(walks, replies, asked, strict=True))


def _best(walks: Sequence[_Walk]) -> _Walk | None:
    """The walk whose next match is the newest of all buffered ones."""
    candidates = [w for w in walks if w.buffer]
    return max(candidates, key=lambda w: w.buffer[-1].position) if candidates else None


def _cursor_after(walks: Sequence[_Walk]) -> str | None:
    tops = [top for top in (w.unhandled_top for w in walks) if top is not None]
    return encode_cursor(max(tops)) if tops else None


def _covered_since(walks: Sequence[_Walk]) -> int | None:
    bounds = [ts for ts in (w.unhandled_ts for w in walks) if ts is not None]
    return max(bounds) + 1 if bounds else None


@dataclass(frozen=True)
class Page:
    """One page of ``read_page``. ``examined`` counts the entries Redis looked at. When ``cursor``
    is set the page stopped early (``limit`` matches, or the scan budget) and ``covered_since``
    says how far down it got: every match (below ``before``) with ``ts`` at or after it is in
    ``events``; those of ``events`` older than it are a partial view, which a caller that wants an
    exact count over a window leaves out. Both are None when nothing is left to examine."""

    events: list[AuditEvent]
    cursor: str | None
    examined: int
    covered_since: int | None


async def read_page(
    store: Store,
    flt: AuditFilter,
    *,
    limit: int = 100,
    before: str | None = None,
    scan_limit: int | None = DEFAULT_SCAN_LIMIT,
) -> Page:
    """Up to ``limit`` matching events, newest first, with the cursor of the next page (None when
    nothing older is left to examine). ``before`` is a cursor from a previous page. Once
    ``scan_limit`` entries have been examined the page ends early, possibly empty, with a cursor to
    go on (None: no bound; each round trip is still short). Raises ValueError for a cursor ``read``
    didn't hand out."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    partitions = store.partitions
    start = decode_cursor(before, partitions) if before else _TOP
    # Spread evenly, each partition holds about limit/partitions of a page; twice that leaves room
    # for uneven partitions before a second round trip. Every partition is read once before a page
    # may stop on its budget, so the first batches share the budget too.
    first_batch = min(MAX_BATCH, max(MIN_BATCH, 2 * -(-(limit + 1) // partitions)))
    if scan_limit is not None:
        first_batch = min(first_batch, max(MIN_BATCH, scan_limit // partitions))
    walks = [_Walk(p, start, first_batch) for p in range(partitions)]
    found: list[AuditEvent] = []
    examined = 0
    while len(found) < limit:
        best = _best(walks)
        candidate = best.head if best else None
        # A walk with nothing buffered may still hide a newer match above the candidate: read on.
        behind = [
            w for w in walks if not w.buffer and w.front is not None and (candidate is None or w.front > candidate)
        ]
        if not behind:
            if best is None:
                break
            found.append(best.buffer.pop())
            continue
        cap = ROUND_ENTRIES
        if scan_limit is not None:
            # Every partition is read once first (``covered_since`` needs each one's depth).
            if examined >= scan_limit and all(w.read_once for w in walks) and _made_progress(found, walks, start):
                break
            cap = min(cap, max(1, scan_limit - examined))
        examined += await _scan(store, _round(behind, cap), flt)
    return Page(found, _cursor_after(walks), examined, _covered_since(walks))


async def read(
    store: Store,
    flt: AuditFilter,
    *,
    limit: int = 100,
    before: str | None = None,
    scan_limit: int | None = DEFAULT_SCAN_LIMIT,
) -> tuple[list[AuditEvent], str | None]:
    """``read_page``'s events and cursor."""
    page = await read_page(store, flt, limit=limit, before=before, scan_limit=scan_limit)
    return page.events, page.cursor


def _made_progress(found: Sequence[AuditEvent], walks: Sequence[_Walk], start: Position) -> bool:
    """Whether stopping now hands out a cursor below ``start``: without that, a page that stops
    on its scan budget could give back the cursor it was given, and a client would loop."""
    tops = [top for top in (w.unhandled_top for w in walks) if top is not None]
    return bool(found) or not tops or max(tops) < start


async def latest_positions(store: Store) -> dict[int, str]:
    """The newest id of each partition's stream ("0-0" when empty): where ``read_new`` starts."""
    return await audit_log.newest_ids(store)


async def read_new(
    store: Store, positions: Mapping[int, str], flt: AuditFilter, *, count: int = FOLLOW_BATCH
) -> tuple[list[AuditEvent], dict[int, str]]:
    """Matching events after ``positions`` (partition → last id seen), oldest first, and the new
    positions. For following the log: each partition keeps its own position, so nothing is missed
    however the streams' ids interleave. Reads at most ``count`` per partition per call."""
    found, moved, _ = await follow_step(store, positions, flt, count=count)
    return found, moved


async def follow_step(
    store: Store, positions: Mapping[int, str], flt: AuditFilter, *, count: int = FOLLOW_BATCH
) -> tuple[list[AuditEvent], dict[int, str], bool]:
    """``read_new``, and whether some partition had more than ``count`` new entries (read again
    at once rather than after a pause). Partitions are read in round trips of about
    ROUND_ENTRIES entries, so a busy log never holds Redis up for long."""
    partitions = sorted(positions)
    per_round = max(1, ROUND_ENTRIES // max(1, count))
    moved = dict(positions)
    found: list[AuditEvent] = []
    more = False
    for first in range(0, len(partitions), per_round):
        group = partitions[first : first + per_round]
        replies = await audit_log.entries_after(store, {p: positions[p] for p in group}, count=count)
        for partition, entries in replies.items():
            events = [event_of(partition, stream_id, fields) for stream_id, fields in entries]
            if events:
                moved[partition] = events[-1].id
            more = more or len(events) >= count
            found.extend(e for e in events if flt.matches(e))
    found.sort(key=lambda e: e.position)
    return found, moved, more
