"""Small pieces several pages share: the window picker, stat lists, time labels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from starlette.requests import Request

from otp.core.stats import WINDOW_PARAM, WINDOWS, Window, window_of
from otp.dashboard.markup import Html, join, tag, url


def window_picker(request: Request, path: str, current: Window, extra: dict[str, str] | None = None) -> Html:
    """Links to the same page over each window (``?window=``), the current one marked."""
    links = join(
        tag(
            "a",
            name,
            href=url(request, path, {**(extra or {}), WINDOW_PARAM: name}),
            aria_current="page" if name == current.name else None,
        )
        for name in WINDOWS
    )
    return Html(f'<nav class="windows" aria-label="Time window">Window: {links}</nav>')


def chosen_window(request: Request) -> Window:
    """The page's window: ``?window=`` (1h, 6h, 24h, 7d), or the older ``?since=``; anything else
    is a 400 naming the parameter."""
    return window_of(request.query_params)


def stats(items: Sequence[tuple[str, str, str]], *, names: bool = False) -> Html:
    """A row of headline figures: (metric id, label, formatted value); the id lands in
    ``data-metric`` so tests and scripts can read a figure without parsing the layout."""
    cells = join(
        Html(f"<div>{tag('dt', label)}{tag('dd', value, data_metric=metric)}</div>") for metric, label, value in items
    )
    # names: the figures are names (a prefix, an IP, a rule), given room to stay on one line.
    return tag("dl", cells, class_="stats names" if names else "stats")


def bucket_label(start_ms: int, bucket_hours: int, bucket_minutes: int = 0) -> str:
    moment = datetime.fromtimestamp(start_ms / 1000, UTC)
    if bucket_minutes and bucket_minutes < 60:
        return moment.strftime("%H:%M")
    return moment.strftime("%H:00") if bucket_hours == 1 else moment.strftime("%d %b %Hh")


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def section(title: str, *parts: Html, id_: str = "") -> Html:
    heading_id = id_ or title.lower().replace(" ", "-")
    return Html(
        f'<section aria-labelledby="{heading_id}-h">{tag("h2", title, id=heading_id + "-h")}{join(parts)}</section>'
    )


def figure(caption: str, chart: Html, key: Html | None = None) -> Html:
    """A chart with a visible caption (the SVG's own title is for assistive technology)."""
    return Html(f"<figure>{tag('figcaption', caption)}{chart}{key or ''}</figure>")


def per_bucket(bucket_hours: int, bucket_minutes: int = 0) -> str:
    if bucket_minutes and bucket_minutes < 60:
        return "per minute" if bucket_minutes == 1 else f"per {bucket_minutes} minutes"
    return "per hour" if bucket_hours == 1 else f"per {bucket_hours} hours"
