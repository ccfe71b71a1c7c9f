"""Reading the audit log: filter, merge and page the per-partition audit streams.

Every decision is an entry of one Redis Stream per partition (``otp:{pNN}:audit``, see
``otp.keyspace``). A reader wants one log, newest first, so ``read`` walks every partition's
stream backwards in growing batches and merges them, stopping as soon as it has ``limit``
matches, or has run past ``since``: it never reads a whole stream to answer a page. The filters
run inside Redis (``SCAN_SCRIPT``), so only matches cross the wire.

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
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from otp.core.ipaddr import parse_ip
from otp.core.keyring import Keyring
from otp.core.phone import parse
from otp.errors import InvalidInput
from otp.settings import parse_duration
from otp.storage import keys as keyspace
from otp.storage.store import run_scripts

EVENTS = (
    "started",
    "resent",
    "refused",
    "approved",
    "check_failed",
    "max_attempts",
    "expired",
    "canceled",
    "delivery",
    "admin",  # safe-list changes and unblocks, with the admin key that made them
)
DECISIONS = ("allowed", "refused")

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
# The window a read of the API or the dashboard covers when it is given no ``since``.
DEFAULT_WINDOW = "24h"
# New events read per partition per poll when following the log; partitions are read in rounds
# of about ROUND_ENTRIES entries.
FOLLOW_BATCH = 200

StreamKey = tuple[int, int]  # (ms, seq) of a stream id
Position = tuple[int, int, int]  # (ms, seq, partition): the global order, newest = largest

# Matched with fullmatch: "$" would let a trailing newline through.
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
_CURSOR = re.compile(r"v1:(\d{1,20})-(\d{1,20}):(\d{1,3})")
_NAME = re.compile(r"[a-z0-9_]{1,64}")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")


def stream_key(stream_id: str) -> StreamKey:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``: ids compare as numbers, never as text."""
    match = _STREAM_ID.fullmatch(stream_id)
    if not match:
        raise ValueError(f"not a stream id: {stream_id!r}")
    return int(match.group(1)), int(match.group(2))


def iso_ms(ts_ms: int) -> str:
    """``2027-01-15T08:00:00.250Z``; integer arithmetic, so milliseconds never round."""
    seconds, millis = divmod(ts_ms, 1000)
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return str(ts_ms)  # a hand-written entry's odd ts must not make the whole page fail
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


