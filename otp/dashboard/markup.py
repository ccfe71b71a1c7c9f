"""HTML built in plain Python: every value is escaped unless it is already ``Html``.

``Html`` marks markup this package built itself; anything else (audit fields, key names, query
parameters) goes through ``esc``. No template engine: the pages are a few tables and forms.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse


class Html(str):
    """A string of markup that is safe to insert as it is."""

    __slots__ = ()


def esc(value: object) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(sep.join(esc(part) for part in parts))


def tag(name: str, content: object = "", **attrs: object) -> Html:
    """``<name attr="…">content</name>``; attribute names ending in ``_`` lose it (``class_``)."""
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None and v is not False
    )
    return Html(f"<{name}{rendered}>{esc(content)}</{name}>")


def base(request: Request) -> str:
    """Where the dashboard is mounted (``/admin``, behind any proxy root path)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def url(request: Request, path: str, params: dict[str, str] | None = None) -> str:
    query = urlencode({k: v for k, v in (params or {}).items() if v})
    return base(request) + path + ("?" + query if query else "")


def number(value: int | float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f} %"


def duration(seconds: int) -> str:
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool = False


def table(
    caption: str,
    columns: Sequence[Column],
    rows: Iterable[Sequence[object]],
    *,
    empty: str = "Nothing yet.",
    id_: str = "",
) -> Html:
    """A data table with a caption and column headers; numeric columns align right."""
    head = join(tag("th", c.title, scope="col", class_="num" if c.numeric else None) for c in columns)
    body = []
    for row in rows:
        cells = []
        for i, (column, value) in enumerate(zip(columns, row, strict=True)):
            cell_tag = "th" if i == 0 else "td"
            cells.append(
                tag(cell_tag, value, scope="row" if i == 0 else None, class_="num" if column.numeric else None)
            )
        body.append(tag("tr", join(cells)))
    if not body:
        body.append(tag("tr", tag("td", empty, colspan=len(columns), class_="empty")))
    return tag(
        "table",
        join([tag("caption", caption), tag("thead", tag("tr", head)), tag("tbody", join(body))]),
        id=id_ or None,
    )


def hidden(name: str, value: str) -> Html:
    return Html(f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">')


def post_form(action: str, csrf: str, fields: dict[str, str], button: str, *, label: str = "") -> Html:
    """A one-button POST form carrying the CSRF token; ``label`` names the action for screen readers."""
    inputs = join([hidden("csrf", csrf), *(hidden(k, v) for k, v in fields.items())])
    submit = tag("button", button, type="submit", aria_label=label or None)
    return Html(f'<form method="post" action="{esc(action)}" class="inline">{inputs}{submit}</form>')


NAV = (
    ("overview", "/", "Overview"),
    ("incidents", "/incidents", "Incidents"),
    ("bruteforce", "/bruteforce", "Brute force"),
    ("fraud", "/fraud", "Fraud"),
    ("audit", "/audit", "Audit log"),
)


def layout(request: Request, title: str, body: Html, *, active: str = "", who: str = "", csrf: str = "") -> Html:
    root = base(request)
    nav = Html("")
    if who:
        links = join(
            tag("a", text, href=root + path, aria_current="page" if name == active else None)
            for name, path, text in NAV
        )
        signout = post_form(root + "/signout", csrf, {}, "Sign out")
        nav = Html(
            f'<nav aria-label="Dashboard">{links}</nav>'
            f'<div class="who">Signed in as {tag("strong", who)} {signout}</div>'
        )
    return Html(
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)} · otp</title>"
        f'<link rel="stylesheet" href="{esc(root)}/static/dashboard.css">'
        # Served here, so the browser doesn't ask the API for /favicon.ico.
        f'<link rel="icon" href="{esc(root)}/static/favicon.svg" type="image/svg+xml">'
        '</head><body><a class="skip" href="#main">Skip to content</a>'
        f'<header><span class="brand">otp</span>{nav}</header>'
        f'<main id="main"><h1>{esc(title)}</h1>{body}</main>'
        "</body></html>\n"
    )


def page(html_text: Html, status: int = 200) -> HTMLResponse:
    return HTMLResponse(str(html_text), status_code=status)


def notice(text: str, kind: str = "info") -> Html:
    role = "alert" if kind == "error" else "status"
    return tag("p", text, class_=f"notice {kind}", role=role)
