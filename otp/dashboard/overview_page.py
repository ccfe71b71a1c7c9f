"""The overview: verifications, conversion, the delivery funnel and refusals over a window.

Rendered from ``Overview.as_dict()``, the very JSON of ``GET /v1/stats/overview``, so the page and
the API show the same numbers.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from otp import delivery
from otp.core import stats as aggregates
from otp.dashboard.charts import Series, bar_chart, hbar_chart, legend, line_chart
from otp.dashboard.guard import Admin, now_ms
from otp.dashboard.markup import Column, Html, join, layout, notice, number, page, percent, table, tag
from otp.dashboard.widgets import bucket_label, chosen_window, figure, per_bucket, section, stats, utc, window_picker
from otp.storage.store import Store

TOP_RULES = 5


def _percent_axis(value: float) -> str:
    return f"{value * 100:.0f} %"


def _headline(totals: dict[str, Any]) -> Html:
    return stats(
        [
            ("started", "Started", number(totals["started"])),
            ("approved", "Approved", number(totals["approved"])),
            ("conversion_rate", "Conversion", percent(totals["conversion_rate"])),
            ("expired", "Expired", number(totals["expired"])),
            ("resent", "Resent", number(totals["resent"])),
            ("check_failed", "Wrong codes", number(totals["check_failed"])),
            ("max_attempts", "Locked (attempts)", number(totals["max_attempts"])),
            ("canceled", "Canceled", number(totals["canceled"])),
            ("refused", "Refused", number(totals["refused"])),
            ("flagged", "Flagged (record only)", number(totals["flagged"])),
        ]
    )


def _verifications(
    labels: list[str], buckets: list[dict[str, Any]], highlight: list[bool], window: str, per: str
) -> Html:
    series = [
        Series("Started", [b["started"] for b in buckets], "s1"),
        Series("Approved", [b["approved"] for b in buckets], "s2"),
        Series("Expired", [b["expired"] for b in buckets], "s4"),
    ]
    chart = line_chart(
        "chart-verifications",
        "Verifications",
        f"Verifications started, approved and expired per bucket, {window}.",
        labels,
        series,
        highlight=highlight,
    )
    rate = line_chart(
        "chart-conversion",
        "Conversion rate",
        f"Approved divided by started per bucket, {window}; no point where nothing started.",
        labels,
        [Series("Conversion", [b["conversion_rate"] for b in buckets], "s2")],
        highlight=highlight,
        top=1.0,
        fmt=_percent_axis,
    )
    return section(
        "Verifications",
        figure(f"Verifications {per}", chart, legend(series)),
        figure(f"Conversion rate {per} (approved ÷ started)", rate),
        id_="verifications",
    )


def _delivery(
    data: dict[str, Any], labels: list[str], buckets: list[dict[str, Any]], highlight: list[bool], per: str
) -> Html:
    funnel = data["delivery"]["funnel"]
    steps = [(state.capitalize(), state) for state in delivery.FUNNEL]
    chart = hbar_chart(
        "chart-funnel",
        "Delivery funnel",
        "SMS queued, then delivery reports: sent, delivered, undelivered and failed, in this window.",
        [(label, funnel[state]) for label, state in steps],
        css="s3",
    )
    series = [
        Series("Delivered", [b["delivered"] for b in buckets], "s2"),
        Series("Undelivered", [b["undelivered"] for b in buckets], "s5"),
        Series("Failed", [b["failed"] for b in buckets], "s4"),
    ]
    outcomes = bar_chart(
        "chart-delivery",
        "Delivery outcomes",
        "Delivered, undelivered and failed reports per bucket.",
        labels,
        series,
        highlight=highlight,
    )
    other = data["delivery"]["other_states"]
    rows = [(label, number(funnel[state])) for label, state in steps]
    rows += [(state, number(n)) for state, n in other.items()]
    errors = table(
        "Undelivered and failed, by Twilio error code",
        [
            Column("Status"),
            Column("Error code"),
            Column("Reports", numeric=True),
            Column("Twilio's title"),
            Column("What it means"),
            Column("Retry helps"),
            Column("What to do"),
        ],
        [
            (
                e["status"],
                e["error_code"] or "(none)",
                number(e["count"]),
                e["title"] or "-",
                e["meaning"] or "-",
                ("yes" if e["retry_helps"] else "no") if e["error_code"] else "-",
                e["action"] or "-",
            )
            for e in data["delivery"]["errors"]
        ],
        empty="No undelivered or failed SMS in this window.",
        id_="delivery-errors",
    )
    funnel_table = table(
        "Delivery funnel", [Column("State"), Column("Count", numeric=True)], rows, id_="delivery-funnel"
    )
    note = tag(
        "p",
        "Queued counts every send; the other states count delivery reports that moved a send into them "
        "(a send whose reports skip a state is not counted in it).",
        class_="help",
    )
    return section(
        "Delivery",
        figure("Delivery funnel, whole window", chart),
        figure(f"Delivery outcomes {per}", outcomes, legend(series)),
        Html(f'<div class="tables">{funnel_table}{errors}</div>'),
        note,
        _delivery_by("country", "Country", data["delivery"]["by_country"]),
        _delivery_by("sender", "Sender", data["delivery"]["by_sender"]),
        id_="delivery",
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _delivery_by(key: str, title: str, rows: list[dict[str, Any]]) -> Html:
    """Delivery rate and time to delivered (p50/p95, from queueing) per country or sender."""
    return table(
        f"Delivery by {key}: rate and time to delivered",
        [
            Column(title),
            Column("Delivered", numeric=True),
            Column("Undelivered", numeric=True),
            Column("Failed", numeric=True),
            Column("Delivery rate", numeric=True),
            Column("p50", numeric=True),
            Column("p95", numeric=True),
        ],
        [
            (
                r[key],
                number(r["delivered"]),
                number(r["undelivered"]),
                number(r["failed"]),
                percent(r["delivery_rate"]),
                _seconds(r["p50_seconds"]),
                _seconds(r["p95_seconds"]),
            )
            for r in rows
        ],
        empty="No final delivery reports in this window.",
        id_=f"delivery-by-{key}",
    )


def _alerts(data: dict[str, Any]) -> Html:
    return join(notice(a["message"], "error") for a in data["alerts"])


def _refusals(
    data: dict[str, Any], overview: aggregates.Overview, labels: list[str], highlight: list[bool], per: str
) -> Html:
    ranked = aggregates.refusals_by_rule(overview.totals).most_common()
    top = [rule for rule, _ in ranked[:TOP_RULES]]
    per_bucket = [aggregates.refusals_by_rule(b.counts) for b in overview.buckets]
    series = [Series(rule, [c[rule] for c in per_bucket], f"s{i + 1}") for i, rule in enumerate(top)]
    if len(ranked) > TOP_RULES:
        others: list[float | None] = [sum(n for r, n in c.items() if r not in top) for c in per_bucket]
        series.append(Series("other rules", others, "s6"))
    chart = bar_chart(
        "chart-refusals",
        "Refusals by rule",
        "Requests refused per bucket, stacked by the rule that refused them.",
        labels,
        series,
        highlight=highlight,
    )
    reasons = table(
        "Refusals by rule and reason",
        [Column("Rule"), Column("Reason"), Column("Refusals", numeric=True)],
        [(r["rule"], r["reason"], number(r["count"])) for r in data["refusals"]],
        empty="Nothing refused in this window.",
        id_="refusals",
    )
    parts = [figure(f"Refusals {per}, by rule", chart, legend(series)), reasons]
    if data["flagged"]:
        parts.append(
            table(
                "Flagged sends (pumping mode record_only: allowed, but over a threshold)",
                [Column("Scope"), Column("Reason"), Column("Sends", numeric=True)],
                [(f["scope"], f["reason"], number(f["count"])) for f in data["flagged"]],
                id_="flagged",
            )
        )
    return section("Refusals", *parts, id_="refusals-section")


def _per_bucket_table(labels: list[str], buckets: list[dict[str, Any]]) -> Html:
    columns = [Column("Bucket (UTC)")]
    names = ["started", "approved", "expired", "conversion_rate", "queued", "delivered", "undelivered", "failed"]
    names.append("refused")
    columns += [Column(n.replace("_", " ").capitalize(), numeric=True) for n in names]
    rows = []
    for label, b in zip(labels, buckets, strict=True):
        marker = "" if b["in_window"] else " (context)"
        cells: list[object] = [label + marker]
        cells += [percent(b[n]) if n == "conversion_rate" else number(b[n]) for n in names]
        rows.append(cells)
    inner = table("Numbers per bucket", columns, rows, id_="buckets")
    return Html(f"<details><summary>Numbers per bucket</summary>{inner}</details>")


async def overview_page(request: Request, admin: Admin) -> Response:
    store: Store = request.app.state.store
    overview = await aggregates.overview_of(chosen_window(request), now_ms(request), store)
    data = overview.as_dict()
    win = overview.window
    buckets: list[dict[str, Any]] = data["series"]["buckets"]
    labels = [bucket_label(b.start_ms, win.bucket_hours, win.bucket_minutes) for b in overview.buckets]
    highlight = [b["in_window"] for b in buckets]
    per = per_bucket(win.bucket_hours, win.bucket_minutes)
    span = f"{win.label.capitalize()}: {utc(overview.first_ms)} to {utc(overview.now_ms)}"
    how = (
        "Figures come from minute counters: the window is the last "
        f"{win.minutes} whole minutes (delivery by country and sender: the clock hours it touches)."
        if win.minutes
        else "Figures come from hourly counters, so the window is made of whole clock hours."
    )
    intro = tag("p", f"{span}. {how}", class_="help")
    body = join(
        [
            _alerts(data),
            window_picker(request, "/", win),
            intro,
            _headline(data["totals"]),
            _verifications(labels, buckets, highlight, win.label, per),
            _delivery(data, labels, buckets, highlight, per),
            _refusals(data, overview, labels, highlight, per),
            _per_bucket_table(labels, buckets),
        ]
    )
    return page(layout(request, "Overview", body, active="overview", who=admin.key.name, csrf=admin.csrf))
