"""Dashboard figures from the hourly audit counters, never from the audit stream.

Each audit event also increments a field of its partition's counter hash for the hour of the
service clock (``otp:{pNN}:agg:<hour>``, see ``audit()`` in ``lua/lib.lua``): ``started``,
``approved``, ``refused:<rule>:<reason>``, ``delivery:<status>:<error code>``,
``flagged:<scope>:<reason>``, and per destination ``sent@prefix:<prefix>`` /
``approved@country:<CC>``. A window is a run of whole clock hours ending with the current one:
``1h`` is the current hour so far, ``24h`` the current hour and the 23 before it, like
``Policy.conversion``.

The hashes are summed inside Redis (``counters.lua``), one call per partition and day of hours:
a week of busy hours holds about a million destination fields, and shipping them to Python
(pipelined HGETALL) took 3 s where the sums take a fraction of that. The overview and
``GET /v1/stats/overview`` both come from ``overview()`` here, so the page and the API never
disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from otp import audit_fields
from otp import delivery_errors as catalogue
from otp.audit_fields import DELIVERY_COUNTER, FLAGGED_COUNTER, REFUSED_COUNTER, Event
from otp.core.audit import iso_ms
from otp.core.report_windows import DEFAULT_WINDOW as DEFAULT_WINDOW
from otp.core.report_windows import MINUTE_MS as MINUTE_MS
from otp.core.report_windows import OLD_WINDOW_PARAM as OLD_WINDOW_PARAM
from otp.core.report_windows import WINDOW_PARAM as WINDOW_PARAM
from otp.core.report_windows import WINDOWS as WINDOWS
from otp.core.report_windows import Window as Window
from otp.core.report_windows import window as window
from otp.core.report_windows import window_of as window_of
from otp.core.report_windows import window_slots as window_slots
from otp.delivery import COUNTED, FAILED, FUNNEL, TIME_TO_DELIVERED_BUCKETS
from otp.storage.store import COUNTER_HOURS_PER_CALL, MINUTES_PER_CALL, Store

HOUR_MS = 3_600_000
# Events a verification goes through, in the order the overview lists them.
VERIFICATION_EVENTS = audit_fields.VERIFICATION_EVENTS


# -- reading the counters ------------------------------------------------------------------------


def _chunks(hours: Sequence[int], per_call: int = COUNTER_HOURS_PER_CALL) -> list[Sequence[int]]:
    """The chunks `Store.sum_audit_counters` answers by."""
    return [hours[i : i + per_call] for i in range(0, len(hours), per_call)]


async def _sum(
    store: Store, hours: Sequence[int], mode: str, extra: Sequence[str] = (), *, by_minute: bool = False
) -> list[list[Any]]:
    return await store.sum_audit_counters(hours, mode, extra, by_minute=by_minute)


async def hourly_events(store: Store, hours: Sequence[int], *, by_minute: bool = False) -> dict[int, Counter[str]]:
    """Per hour (or minute), the non-destination counter fields summed over every partition."""
    merged: dict[int, Counter[str]] = {hour: Counter() for hour in hours}
    per_call = MINUTES_PER_CALL if by_minute else COUNTER_HOURS_PER_CALL
    replies = await _sum(store, hours, "events", by_minute=by_minute)
    for chunk, chunk_replies in zip(_chunks(hours, per_call), replies, strict=True):
        for per_key in chunk_replies:
            # cjson encodes an empty array as an object; a chunk always has keys, but be lenient.
            for hour, counts in zip(chunk, per_key if isinstance(per_key, list) else [], strict=False):
                merged[hour].update({str(k): int(v) for k, v in counts.items()})
    return merged


# -- overview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    start_ms: int
    minutes: int
    in_window: bool
    counts: Counter[str]

    @property
    def hours(self) -> int:
        """Whole hours in the bucket (0 for a bucket of minutes)."""
        return self.minutes // 60


def _sum_prefixed(counts: Counter[str], prefix: str) -> int:
    return sum(n for name, n in counts.items() if name.startswith(prefix))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def delivery_states(counts: Counter[str]) -> Counter[str]:
    """State → reports: ``queued`` is every send (start or resend queues one SMS); the others are
    the delivery reports that moved a send into that state (``delivery:<status>:<code>``)."""
    states: Counter[str] = Counter({"queued": counts[Event.STARTED] + counts[Event.RESENT]})
    for name, n in counts.items():
        if name.startswith(DELIVERY_COUNTER):
            status = name.split(":", 2)[1]
            if status != "queued":  # a send is already counted as queued when it is made
                states[status] += n
    return states


def delivery_errors(counts: Counter[str]) -> list[dict[str, Any]]:
    """Undelivered and failed reports by Twilio error code, most frequent first."""
    rows: Counter[tuple[str, str]] = Counter()
    for name, n in counts.items():
        if name.startswith(DELIVERY_COUNTER):
            _, status, code = [*name.split(":", 2), "", ""][:3]
            if status in FAILED:
                rows[(status, code)] += n
    return [
        {"status": status, "error_code": code, "count": n, **_explained(code)}
        for (status, code), n in sorted(rows.items(), key=lambda item: (-item[1], item[0]))
        if n
    ]


def _explained(code: str) -> dict[str, Any]:
    """The catalogue's words for an error code (otp.delivery_errors), for the panel and the API."""
    found = catalogue.lookup(code or None)
    if found is None:
        return {"title": "", "meaning": "", "retry_helps": False, "action": ""}
    return {"title": found.title, "meaning": found.meaning, "retry_helps": found.retry, "action": found.action}


