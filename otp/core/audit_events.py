"""The audit log's vocabulary: its events and decisions, an entry as read back (``AuditEvent``),
the filters every reader shares (``AuditFilter``, built from the same parameters by the CLI, the
API and the dashboard), and a summary of a page.

Time filters use the entry's ``ts`` (the service's clock, which tests inject), not the stream id.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from otp.audit_fields import EVENTS as EVENTS
from otp.audit_fields import PREFIX_HASH
from otp.core import validators
from otp.core.keyring import Keyring
from otp.core.phone import parse
from otp.core.services import SERVICE_SID
from otp.core.validators import parse_duration
from otp.errors import InvalidInput

DECISIONS = ("allowed", "refused")

# The window a read of the API or the dashboard covers when it is given no ``since``.
DEFAULT_WINDOW = "24h"

StreamKey = tuple[int, int]  # (ms, seq) of a stream id
Position = tuple[int, int, int]  # (ms, seq, partition): the global order, newest = largest

# Matched with fullmatch: "$" would let a trailing newline through.
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
_NAME = re.compile(r"[a-z0-9_]{1,64}")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


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


def event_of(partition: int, stream_id: str, fields: dict[str, str]) -> AuditEvent:
    """An entry as storage reads it (id and fields), as an event."""
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
    prefix_hash: str | None = None  # Keyring.prefix_hash of a destination prefix (the ``ph`` field)

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
            PREFIX_HASH: self.prefix_hash,
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


FILTER_PARAMS = (
    "since",
    "until",
    "reason",
    "rule",
    "country",
    "number",
    "ip",
    "key",
    "decision",
    "event",
    "prefix",
    "service",
)


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
    prefix_hash = None
    if "prefix" in given:
        if keyring is None:
            raise ValueError("filtering by prefix needs the keyring (OTP_SECRET_KEY)")
        prefix_hash = keyring.prefix_hash(validators.number_prefix(given["prefix"], "prefix"))
    reason, rule, key = given.get("reason"), given.get("rule"), given.get("key")
    if "service" in given:
        # A /v2 service is the tenant its verifications are audited under: the key field.
        if key:
            raise InvalidInput("give key or service, not both", field="service")
        if not SERVICE_SID.match(given["service"]):
            raise InvalidInput("must be a /v2 service sid (VA and 32 hex digits)", field="service")
        key = given["service"]
    country, ip = given.get("country"), given.get("ip")
    decision, event = given.get("decision"), given.get("event")
    return AuditFilter(
        since_ms=since,
        until_ms=until,
        reason=_matching(reason, _NAME, "reason", "a reason like resend_too_soon") if reason else None,
        rule=_matching(rule, _NAME, "rule", "a rule like number_sends") if rule else None,
        country=validators.country(country, "country") if country else None,
        number_hash=number_hash,
        # Canonical, as stored: 2001:DB8::1 finds what 2001:db8::1 wrote.
        ip=validators.ip(ip, "ip") if ip else None,
        key=_matching(key, _KEY_ID, "key", "an API key id (as `otp keys list` shows it)") if key else None,
        decision=_one_of(decision, DECISIONS, "decision") if decision else None,
        event=_one_of(event, EVENTS, "event") if event else None,
        prefix_hash=prefix_hash,
    )


# -- summary ---------------------------------------------------------------------------------------


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
