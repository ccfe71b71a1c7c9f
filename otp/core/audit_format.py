"""The audit log as text: a table for the terminal, JSON lines and CSV, every stored field escaped
so that no control character reaches a terminal or a spreadsheet as it is."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from otp import delivery_errors
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
    ("vid", 34),
    ("delivery", 0),  # a delivery's status, and its Twilio error code with its title (otp.delivery_errors)
)


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


def _cell(event: AuditEvent, column: str) -> str:
    if column == "time":
        return iso_ms(event.ts)
    if column == "delivery":
        words = explained(event)
        error = f"{event.get('error_code')} {words['error_title']}" if words else ""
        status = event.get("status") if event.get("event") == "delivery" else ""
        return printable(" ".join(part for part in (status, error) if part)) or "-"
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
    text = "\n".join(
        json.dumps({**e.as_dict(), **explained(e)}, separators=(",", ":"), ensure_ascii=False) for e in events
    )
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