def quantile(q: float, histogram: Counter[str]) -> float | None:
    """The ``q`` quantile (seconds) of a time-to-delivered histogram (counts by bucket upper bound
    in ms, or "inf"), interpolated inside its bucket as Prometheus's histogram_quantile does; a
    quantile in the open bucket is the last bound. None for no observations."""
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen, lower = q * total, 0, 0.0
    for bound in TIME_TO_DELIVERED_BUCKETS:
        n = histogram[str(int(bound * 1000))]
        if seen + n >= rank and n:
            return round(lower + (bound - lower) * (rank - seen) / n, 3)
        seen, lower = seen + n, float(bound)
    return float(TIME_TO_DELIVERED_BUCKETS[-1])


def delivery_by(counts: Counter[str], states: str, times: str, name: str) -> list[dict[str, Any]]:
    """Final delivery states, delivery rate and p50/p95 time to delivered per country or sender
    (``states``/``times`` the counter prefixes, ``name`` the row's key), most sends first."""
    finals: dict[str, Counter[str]] = {}
    histograms: dict[str, Counter[str]] = {}
    for field_name, n in counts.items():
        if field_name.startswith(states):
            status, _, scope = field_name[len(states) :].partition(":")
            finals.setdefault(scope, Counter())[status] += n
        elif field_name.startswith(times):
            scope, _, bound = field_name[len(times) :].rpartition(":")
            histograms.setdefault(scope, Counter())[bound] += n
    rows = []
    for scope, final in finals.items():
        sends = sum(final[s] for s in COUNTED)
        histogram = histograms.get(scope, Counter())
        rows.append(
            {
                name: scope,
                **{s: final[s] for s in COUNTED},
                "delivery_rate": _rate(final["delivered"], sends),
                "p50_seconds": quantile(0.5, histogram),
                "p95_seconds": quantile(0.95, histogram),
            }
        )
    return sorted(rows, key=lambda r: (-sum(r[s] for s in COUNTED), r[name]))


def alerts(recent: Counter[str]) -> list[dict[str, Any]]:
    """What the dashboard raises from the last two clock hours' counters: a burst of 30034 (US
    carriers refusing unregistered 10DLC traffic)."""
    code = str(catalogue.UNREGISTERED_10DLC)
    burst = sum(n for f, n in recent.items() if f.startswith(DELIVERY_COUNTER) and f.rsplit(":", 1)[-1] == code)
    if burst < catalogue.UNREGISTERED_10DLC_ALERT:
        return []
    entry = catalogue.CATALOGUE[catalogue.UNREGISTERED_10DLC]
    return [
        {
            "alert": "unregistered_10dlc",
            "error_code": entry.code,
            "count": burst,
            "message": f"US carriers are rejecting unregistered A2P 10DLC traffic: {burst} SMS failed with "
            f"Twilio {entry.code} ({entry.title}) in the last hour or two. {entry.action}",
        }
    ]


def refusals(counts: Counter[str]) -> list[dict[str, Any]]:
    """``refused:<rule>:<reason>`` counts, most frequent first."""
    rows: Counter[tuple[str, str]] = Counter()
    for name, n in counts.items():
        if name.startswith(REFUSED_COUNTER):
            _, rule, reason = [*name.split(":", 2), "", ""][:3]
            rows[(rule, reason)] += n
    return [
        {"rule": rule, "reason": reason, "count": n}
        for (rule, reason), n in sorted(rows.items(), key=lambda item: (-item[1], item[0]))
        if n
    ]


