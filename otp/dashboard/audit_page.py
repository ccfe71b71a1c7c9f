"""The audit log: the filters of ``otp audit``, paged by the audit cursor, with CSV and JSON-lines
exports. Reads go through ``audit.read`` (newest first, at most ``audit.DEFAULT_SCAN_LIMIT``
entries examined per page or export, over the last ``audit.DEFAULT_WINDOW`` unless Since says
otherwise), never a full scan; numbers are masked in the stream already."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from otp.core import audit
from otp.dashboard.guard import Admin
from otp.dashboard.markup import Column, Html, esc, join, layout, notice, page, table, tag, url
from otp.errors import InvalidInput
from otp.storage.store import Store

PAGE_SIZE = 50
EXPORT_LIMIT = 1000
TEXT_FILTERS = (
    ("since", "Since", f"{audit.DEFAULT_WINDOW} if empty; 1h, 2d or 2027-01-15T08:00:00Z"),
    ("until", "Until", "30m or an ISO time"),
    ("rule", "Rule", "number_sends"),
    ("reason", "Reason", "resend_too_soon"),
    ("country", "Country", "US"),
    ("number", "Number", "E.164, like +15005550006"),
    ("ip", "IP", "203.0.113.7"),
    ("key", "API key id", "as otp keys list shows"),
    ("prefix", "Prefix", "+1415555"),
    ("service", "/v2 service", "VA…"),
)
SELECT_FILTERS = (("event", "Event", audit.EVENTS), ("decision", "Decision", audit.DECISIONS))


def _params(request: Request) -> dict[str, str]:
    """The filters given (non-empty), by name."""
    return {
        name: value.strip()
        for name in audit.FILTER_PARAMS
        if (value := request.query_params.get(name)) is not None and value.strip()
    }


def _filter(request: Request, params: Mapping[str, str]) -> audit.AuditFilter:
    state = request.app.state
    return audit.filter_from_params(
        dict(params),
        now=state.verifier.clock(),
        default_region=state.settings.default_region,
        keyring=state.verifier.keyring,
        default_window=audit.DEFAULT_WINDOW,
    )


def _cursor(request: Request, partitions: int) -> str | None:
    raw = (request.query_params.get("cursor") or "").strip()
    if not raw:
        return None
    try:
        audit.decode_cursor(raw, partitions)
    except ValueError:
        raise InvalidInput("is not a cursor from a previous page", field="cursor") from None
    return raw


def _form(request: Request, params: Mapping[str, str]) -> Html:
    fields = []
    for name, label, hint in TEXT_FILTERS:
        fields.append(
            Html(
                f'<div class="field"><label for="f-{name}">{esc(label)}</label>'
                f'<input id="f-{name}" name="{name}" value="{esc(params.get(name, ""))}" placeholder="{esc(hint)}">'
                "</div>"
            )
        )
    for name, label, options in SELECT_FILTERS:
        chosen = params.get(name, "")
        opts = join(
            [
                tag("option", "any", value=""),
                *(tag("option", o, value=o, selected=o == chosen) for o in options),
            ]
        )
        fields.append(
            Html(
                f'<div class="field"><label for="f-{name}">{esc(label)}</label>'
                f'<select id="f-{name}" name="{name}">{opts}</select></div>'
            )
        )
    buttons = Html(
        '<div class="field buttons"><button type="submit">Filter</button> '
        f"{tag('a', 'Clear', href=url(request, '/audit'))}</div>"
    )
    return Html(
        f'<form method="get" action="{esc(url(request, "/audit"))}" class="filters" role="search" '
        f'aria-label="Filter the audit log">{join(fields)}{buttons}</form>'
    )


def _rows(events: list[audit.AuditEvent]) -> list[list[object]]:
    return [
        [
            # The ISO time, shortened for the table (its header says UTC); exports keep the full form.
            tag("time", audit.iso_ms(e.ts).replace("T", " ").rstrip("Z"), datetime=audit.iso_ms(e.ts)),
            e.get("event"),
            e.get("decision"),
            e.get("rule"),
            e.get("reason"),
            audit.detail(e),
            e.get("to"),
            e.get("country"),
            e.get("ip"),
            e.get("key"),
            e.get("vid"),
        ]
        for e in events
    ]


COLUMNS = [
    Column("Time (UTC)"),
    Column("Event"),
    Column("Decision"),
    Column("Rule"),
    Column("Reason"),
    Column("Detail"),
    Column("Number"),
    Column("Country"),
    Column("IP"),
    Column("Key"),
    Column("Verification"),
]


async def audit_page(request: Request, admin: Admin) -> Response:
    store: Store = request.app.state.store
    params = _params(request)
    try:
        flt = _filter(request, params)
        cursor = _cursor(request, store.partitions)
    except InvalidInput as exc:
        body = join([_form(request, params), notice(f"{exc.field}: {exc.message}", "error")])
        return page(layout(request, "Audit log", body, active="audit", who=admin.key.name, csrf=admin.csrf), 400)
    events, next_cursor = await audit.read(store, flt, limit=PAGE_SIZE, before=cursor)
    parts = [_form(request, params)]
    links = []
    if cursor:
        links.append(tag("a", "← Newest", href=url(request, "/audit", params)))
    if next_cursor:
        links.append(tag("a", "Older →", href=url(request, "/audit", {**params, "cursor": next_cursor}), rel="next"))
    position = {**params, "cursor": cursor or ""}
    exports = [
        tag("a", "Export CSV", href=url(request, "/audit.csv", position), download="otp-audit.csv"),
        tag("a", "Export JSON lines", href=url(request, "/audit.jsonl", position), download="otp-audit.jsonl"),
    ]
    export_help = f"(up to {EXPORT_LIMIT} events from this page on, as far as one search reaches)"
    parts.append(
        Html(
            f'<div class="pager">{join(links, " ")}<span class="exports">{join(exports, " ")} '
            f"{tag('span', export_help, class_='help')}</span></div>"
        )
    )
    if next_cursor and len(events) < PAGE_SIZE:
        parts.append(
            notice(
                "This page searched part of the log only (each page examines a bounded number of events); "
                "follow Older to search on."
            )
        )
    summary = audit.format_summary(audit.summary(events))
    events_table = table(
        f"Audit events, newest first: {summary}", COLUMNS, _rows(events), empty="No matching events.", id_="events"
    )
    # Wide rows scroll inside their own box (focusable, so keyboards can scroll it too).
    parts.append(Html(f'<div class="scroll" tabindex="0" role="region" aria-label="Audit events">{events_table}</div>'))
    return page(layout(request, "Audit log", join(parts), active="audit", who=admin.key.name, csrf=admin.csrf))


async def _export(request: Request, admin: Admin, fmt: str) -> Response:
    store: Store = request.app.state.store
    params = _params(request)
    flt = _filter(request, params)
    cursor = _cursor(request, store.partitions)
    events, next_cursor = await audit.read(store, flt, limit=EXPORT_LIMIT, before=cursor)
    if fmt == "csv":
        text, media_type = audit.format_csv(events), "text/csv; charset=utf-8"
    else:
        text, media_type = audit.format_jsonl(events), "application/x-ndjson; charset=utf-8"
    headers = {"Content-Disposition": f'attachment; filename="otp-audit.{fmt}"'}
    if next_cursor:
        # Where the next export would start (the same filters plus this cursor).
        headers["X-Next-Cursor"] = next_cursor
    return Response(text + ("\n" if text else ""), media_type=media_type, headers=headers)


async def export_csv(request: Request, admin: Admin) -> Response:
    return await _export(request, admin, "csv")


async def export_jsonl(request: Request, admin: Admin) -> Response:
    return await _export(request, admin, "jsonl")
