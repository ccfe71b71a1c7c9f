"""``otp audit``: print the audit log, filtered, as a table, JSON lines or CSV; ``--follow`` tails it.

The table fits 120 columns (``audit.TABLE_COLUMNS``: long values cut with ``…``) and says each
event's particulars in its ``detail`` column (a refusal's reason and rule, a delivery's status and
error, an admin action); ``--wide`` adds the decision, rule, reason, IP and verification id, uncut.
``--json`` is ``--format jsonl``: one JSON object per line, so that ``--follow`` can stream.

Output is oldest first, like a log file: the newest ``--limit`` matches, ending at the most recent
one, and with ``--follow`` new events print below as they arrive.

Redis is shared by every tenant, so the log is read in pages of bounded work (``audit.read_page``:
at most ``audit.DEFAULT_SCAN_LIMIT`` entries each, in round trips of a few milliseconds) however
long the window: a rare filter over a full log takes longer, never holds Redis up. Stored fields are
printed without control characters or escape sequences (table: ``terminal_text.clean``), as visible
escapes (CSV: ``audit.printable``) or JSON escapes: none reaches the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence

from otp.clock import SYSTEM
from otp.core import audit
from otp.errors import ConfigError, InvalidInput
from otp.settings import Settings
from otp.storage.store import Store

POLL_SECONDS = 1.0
# Events per page while collecting the newest --limit matches.
PAGE_LIMIT = 1000


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000000")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit`` on the ``otp`` command's subparsers."""
    parser = sub.add_parser(
        "audit",
        help="print the audit log (sends, refusals, checks), filtered",
        description="Print audit events, oldest first, ending at the newest match. Times are a duration back "
        "from now (30m, 1h, 2d) or an ISO-8601 time (2027-01-15T08:00:00Z, UTC if no zone is given).",
    )
    parser.add_argument("--since", default="1h", help="from this time on (default 1h: the last hour)")
    parser.add_argument("--until", help="before this time (default: now)")
    parser.add_argument("--reason", help="refusal reason, e.g. resend_too_soon, number_hourly_limit")
    parser.add_argument("--rule", help="rule that decided, e.g. number_sends, sms_pumping_prefix")
    parser.add_argument("--country", help="two-letter ISO country of the number, e.g. GB")
    parser.add_argument(
        "--number",
        help="phone number (E.164 or national in OTP_DEFAULT_REGION); the log holds only keyed hashes of "
        "numbers, so it is hashed with OTP_SECRET_KEY to search, and never sent or stored as given",
    )
    parser.add_argument("--ip", help="end user's IP address, as the client passed it")
    parser.add_argument(
        "--key", help="API key id (as `otp keys list` shows it); /v2 activity: its Verify service SID (VA…)"
    )
    parser.add_argument(
        "--prefix",
        help="destination prefix as the dashboard lists it (the number without its last 4 digits), "
        "e.g. +1415555; matched through its keyed hash",
    )
    parser.add_argument("--service", help="/v2 service sid (VA…): its verifications (as --key VA…)")
    parser.add_argument("--decision", choices=audit.DECISIONS, help="allowed or refused sends only")
    parser.add_argument("--event", choices=audit.EVENTS, help="one kind of event")
    parser.add_argument(
        "--limit", type=_positive, default=1000, help="print at most this many (the newest; default 1000)"
    )
    parser.add_argument(
        "--format",
        choices=("table", "jsonl", "csv"),
        default="table",
        help="table (default: fits 120 columns), jsonl (one JSON object per event and line) or csv (every field)",
    )
    parser.add_argument("--json", action="store_true", help="the same as --format jsonl")
    parser.add_argument(
        "--wide",
        action="store_true",
        help="the table with every column (decision, rule, reason, ip, vid too), values uncut",
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep printing new events as they arrive (every second) until Ctrl-C"
    )
    parser.set_defaults(func=cmd_audit)