def refusals_by_rule(counts: Counter[str]) -> Counter[str]:
    by_rule: Counter[str] = Counter()
    for row in refusals(counts):
        by_rule[row["rule"]] += row["count"]
    return by_rule


def flagged(counts: Counter[str]) -> list[dict[str, Any]]:
    """Sends over a pumping threshold in record_only mode, by scope and reason. One send may be
    flagged for both scopes: the field is then ``flagged:prefix:<reason>,country:<reason>``."""
    rows: Counter[tuple[str, str]] = Counter()
    for name, n in counts.items():
        if name.startswith(FLAGGED_COUNTER):
            for part in name[len(FLAGGED_COUNTER) :].split(","):
                scope, _, reason = part.partition(":")
                rows[(scope, reason)] += n
    return [
        {"scope": scope, "reason": reason, "count": n}
        for (scope, reason), n in sorted(rows.items(), key=lambda item: (-item[1], item[0]))
        if n
    ]


def figures(counts: Counter[str]) -> dict[str, Any]:
    """The headline numbers of some counters: events, refusals, the delivery funnel, conversion."""
    out: dict[str, Any] = {name: counts[name] for name in VERIFICATION_EVENTS}
    out["refused"] = _sum_prefixed(counts, REFUSED_COUNTER)
    out["flagged"] = _sum_prefixed(counts, FLAGGED_COUNTER)  # sends: one flagged for both scopes counts once
    out["conversion_rate"] = _rate(counts[Event.APPROVED], counts[Event.STARTED])
    states = delivery_states(counts)
    out.update({state: states[state] for state in FUNNEL if state != "queued"})
    out["queued"] = states["queued"]
    return out