@dataclass(frozen=True)
class AuditEvent:
    id: str  # stream id
    partition: int
    ts: int  # event time, ms, from the service's clock
    fields: dict[str, str]

    @property
    def position(self) -> Position:
        ms, seq = stream_key(self.id)
        return ms, seq, self.partition

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: id, partition, ISO time, then every field (``ts`` as a number, ``counts``
        decoded when it is valid JSON)."""
        out: dict[str, Any] = {"id": self.id, "partition": self.partition, "time": iso_ms(self.ts)}
        for name, value in self.fields.items():
            if name in out:
                continue
            out[name] = value
        out["ts"] = self.ts
        if "counts" in self.fields:
            try:
                out["counts"] = json.loads(self.fields["counts"])
            except ValueError:
                pass  # kept as written: a malformed entry must still be readable
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event(partition: int, raw_id: Any, raw_fields: Mapping[Any, Any] | None) -> AuditEvent:
    stream_id = _text(raw_id)
    fields = {_text(k): _text(v) for k, v in (raw_fields or {}).items()}
    try:
        ts = int(fields.get("ts", ""))
    except ValueError:
        ts = stream_key(stream_id)[0]  # only a hand-written entry lacks ts; its id is the best time
    return AuditEvent(stream_id, partition, ts, fields)


# -- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """Every given criterion must hold; ``since`` is inclusive, ``until`` exclusive (ms).
    ``key_in`` is "one of these API keys" (an account's services), instead of ``key``."""

    since_ms: int | None = None
    until_ms: int | None = None
    reason: str | None = None
    rule: str | None = None
    country: str | None = None
    number_hash: str | None = None
    ip: str | None = None
    key: str | None = None
    decision: str | None = None
    event: str | None = None
    key_in: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.key is not None and self.key_in is not None:
            raise ValueError("give key or key_in, not both")

    def criteria(self) -> list[tuple[str, str]]:
        """(field, value) pairs, as stored (``number_hash`` is the ``nh`` field): an entry must hold,
        for every field named, one of the values paired with it."""
        wanted = {
            "reason": self.reason,
            "rule": self.rule,
            "country": self.country,
            "nh": self.number_hash,
            "ip": self.ip,
            "key": self.key,
            "decision": self.decision,
            "event": self.event,
        }
        pairs = [(name, value) for name, value in wanted.items() if value is not None]
        if self.key_in is not None:
            # No key at all matches nothing: "" is never a key id, and the pair keeps the field named.
            pairs += [("key", key) for key in sorted(self.key_in)] or [("key", "")]
        return pairs

    def matches(self, event: AuditEvent) -> bool:
        if self.since_ms is not None and event.ts < self.since_ms:
            return False
        if self.until_ms is not None and event.ts >= self.until_ms:
            return False
        allowed: dict[str, set[str]] = {}
        for name, value in self.criteria():
            allowed.setdefault(name, set()).add(value)
        return all(event.fields.get(name) in values for name, values in allowed.items())


def parse_since(text: str, now: float) -> int:
    """A point in time, in ms: a duration back from ``now`` (``90s``, ``30m``, ``1h``, ``2d``) or
    an ISO-8601 time (``2027-01-15T08:00:00Z``; without a zone it is UTC)."""
    text = text.strip()
    try:
        return int((now - parse_duration(text)) * 1000)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 1h, 2d) nor an ISO-8601 time (2027-01-15T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _one_of(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"must be one of: {', '.join(allowed)}", field=name)
    return value


def _matching(value: str, pattern: re.Pattern[str], name: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise InvalidInput(f"must be {what}", field=name)
    return value


def _time(value: str, now: float, name: str) -> int:
    try:
        return parse_since(value, now)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=name) from None


def _ip(value: str) -> str:
    # Stored in the canonical form, so 2001:DB8::1 finds what 2001:db8::1 wrote.
    return parse_ip(value, field="ip")


FILTER_PARAMS = ("since", "until", "reason", "rule", "country", "number", "ip", "key", "decision", "event")


def filter_from_params(
    params: Mapping[str, str | None],
    *,
    now: float,
    default_region: str,
    keyring: Keyring | None,
    default_window: str | None = None,
) -> AuditFilter:
    """The filter of the CLI options and API query parameters (same names, see FILTER_PARAMS).
    Empty values count as absent; a bad one raises InvalidInput naming its parameter. ``number``
    is parsed and replaced by its keyed hash (what the log holds), so it needs ``keyring``.
    Without ``since``, ``default_window`` (a duration) back from ``until`` (or ``now``) is used."""
    given = {name: value.strip() for name, value in params.items() if value is not None and value.strip()}
    since = _time(given["since"], now, "since") if "since" in given else None
    until = _time(given["until"], now, "until") if "until" in given else None
    if since is None and default_window is not None:
        since = (int(now * 1000) if until is None else until) - int(parse_duration(default_window) * 1000)
    if since is not None and until is not None and until <= since:
        raise InvalidInput("must be later than since", field="until")
    number_hash = None
    if "number" in given:
        if keyring is None:
            raise ValueError("filtering by number needs the keyring (OTP_SECRET_KEY)")
        phone = parse(given["number"], default_region=default_region, field="number")
        number_hash = keyring.number_hash(phone.e164)
    reason, rule, key = given.get("reason"), given.get("rule"), given.get("key")
    country, ip = given.get("country"), given.get("ip")
    decision, event = given.get("decision"), given.get("event")
    return AuditFilter(
        since_ms=since,
        until_ms=until,
        reason=_matching(reason, _NAME, "reason", "a reason like resend_too_soon") if reason else None,
        rule=_matching(rule, _NAME, "rule", "a rule like number_sends") if rule else None,
        country=_matching(country, _COUNTRY, "country", "a two-letter ISO country code").upper() if country else None,
        number_hash=number_hash,
        ip=_ip(ip) if ip else None,
        key=_matching(key, _KEY_ID, "key", "an API key id (as `otp keys list` shows it)") if key else None,
        decision=_one_of(decision, DECISIONS, "decision") if decision else None,
        event=_one_of(event, EVENTS, "event") if event else None,
    )


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
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


# -- reading --------------------------------------------------------------------------------------

# The filters run inside Redis: redis-py's parser costs ~50 µs per entry, the script ~3 µs, and
# only matches cross the wire (as one JSON string each, cheap to parse). Read-only, one key, and
# bounded by COUNT, so a call blocks Redis for a few milliseconds at most.
SCAN_SCRIPT = (resources.files("otp.storage") / "lua" / "audit_scan.lua").read_text()

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

    def take(self, reply: Sequence[Any], asked: int) -> int:
        """Apply one SCAN_SCRIPT reply to a read of ``asked`` entries; returns how many it read."""
        read, last, stopped, flat = int(reply[0]), _text(reply[1]), int(reply[2]), reply[3]
        matches = [_event_from_json(self.partition, flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        self.buffer = matches[::-1]  # newest at the end, where pop() is cheap
        self.read_once = True
        if stopped or read < asked:
            self.front = None
        else:
            ms, seq = stream_key(last)
            self.front = (ms, seq, self.partition)
            self.front_ts = int(reply[4])
        self.batch = min(MAX_BATCH, self.batch * 2)
        return read


def _event_from_json(partition: int, raw_id: Any, raw_json: Any) -> AuditEvent:
    flat = json.loads(_text(raw_json))
    return _event(partition, raw_id, dict(zip(flat[::2], flat[1::2], strict=True)))


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


async def _scan(client: aioredis.Redis, walks: Sequence[_Walk], flt: AuditFilter) -> int:
    """Read the next batch of each walk in one round trip (the caller keeps the round to about
    ROUND_ENTRIES); returns how many entries Redis examined."""
    script = client.register_script(SCAN_SCRIPT)
    since = "" if flt.since_ms is None else str(flt.since_ms)
    until = "" if flt.until_ms is None else str(flt.until_ms)
    pairs = [part for pair in flt.criteria() for part in pair]
    asked = [w.batch for w in walks]
    replies = await run_scripts(
        client,
        [
            (script, [keyspace.audit_stream(w.partition)], [w.upper, "-", n, since, until, *pairs])
            for w, n in zip(walks, asked, strict=True)
        ],
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
    client: aioredis.Redis,
    partitions: int,
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
        examined += await _scan(client, _round(behind, cap), flt)
    return Page(found, _cursor_after(walks), examined, _covered_since(walks))


async def read(
    client: aioredis.Redis,
    partitions: int,
    flt: AuditFilter,
    *,
    limit: int = 100,
    before: str | None = None,
    scan_limit: int | None = DEFAULT_SCAN_LIMIT,
) -> tuple[list[AuditEvent], str | None]:
    """``read_page``'s events and cursor."""
    page = await read_page(client, partitions, flt, limit=limit, before=before, scan_limit=scan_limit)
    return page.events, page.cursor


def _made_progress(found: Sequence[AuditEvent], walks: Sequence[_Walk], start: Position) -> bool:
    """Whether stopping now hands out a cursor below ``start``: without that, a page that stops
    on its scan budget could give back the cursor it was given, and a client would loop."""
    tops = [top for top in (w.unhandled_top for w in walks) if top is not None]
    return bool(found) or not tops or max(tops) < start


async def latest_positions(client: aioredis.Redis, partitions: int) -> dict[int, str]:
    """The newest id of each partition's stream ("0-0" when empty): where ``read_new`` starts."""
    async with client.pipeline(transaction=False) as pipe:
        for partition in range(partitions):
            pipe.xrevrange(keyspace.audit_stream(partition), "+", "-", count=1)
        replies = await pipe.execute()
    return {p: _text(raw[0][0]) if raw else "0-0" for p, raw in enumerate(replies)}


async def read_new(
    client: aioredis.Redis, positions: Mapping[int, str], flt: AuditFilter, *, count: int = FOLLOW_BATCH
) -> tuple[list[AuditEvent], dict[int, str]]:
    """Matching events after ``positions`` (partition → last id seen), oldest first, and the new
    positions. For following the log: each partition keeps its own position, so nothing is missed
    however the streams' ids interleave. Reads at most ``count`` per partition per call."""
    found, moved, _ = await follow_step(client, positions, flt, count=count)
    return found, moved


async def follow_step(
    client: aioredis.Redis, positions: Mapping[int, str], flt: AuditFilter, *, count: int = FOLLOW_BATCH
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
        async with client.pipeline(transaction=False) as pipe:
            for partition in group:
                pipe.xrange(keyspace.audit_stream(partition), "(" + positions[partition], "+", count=count)
            replies = await pipe.execute()
        for partition, raw in zip(group, replies, strict=True):
            events = [_event(partition, raw_id, raw_fields) for raw_id, raw_fields in raw]
            if events:
                moved[partition] = events[-1].id
            more = more or len(events) >= count
            found.extend(e for e in events if flt.matches(e))
    found.sort(key=lambda e: e.position)
    return found, moved, more


# -- summary and formats --------------------------------------------------------------------------


def _is_refusal(event: AuditEvent) -> bool:
    return event.get("event") == "refused" or event.get("decision") == "refused"


def _ranked(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def summary(events: Iterable[AuditEvent]) -> dict[str, Any]:
    """``{"events": n, "refused": m, "by_event": {...}, "refused_by_reason": {...}}``, most
    frequent first."""
    by_event: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for event in events:
        by_event[event.get("event") or "unknown"] += 1
        if _is_refusal(event):
            reasons[event.get("reason") or "unspecified"] += 1
    return {
        "events": sum(by_event.values()),
        "refused": sum(reasons.values()),
        "by_event": _ranked(by_event),
        "refused_by_reason": _ranked(reasons),
    }


# What a terminal or a spreadsheet must never receive from a stored field: C0 and C1 controls
# (ESC starts an ANSI sequence, CR/LF forge lines, 0x9b is a one-byte CSI), DEL, the Unicode line
# separators and bidirectional overrides (which reorder what is shown), and the backslash, so an
# escape can't be told from text that looks like one.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character as a visible escape (ESC → ``\\x1b``, a newline →
    ``\\x0a``, ``\\`` → ``\\\\``): for the table and CSV, which a terminal shows as they are."""
    return _UNPRINTABLE.sub(_escape, text)


def format_summary(totals: Mapping[str, Any]) -> str:
    """``12 events, 4 refused: resend_too_soon ×3, number_hourly_limit ×1``."""
    line = f"{totals['events']} event{'' if totals['events'] == 1 else 's'}, {totals['refused']} refused"
    reasons = totals.get("refused_by_reason") or {}
    if reasons:
        line += ": " + ", ".join(f"{printable(str(reason))} ×{n}" for reason, n in reasons.items())
    return line


# Widths fit the usual values, so rows printed one batch at a time (``--follow``) still line up;
# a longer value widens its row rather than being cut.
TABLE_COLUMNS = (
    ("time", 24),
    ("event", 12),
    ("decision", 8),
    ("rule", 20),
    ("reason", 25),
    ("to", 16),
    ("country", 7),
    ("ip", 15),
    ("key", 16),
    ("vid", 0),
)


def _cell(event: AuditEvent, column: str) -> str:
    if column == "time":
        return iso_ms(event.ts)
    return printable(event.get(column)) or "-"


def _row(cells: Sequence[str]) -> str:
    return "  ".join(cell.ljust(width) for cell, (_, width) in zip(cells, TABLE_COLUMNS, strict=True)).rstrip()


def table_header() -> str:
    return _row([name for name, _ in TABLE_COLUMNS])


def table_rows(events: Iterable[AuditEvent]) -> list[str]:
    return [_row([_cell(event, name) for name, _ in TABLE_COLUMNS]) for event in events]


def format_table(events: Sequence[AuditEvent]) -> str:
    """Header, one row per event, and the summary line."""
    return "\n".join([table_header(), *table_rows(events), format_summary(summary(events))])


# json.dumps escapes C0 controls only; these it leaves raw (they are valid in a JSON string).
_JSON_UNPRINTABLE = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def format_jsonl(events: Iterable[AuditEvent]) -> str:
    """One JSON object per line; every control character escaped (``\\u001b``), so the text is
    safe on a terminal and decodes to the values as stored."""
    text = "\n".join(json.dumps(e.as_dict(), separators=(",", ":"), ensure_ascii=False) for e in events)
    return _JSON_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# Every field the service writes, in a fixed order: a spreadsheet's columns don't move between
# exports. (A field added later is left out here until it is added to this list.)
CSV_COLUMNS = (
    "id",
    "time",
    "event",
    "decision",
    "rule",
    "reason",
    "retry_after",
    "to",
    "nh",
    "country",
    "prefix",
    "ip",
    "key",
    "vid",
    "send",
    "attempt",
    "status",
    "error_code",
    "number_sends_1h",
    "number_sends_24h",
    "counts",
)


def csv_header() -> str:
    return _csv_lines([list(CSV_COLUMNS)])


def csv_rows(events: Iterable[AuditEvent]) -> str:
    rows = [[e.id, iso_ms(e.ts), *(printable(e.get(c)) for c in CSV_COLUMNS[2:])] for e in events]
    return _csv_lines(rows)


def _csv_lines(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().rstrip("\n")


def format_csv(events: Sequence[AuditEvent]) -> str:
    """A header row, then one row per event (CSV_COLUMNS)."""
    rows = csv_rows(events)
    return csv_header() + ("\n" + rows if rows else "")