class _Printer:
    """Prints in one format, the header once; counts what it printed for the table's last line."""

    def __init__(self, fmt: str, *, wide: bool = False) -> None:
        self.fmt = fmt
        self.wide = wide
        self.by_event: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def header(self) -> None:
        if self.fmt == "table":
            _emit(audit.table_header(wide=self.wide))
        elif self.fmt == "csv":
            _emit(audit.csv_header())

    def events(self, events: Sequence[audit.AuditEvent]) -> None:
        if not events:
            return
        if self.fmt == "table":
            _emit("\n".join(audit.table_rows(events, wide=self.wide)))
        elif self.fmt == "csv":
            _emit(audit.csv_rows(events))
        else:
            _emit(audit.format_jsonl(events))
        totals = audit.summary(events)
        self.by_event.update(totals["by_event"])
        self.reasons.update(totals["refused_by_reason"])

    def footer(self) -> None:
        if self.fmt == "table":
            totals = {
                "events": sum(self.by_event.values()),
                "refused": sum(self.reasons.values()),
                "refused_by_reason": dict(sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            }
            _emit(audit.format_summary(totals))


def _emit(text: str) -> None:
    # Flushed each time: with --follow the reader is often a pipe (grep, jq) that waits for lines.
    print(text, flush=True)


def _filter_params(args: argparse.Namespace) -> dict[str, str | None]:
    return {name: getattr(args, name) for name in audit.FILTER_PARAMS}


async def _follow(
    store: Store,
    flt: audit.AuditFilter,
    positions: dict[int, str],
    *,
    seen: set[tuple[int, str]],
    printer: _Printer,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            events, positions, more = await audit.follow_step(store, positions, flt)
            # Events written between the positions snapshot and the first page were printed already.
            fresh = [e for e in events if (e.partition, e.id) not in seen]
            seen.clear()
            printer.events(fresh)
            if more:
                await asyncio.sleep(0)  # a busy log: read on at once, in short round trips
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=POLL_SECONDS)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _newest(store: Store, flt: audit.AuditFilter, limit: int) -> list[audit.AuditEvent]:
    """The newest ``limit`` matches, newest first, page by page: each page examines a bounded
    number of entries, so other clients' commands run between them however far back it reads."""
    found: list[audit.AuditEvent] = []
    cursor: str | None = None
    while len(found) < limit:
        page = await audit.read_page(store, flt, limit=min(limit - len(found), PAGE_LIMIT), before=cursor)
        found += page.events
        cursor = page.cursor
        if cursor is None:
            break
    return found


async def _run(args: argparse.Namespace, url: str, partitions: int, flt: audit.AuditFilter) -> int:
    from otp.storage.client import connect

    client = connect(url)
    store = Store(client, partitions=partitions)
    printer = _Printer("jsonl" if args.json else args.format, wide=args.wide)
    try:
        # Taken before the first page, so an event written meanwhile is followed, not lost.
        positions = await audit.latest_positions(store) if args.follow else {}
        events = await _newest(store, flt, args.limit)
        events.reverse()
        printer.header()
        printer.events(events)
        if args.follow:
            seen = {(e.partition, e.id) for e in events}
            await _follow(store, flt, positions, seen=seen, printer=printer)
        printer.footer()
    finally:
        await client.aclose()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    # Imported here: otp.cli imports this module to register the subcommand.
    from otp.cli import _require_redis, _with_local_fallbacks
    from otp.core.keyring import Keyring
    from otp.storage.errors import STORAGE_ERRORS

    if args.json and args.format == "csv":
        raise ConfigError("--json is --format jsonl: give --json or --format csv, not both")
    settings = _with_local_fallbacks(Settings.from_env())
    if (args.number or args.prefix) and not settings.secret_keys:
        flag = "--number" if args.number else "--prefix"
        raise ConfigError(f"OTP_SECRET_KEY is required for {flag}: the log holds keyed hashes of numbers and prefixes")
    keyring = Keyring(settings.secret_keys) if settings.secret_keys else None
    try:
        flt = audit.filter_from_params(
            _filter_params(args), now=SYSTEM.now(), default_region=settings.default_region, keyring=keyring
        )
    except InvalidInput as exc:
        print(f"otp audit: --{exc.field}: {exc.message}", file=sys.stderr)
        return 2
    url = _require_redis(settings)
    try:
        return asyncio.run(_run(args, url, settings.partitions, flt))
    except BrokenPipeError:
        # The reader left (| head): not an error. Point stdout at /dev/null so the final flush is
        # quiet. (Caught first: it is an OSError, which the next clause would call a Redis outage.)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except STORAGE_ERRORS as exc:
        # The Redis error itself, not its translation into a retry-later answer.
        print(f"otp audit: cannot read the audit log from Redis: {exc.__cause__ or exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``otp audit`` on its own: the same options, and the same error handling, as ``otp audit``."""
    from otp.cli import main as otp_main  # here, not at the top: otp.cli imports this module

    return otp_main(["audit", *(sys.argv[1:] if argv is None else argv)])