@dataclass(frozen=True)
class Overview:
    window: Window
    now_ms: int
    buckets: list[Bucket]
    totals: Counter[str] = field(default_factory=Counter)
    recent: Counter[str] = field(default_factory=Counter)  # the current clock hour and the one before
    # The clock hours a short window touches: delivery per country and sender is counted per hour.
    hourly: Counter[str] | None = None

    @property
    def first_ms(self) -> int:
        """Where the window starts: its first minute, or its first clock hour."""
        if self.window.minutes:
            return (self.now_ms // MINUTE_MS - self.window.minutes + 1) * MINUTE_MS
        return (self.now_ms // HOUR_MS - self.window.hours + 1) * HOUR_MS

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``GET /v1/stats/overview``; the page renders the same figures."""
        states = delivery_states(self.totals)
        totals = figures(self.totals)
        by = self.totals if self.hourly is None else self.hourly
        win = self.window
        return {
            "since": win.name,
            "window_hours": win.hours,
            "from": iso_ms(self.first_ms),
            "until": iso_ms(self.now_ms),
            "totals": {k: totals[k] for k in (*VERIFICATION_EVENTS, "refused", "flagged", "conversion_rate")},
            "delivery": {
                "funnel": {state: states[state] for state in FUNNEL},
                "other_states": {s: n for s, n in sorted(states.items()) if s not in FUNNEL and n},
                "errors": delivery_errors(self.totals),
                "by_country": delivery_by(
                    by, audit_fields.COUNTRY_DELIVERY_COUNTER, audit_fields.COUNTRY_TTD_COUNTER, "country"
                ),
                "by_sender": delivery_by(
                    by, audit_fields.SENDER_DELIVERY_COUNTER, audit_fields.SENDER_TTD_COUNTER, "sender"
                ),
            },
            "alerts": alerts(self.recent),
            "refusals": refusals(self.totals),
            "flagged": flagged(self.totals),
            "series": {
                "bucket_hours": win.bucket_hours if not win.minutes else 0,
                "bucket_minutes": win.bucket_minutes or win.bucket_hours * 60,
                "buckets": [
                    {
                        "start": iso_ms(b.start_ms),
                        "hours": b.hours,
                        "minutes": b.minutes,
                        "in_window": b.in_window,
                        **figures(b.counts),
                    }
                    for b in self.buckets
                ],
            },
        }


async def overview(store: Store, since: str | None, now_ms: int) -> Overview:
    """Totals over the window and the chart's buckets, from one read of the counters."""
    return await overview_of(window(since), now_ms, store)


async def overview_of(win: Window, now_ms: int, store: Store) -> Overview:
    last = now_ms // HOUR_MS
    recent_hours = [last - 1, last]
    if win.minutes:
        minutes = window_slots(win, now_ms)
        per_minute = await hourly_events(store, minutes, by_minute=True)
        # Delivery per country and sender, and the 30034 alert, come from the hourly counters of
        # the clock hours the window touches (the minute counters keep what the charts need).
        hours = sorted({m // 60 for m in minutes} | set(recent_hours))
        per_hour = await hourly_events(store, hours)
        buckets = []
        for i in range(0, len(minutes), win.bucket_minutes):
            counts: Counter[str] = Counter()
            for minute in minutes[i : i + win.bucket_minutes]:
                counts.update(per_minute[minute])
            buckets.append(Bucket(minutes[i] * MINUTE_MS, win.bucket_minutes, True, counts))
        totals: Counter[str] = Counter()
        for minute in minutes:
            totals.update(per_minute[minute])
        hourly: Counter[str] = Counter()
        for hour in {m // 60 for m in minutes}:
            hourly.update(per_hour[hour])
        recent: Counter[str] = Counter()
        for hour in recent_hours:
            recent.update(per_hour[hour])
        return Overview(win, now_ms, buckets, +totals, +recent, +hourly)
    first_chart = last - win.chart_hours + 1
    first_window = last - win.hours + 1
    per_hour = await hourly_events(store, list(range(first_chart, last + 1)))
    buckets = []
    for start in range(first_chart, last + 1, win.bucket_hours):
        span = range(start, min(start + win.bucket_hours, last + 1))
        counts = Counter()
        for hour in span:
            counts.update(per_hour[hour])
        buckets.append(Bucket(start * HOUR_MS, len(span) * 60, start >= first_window, counts))
    totals = Counter()
    for hour in range(first_window, last + 1):
        totals.update(per_hour[hour])
    recent = Counter()
    for hour in recent_hours:  # every long chart spans at least 24 hours: no extra read
        recent.update(per_hour.get(hour, Counter()))
    return Overview(win, now_ms, buckets, +totals, +recent)


# -- destinations (fraud page) -------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    value: str  # a prefix (+1415555) or a country code
    sent: int
    approved: int

    @property
    def unverified(self) -> int:
        return max(0, self.sent - self.approved)

    @property
    def rate(self) -> float | None:
        return _rate(self.approved, self.sent)

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "sent": self.sent,
            "approved": self.approved,
            "unverified": self.unverified,
            "conversion_rate": self.rate,
        }


@dataclass(frozen=True)
class Destinations:
    window: Window
    prefixes: list[Destination]  # the top ones by unverified sends
    countries: list[Destination]  # every country seen, by unverified sends

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.window.name,
            "prefixes": [d.as_dict() for d in self.prefixes],
            "countries": [d.as_dict() for d in self.countries],
        }


def _ranked(rows: Iterable[Destination]) -> list[Destination]:
    return sorted(rows, key=lambda d: (-d.unverified, -d.sent, d.value))


async def destinations(store: Store, since: str | None, now_ms: int, *, top: int = 25) -> Destinations:
    return await destinations_of(window(since), now_ms, store, top=top)


async def destinations_of(win: Window, now_ms: int, store: Store, *, top: int = 25) -> Destinations:
    """Prefixes and countries ranked by unverified sends (sent − approved) over the window.

    Two passes: the first sums sent − approved per prefix (non-zero ones only: a fully verified
    prefix can't rank) and sent/approved per country; the second reads the exact sent and
    approved counts of the top prefixes only."""
    hours = window_slots(win, now_ms)
    by_minute = bool(win.minutes)
    unverified: Counter[str] = Counter()
    countries: dict[str, list[int]] = {}
    for replies in await _sum(store, hours, "unverified", by_minute=by_minute):
        for reply in replies:
            unverified.update({str(k): int(v) for k, v in (reply.get("prefix") or {}).items()})
            for cc, (sent, approved) in (reply.get("country") or {}).items():
                row = countries.setdefault(str(cc), [0, 0])
                row[0] += int(sent)
                row[1] += int(approved)
    # most_common is a heap selection: a week can hold a few hundred thousand prefixes.
    leaders = [p for p, n in unverified.most_common(top) if n > 0]
    exact: dict[str, list[int]] = {p: [0, 0] for p in leaders}
    if leaders:
        for replies in await _sum(store, hours, "tallies", leaders, by_minute=by_minute):
            for reply in replies:
                for prefix, (sent, approved) in reply.items():
                    exact[str(prefix)][0] += int(sent)
                    exact[str(prefix)][1] += int(approved)
    return Destinations(
        win,
        _ranked(Destination(p, sent, approved) for p, (sent, approved) in exact.items()),
        _ranked(Destination(cc, sent, approved) for cc, (sent, approved) in countries.items() if sent or approved),
    )
