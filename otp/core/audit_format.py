"""The audit log as text: a table for the terminal, JSON lines and CSV. No control character of a
stored field reaches a terminal or a spreadsheet as it is: the table drops them
(``terminal_text.clean``), CSV shows them as visible escapes (``printable``), JSON escapes them."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from otp import delivery_errors
from otp.core import terminal_text
from otp.core.audit_events import AuditEvent, iso_ms, summary

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
        # The table's last line: its values are cleaned as the rows' are.
        line += ": " + ", ".join(f"{terminal_text.clean(str(reason))} ×{n}" for reason, n in reasons.items())
    return line


# The table, for a terminal. By default it fits 120 columns: the columns an operator reads first,
# each cut to its width (``…``), the event's particulars in ``detail`` (a refusal's reason and rule,
# a delivery's status and error, an admin action). ``wide`` adds the decision, rule, reason, IP and
# verification id, uncut. Widths fit the usual values, so rows printed one batch at a time
# (``--follow``) still line up. Every value goes through ``terminal_text.clean``.
TABLE_WIDTH = 120
TABLE_COLUMNS = (
    ("time", 24),
    ("event", 13),
    ("to", 16),
    ("country", 7),
    ("key", 16),
    ("detail", 34),
)
WIDE_COLUMNS = (
    ("time", 24),
    ("event", 13),
    ("decision", 8),
    ("rule", 20),
    ("reason", 25),
    ("to", 16),
    ("country", 7),
    ("ip", 15),
    ("key", 16),
    ("vid", 34),
    ("detail", 0),
)
_GAP = "  "


def explained(event: AuditEvent) -> dict[str, str]:
    """The catalogue's words for the event's Twilio error code, as audit fields ({} for none)."""
    found = delivery_errors.lookup(event.get("error_code") or None)
    if found is None:
        return {}
    return {
        "error_title": found.title,
        "error_meaning": found.meaning,
        "error_retry_helps": "true" if found.retry else "false",
        "error_action": found.action,
    }


def _words(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def detail(event: AuditEvent) -> str:
    """What else an event says, in a few words (the table's and the dashboard's Detail): an admin
    action and its entry, a delivery's status and Twilio error, a budget level reached, … ("" for
    none). Stored text, as it is: each reader escapes it for its medium."""
    kind, get = event.get("event"), event.get
    if kind == "admin":
        # otp.core.admin_audit's fields: a sign-in names no entry, a failed one maybe no key.
        who = get("key_name") or get("key") or get("client_ip") or "unknown"
        user, reason = get("user"), get("reason")
        done = _words(get("action"), get("entry"), "by", who + (f" ({user})" if user else ""))
        return done + (f": {reason}" if reason else "")
    if kind == "delivery":
        return _words(get("status"), get("error_code"), explained(event).get("error_title", ""))
    if kind == "opted_out":
        return f"replied STOP ({get('error_code')}), via {get('source')}"
    if kind == "check_failed":
        return f"attempt {get('attempt')}"
    if kind == "budget":
        return f"{get('scope')} at {get('level')} %: spent {get('spent')} of {get('budget')}"
    if kind == "sender_queued":
        return _words(get("sender"), f"waits {get('wait_ms')} ms" if get("wait_ms") else "")
    if get("retry_after"):
        return f"retry after {get('retry_after')} s"
    if get("send"):
        return f"send {get('send')}"
    return ""


def _cell(event: AuditEvent, column: str, wide: bool) -> str:
    if column == "time":
        return iso_ms(event.ts)
    if column == "detail" and not wide and event.get("event") == "refused":
        # The narrow table has no reason and rule columns: a refusal says them here (its retry
        # after is in --wide and the JSON).
        rule = event.get("rule")
        return _words(event.get("reason"), f"({rule})" if rule else "")
    if column == "detail":
        return detail(event)
    return event.get(column)


def _row(cells: Sequence[str], wide: bool) -> str:
    columns = WIDE_COLUMNS if wide else TABLE_COLUMNS
    shown = []
    for text, (_, size) in zip(cells, columns, strict=True):
        value = terminal_text.clean(text) or "-"
        shown.append(terminal_text.pad(value if wide else terminal_text.fit(value, size), size))
    return _GAP.join(shown).rstrip()


def table_header(*, wide: bool = False) -> str:
    return _row([name for name, _ in (WIDE_COLUMNS if wide else TABLE_COLUMNS)], wide)


def table_rows(events: Iterable[AuditEvent], *, wide: bool = False) -> list[str]:
    columns = WIDE_COLUMNS if wide else TABLE_COLUMNS
    return [_row([_cell(event, name, wide) for name, _ in columns], wide) for event in events]


def format_table(events: Sequence[AuditEvent], *, wide: bool = False) -> str:
    """Header, one row per event, and the summary line."""
    return "\n".join([table_header(wide=wide), *table_rows(events, wide=wide), format_summary(summary(events))])


def format_jsonl(events: Iterable[AuditEvent]) -> str:
    """One JSON object per line; every control character escaped (``\\u001b``), so the text is
    safe on a terminal and decodes to the values as stored."""
    return "\n".join(terminal_text.json_text({**e.as_dict(), **explained(e)}, separators=(",", ":")) for e in events)


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
    # Not stored: the catalogue's words for error_code (otp.delivery_errors).
    "error_title",
    "error_meaning",
    "error_retry_helps",
    "error_action",
)
_EXPLAINED = frozenset(CSV_COLUMNS[-4:])


def csv_header() -> str:
    return _csv_lines([list(CSV_COLUMNS)])


def csv_rows(events: Iterable[AuditEvent]) -> str:
    rows = []
    for e in events:
        words = explained(e)
        cells = (words.get(c, "") if c in _EXPLAINED else e.get(c) for c in CSV_COLUMNS[2:])
        rows.append([e.id, iso_ms(e.ts), *(printable(cell) for cell in cells)])
    return _csv_lines(rows)


def _csv_lines(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().rstrip("\n")


def format_csv(events: Sequence[AuditEvent]) -> str:
    """A header row, then one row per event (CSV_COLUMNS)."""
    rows = csv_rows(events)
    return csv_header() + ("\n" + rows if rows else "")
