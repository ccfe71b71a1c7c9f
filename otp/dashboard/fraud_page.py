"""Fraud: destinations ranked by unverified sends, blocks in force, conversion by country, and the
two admin actions (unblock, add to the safe list), audited like their API twins."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from otp.audit_fields import AdminAction
from otp.core import stats as aggregates
from otp.core import validators
from otp.core.admin_audit import VIA_DASHBOARD
from otp.core.policy import Policy
from otp.dashboard.charts import hbar_chart
from otp.dashboard.guard import Admin, now_ms
from otp.dashboard.markup import (
    Column,
    Html,
    duration,
    esc,
    hidden,
    join,
    layout,
    notice,
    number,
    page,
    percent,
    post_form,
    table,
    tag,
    url,
)
from otp.dashboard.spend import spend_section
from otp.dashboard.widgets import chosen_window, figure, section, utc, window_picker
from otp.errors import InvalidInput
from otp.storage.store import Store
from otp.web.admin import COUNTRY, SAFE_ENTRY, _audit_admin_action

CHART_ROWS = 10
DONE = {
    "unblock": "Unblocked {entry}.",
    "not_blocked": "{entry} was not blocked (any more).",
    "safelist": "Added {entry} to the safe list.",
}


def _policy(request: Request) -> Policy:
    policy: Policy = request.app.state.policy
    return policy


def _done(request: Request) -> Html:
    """The outcome of the last action, from fixed texts; the entry is shown only if it is one."""
    template = DONE.get(request.query_params.get("done", ""))
    entry = request.query_params.get("entry", "")
    if not template or not (SAFE_ENTRY.match(entry) or COUNTRY.match(entry)):
        return Html("")
    return notice(template.format(entry=entry))


# A block's reason, as the fraud page says it after the count.
WHY = {
    "unverified_hourly": "unverified verifications in the last hour",
    "unverified_daily": "unverified verifications in the last day",
}


def _blocked(request: Request, admin: Admin, blocks: list[dict[str, Any]], since: str) -> Html:
    rows = []
    for block in sorted(blocks, key=lambda b: (b["kind"], b["value"])):
        kind, value = block["kind"], block["value"]
        actions = [
            post_form(
                url(request, "/fraud/unblock"),
                admin.csrf,
                {"kind": kind, "value": value, aggregates.WINDOW_PARAM: since},
                "Unblock",
                label=f"Unblock {value}",
            )
        ]
        if kind == "prefix":
            actions.append(
                post_form(
                    url(request, "/fraud/safelist"),
                    admin.csrf,
                    {"entry": value, aggregates.WINDOW_PARAM: since},
                    "Add to safe list",
                    label=f"Add {value} to the safe list",
                )
            )
        rows.append(
            (
                value,
                kind + (f" (key {block['tenant']})" if block.get("tenant") else ""),
                _why(block),
                block["level"],
                utc(block["since_ms"]) if block.get("since_ms") else "–",
                duration(block["seconds_left"]),
                join(actions, " "),
            )
        )
    table_html = table(
        "Blocked now (pumping rule)",
        [
            Column("Destination"),
            Column("Kind"),
            Column("Why"),
            Column("Level", numeric=True),
            Column("Since"),
            Column("Time left"),
            Column("Actions"),
        ],
        rows,
        empty="No prefix or country is blocked.",
        id_="blocked",
    )
    help_text = tag(
        "p",
        "Level: how many blocks in a row (each one lasts twice the last; a level drops after 6 hours without "
        "a new block). Unblock and Add to safe list each ask for confirmation first.",
        class_="help",
    )
    return join(
        [Html(f'<div class="scroll" tabindex="0" role="region" aria-label="Blocks">{table_html}</div>'), help_text]
    )


def _why(block: dict[str, Any]) -> str:
    """``6 unverified verifications in the last hour: 6 sent, 0 approved (threshold 6)``."""
    why = WHY.get(block.get("reason", ""), "")
    if not why:
        return ""
    text = f"{block.get('unverified', 0)} {why}"
    if block.get("sends") is not None:
        threshold = block.get("threshold")
        text += f": {block['sends']} sent, {block['approvals']} approved"
        if threshold is not None:
            text += f" (threshold {threshold:g})"
    return text


def _ranking(caption: str, first: str, rows: list[aggregates.Destination], blocked: set[str], id_: str) -> Html:
    return table(
        caption,
        [
            Column(first),
            Column("Unverified", numeric=True),
            Column("Sent", numeric=True),
            Column("Approved", numeric=True),
            Column("Conversion", numeric=True),
            Column("Blocked"),
        ],
        [
            (
                d.value or "(none)",
                number(d.unverified),
                number(d.sent),
                number(d.approved),
                percent(d.rate),
                "blocked" if d.value in blocked else "",
            )
            for d in rows
        ],
        empty="No unverified sends in this window.",
        id_=id_,
    )


def _conversion(countries: list[aggregates.Destination], window: str) -> Html:
    by_sent = sorted(countries, key=lambda d: (-d.sent, d.value))
    chart = hbar_chart(
        "chart-country-conversion",
        "Conversion by country",
        f"Share of verifications approved, per destination country, {window}; the busiest countries first.",
        [(d.value or "(none)", d.rate or 0.0) for d in by_sent[:CHART_ROWS] if d.sent],
        css="s2",
        top=1.0,
        fmt=lambda v: f"{v * 100:.1f} %",
    )
    rows = [(d.value or "(none)", number(d.sent), number(d.approved), percent(d.rate)) for d in by_sent]
    listing = table(
        "Conversion by country",
        [
            Column("Country"),
            Column("Sent", numeric=True),
            Column("Approved", numeric=True),
            Column("Conversion", numeric=True),
        ],
        rows,
        empty="No verifications in this window.",
        id_="country-conversion",
    )
    caption = f"Conversion by country, the {CHART_ROWS} busiest"
    return section("Conversion by country", figure(caption, chart), listing, id_="conversion")


def _safe_list(request: Request, admin: Admin, prefixes: frozenset[str], numbers: frozenset[str], since: str) -> Html:
    # Said per entry: a prefix lifts the rules for a range, a number (from /v2) for itself only.
    items = [(e, " and every number after it") for e in prefixes] + [(n, " only") for n in numbers]
    listing = (
        tag("ul", join(tag("li", join((tag("code", e), text))) for e, text in sorted(items)), class_="entries")
        if items
        else tag("p", "The safe list is empty.", class_="help")
    )
    form = Html(
        f'<form method="post" action="{esc(url(request, "/fraud/safelist"))}" class="row">'
        f"{hidden('csrf', admin.csrf)}{hidden(aggregates.WINDOW_PARAM, since)}"
        '<label for="entry">Number or prefix</label>'
        '<input id="entry" name="entry" required maxlength="16" pattern="\\+[1-9][0-9]{0,14}" placeholder="+1415555" '
        'aria-describedby="entry-help">'
        '<button type="submit">Add to safe list</button></form>'
        '<p id="entry-help" class="help">Numbers and prefixes on the safe list bypass the fraud rules (not the '
        "per-verification caps). Remove entries with <code>DELETE /v1/safelist/{entry}</code>.</p>"
    )
    return section("Safe list", listing, form, id_="safelist")


async def fraud_page(request: Request, admin: Admin) -> Response:
    store: Store = request.app.state.store
    now = now_ms(request)
    found = await aggregates.destinations_of(chosen_window(request), now, store)
    win = found.window
    policy = _policy(request)
    blocks = await policy.blocked(now)
    blocked_values = {b["value"] for b in blocks}
    top = [d for d in found.prefixes if d.unverified][:CHART_ROWS]
    chart = hbar_chart(
        "chart-prefixes",
        "Prefixes by unverified sends",
        f"Number prefixes with the most verifications sent but not approved, {win.label}.",
        [(d.value, d.unverified) for d in top],
        css="s4",
    )
    body = join(
        [
            window_picker(request, "/fraud", win),
            _done(request),
            section("Blocked now", _blocked(request, admin, blocks, win.name), id_="blocks"),
            section(
                "Unverified sends",
                figure(f"Top {CHART_ROWS} prefixes by unverified sends", chart),
                _ranking("Prefixes by unverified sends", "Prefix", found.prefixes, blocked_values, "prefixes"),
                _ranking("Countries by unverified sends", "Country", found.countries, blocked_values, "countries"),
                tag(
                    "p",
                    "Unverified = verifications started minus approved in the window, from the hourly counters.",
                    class_="help",
                ),
                id_="unverified",
            ),
            await spend_section(request.app.state.budgets, now),
            _conversion(found.countries, win.label),
            _safe_list(request, admin, await policy.safe_list.entries(), await policy.safe_list.numbers(), win.name),
        ]
    )
    return page(layout(request, "Fraud", body, active="fraud", who=admin.key.name, csrf=admin.csrf))


def _back(request: Request, since: str, done: str, entry: str) -> RedirectResponse:
    params = {aggregates.WINDOW_PARAM: since if since in aggregates.WINDOWS else "", "done": done, "entry": entry}
    return RedirectResponse(url(request, "/fraud", params), status_code=303)


def _window(form: dict[str, str]) -> str:
    """The window the page was showing (its forms carry it; older ones named it since)."""
    return form.get(aggregates.WINDOW_PARAM) or form.get(aggregates.OLD_WINDOW_PARAM, "")


def _invalid(request: Request, admin: Admin, text: str) -> Response:
    body = join([notice(text, "error"), tag("p", tag("a", "Back to the fraud page", href=url(request, "/fraud")))])
    return page(layout(request, "Not changed", body, active="fraud", who=admin.key.name, csrf=admin.csrf), 400)


async def unblock(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    kind, value = form.get("kind", ""), form.get("value", "").strip()
    if kind == "prefix" and SAFE_ENTRY.match(value):
        scope = "pfx"
    elif kind == "country" and validators.COUNTRY.fullmatch(value):
        # Checked before upper-casing (validators.country): "ß".upper() is "SS".
        scope, value = "cc", value.upper()
    else:
        return _invalid(request, admin, "Give a prefix like +1415555 or a two-letter country code.")
    removed = await _policy(request).unblock(scope, value)
    # The same audit record as DELETE /v1/blocks (event admin, action unblock, the session's key), via dashboard.
    await _audit_admin_action(request, admin.key, AdminAction.UNBLOCK, value, via=VIA_DASHBOARD)
    return _back(request, _window(form), "unblock" if removed else "not_blocked", value)


async def add_to_safe_list(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    entry = form.get("entry", "").strip()
    if not SAFE_ENTRY.match(entry) or len(entry) > 16:
        return _invalid(request, admin, "The safe list takes E.164 numbers or prefixes of them, like +1415555.")
    try:
        # The rule the API and `otp safelist` apply: a whole country calling code needs saying so.
        validators.safe_entry(entry, "entry", confirm='use otp safelist add --country (or the API\'s "country": true)')
    except InvalidInput as exc:
        return _invalid(request, admin, f"{entry} {exc.message}.")
    await _policy(request).safe_list.add(entry)
    await _audit_admin_action(request, admin.key, AdminAction.SAFELIST_ADD, entry, via=VIA_DASHBOARD)
    return _back(request, _window(form), "safelist", entry)
