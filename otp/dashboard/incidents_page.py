"""Incidents: who is attacking, over a window. Destinations, sources and rules ranked by refused
attempts (otp.core.incidents), each row with its allowed starts, conversion, first and last seen,
a sparkline of its refusals (per minute up to 6 hours, per hour beyond), and a link to the audit
log filtered on it."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from otp.core import audit
from otp.core import incidents as reader
from otp.dashboard.charts import sparkline
from otp.dashboard.guard import Admin, now_ms
from otp.dashboard.markup import Column, Html, join, layout, number, page, percent, table, tag, url
from otp.dashboard.widgets import chosen_window, section, stats, utc, window_picker
from otp.storage.store import Store

COLUMNS = [
    Column(""),  # the kind's own title, set per table
    Column("Refused", numeric=True),
    Column("Allowed", numeric=True),
    Column("Conversion", numeric=True),
    Column("First seen (UTC)"),
    Column("Last seen (UTC)"),
    Column("Refused over time"),
]
EMPTY = {
    "prefix": "No start to any prefix was refused in this window.",
    "country": "No start to any country was refused in this window.",
    "ip": "Nothing from any IP was refused in this window (IPs are known when clients pass ip / DeviceIp).",
    "key": "Nothing from any API key was refused in this window.",
    "service": "Nothing from any /v2 service was refused in this window.",
    "rule": "No rule refused anything in this window.",
}
FIRST_COLUMN = {"prefix": "Prefix", "country": "Country", "ip": "IP", "key": "API key", "service": "/v2 service"}
FIRST_COLUMN["rule"] = "Rule"
TOP_LABEL = {
    "prefix": "prefix",
    "country": "country",
    "ip": "IP",
    "key": "key",
    "service": "/v2 service",
    "rule": "rule",
}
SECTIONS = (
    ("Destinations", "destinations", ("prefix", "country")),
    ("Sources", "sources", ("ip", "key", "service")),
    ("Rules", "rules", ("rule",)),
)


def seen(at: reader.Seen | None) -> Html:
    """A first or last seen time: to the minute, or the hour it fell in."""
    if at is None:
        return Html("–")
    moment = datetime.fromtimestamp(at.ms / 1000, UTC)
    text = moment.strftime("%d %b %H:%M") if at.exact else moment.strftime("%d %b %H:00–%H:59")
    return tag("time", text, datetime=audit.iso_ms(at.ms))


def seen_ms(ms: int) -> Html:
    return seen(reader.Seen(ms, True)) if ms else Html("–")


def slot_label(slot: int, slot_ms: int) -> str:
    return datetime.fromtimestamp(slot * slot_ms / 1000, UTC).strftime("%d %b %H:%M")


def _table(request: Request, found: reader.Incidents, kind: reader.Kind) -> Html:
    since = audit.iso_ms(found.first_ms)
    span = (slot_label(found.slots[0], found.slot_ms), slot_label(found.slots[-1], found.slot_ms))
    per = "minute" if found.window.minutes else "hour"
    rows = []
    for i, row in enumerate(found.tables[kind.name]):
        link = tag(
            "a",
            row.value or "(none)",
            href=url(request, "/audit", {**row.audit_filter(), "since": since}),
            aria_label=f"Audit log for {kind.name} {row.value or 'none'}",
        )
        spark = sparkline(f"spark-{kind.name}-{i}", f"Refusals of {row.value or 'none'} per {per}", row.series, span)
        rows.append(
            (
                link,
                number(row.refused),
                "–" if row.allowed is None else number(row.allowed),
                "–" if row.allowed is None else percent(row.conversion),
                seen(row.first),
                seen(row.last),
                spark,
            )
        )
    columns = [Column(FIRST_COLUMN[kind.name]), *COLUMNS[1:]]
    inner = table(
        f"{kind.title} by refused attempts", columns, rows, empty=EMPTY[kind.name], id_=f"incidents-{kind.name}"
    )
    return Html(f'<div class="scroll" tabindex="0" role="region" aria-label="{kind.title}">{inner}</div>')


async def incidents_page(request: Request, admin: Admin) -> Response:
    store: Store = request.app.state.store
    win = chosen_window(request)
    found = await reader.incidents(store, win, now_ms(request))
    resolution = "per minute" if win.minutes else "per hour"
    intro = tag(
        "p",
        f"{win.label.capitalize()}: {utc(found.first_ms)} to {utc(found.now_ms)}. "
        f"The top {reader.TOP} of each kind by refused "
        f"attempts, sparklines {resolution}. Allowed counts the starts let through, conversion the share of them "
        "approved; first and last seen are the first and last start or refusal in the window, to the minute within "
        "the last 6 hours and to the hour before. Each name opens the audit log filtered on it.",
        class_="help",
    )
    headline = stats(
        [
            (f"top_{kind.name}", f"Top {TOP_LABEL[kind.name]}", rows[0].value or "(none)")
            for kind in reader.KINDS
            if (rows := found.tables[kind.name])
        ],
        names=True,
    )
    parts = [window_picker(request, "/incidents", win), intro, headline]
    for title, id_, kinds in SECTIONS:
        parts.append(section(title, *(_table(request, found, reader.BY_NAME[k]) for k in kinds), id_=id_))
    parts.append(
        tag(
            "p",
            join(
                [
                    "Locked verifications and numbers are on the ",
                    tag("a", "Brute force", href=url(request, "/bruteforce", {"window": win.name})),
                    " page; blocks in force and the safe list on the ",
                    tag("a", "Fraud", href=url(request, "/fraud", {"window": win.name})),
                    " page.",
                ]
            ),
            class_="help",
        )
    )
    return page(layout(request, "Incidents", join(parts), active="incidents", who=admin.key.name, csrf=admin.csrf))
