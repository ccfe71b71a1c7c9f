"""Server-side SVG charts: bars (stacked), lines and horizontal bars.

No script and no inline style (the Content-Security-Policy allows neither): colours come from
the CSS classes ``s1``…``s6`` of the stylesheet. Each chart is an ``<svg role="img">`` with a
``<title>`` and a ``<desc>``, every bar and point has a ``<title>`` tooltip, and the page shows the
same numbers in a table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from otp.dashboard.markup import Html, esc, join, tag

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 12, 36
MAX_LABELS = 12


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    css: str  # s1…s6


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at or above ``value``, at least 2: round axis ends, and a
    middle tick that is a whole number for counts."""
    if value <= 2:
        return 2.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _plain(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _svg(chart_id: str, title: str, desc: str, body: Html, height: int = HEIGHT) -> Html:
    return Html(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{esc(chart_id)}-t {esc(chart_id)}-d" id="{esc(chart_id)}">'
        f"{tag('title', title, id=chart_id + '-t')}{tag('desc', desc, id=chart_id + '-d')}{body}</svg>"
    )


def legend(series: Sequence[Series]) -> Html:
    items = join(
        tag("li", join([tag("span", "", class_=f"swatch {s.css}", aria_hidden="true"), s.name])) for s in series
    )
    return tag("ul", items, class_="legend")


def _y_axis(top_value: float, fmt: Callable[[float], str]) -> Html:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = []
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        label = esc(fmt(top_value * fraction))
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    return Html("".join(parts))


def _x_labels(labels: Sequence[str], slot: float) -> Html:
    every = max(1, math.ceil(len(labels) / MAX_LABELS))
    parts = []
    for i, label in enumerate(labels):
        if i % every == 0:
            x = LEFT + slot * (i + 0.5)
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{esc(label)}</text>'
            )
    return Html("".join(parts))


def _highlights(highlight: Sequence[bool], slot: float) -> Html:
    # Only worth drawing when part of the chart is outside the window (the 1-hour view).
    if all(highlight) or not any(highlight):
        return Html("")
    plot_h = HEIGHT - TOP - BOTTOM
    return Html(
        "".join(
            f'<rect class="hl" x="{LEFT + slot * i:.1f}" y="{TOP}" width="{slot:.1f}" height="{plot_h}"/>'
            for i, on in enumerate(highlight)
            if on
        )
    )


def bar_chart(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    highlight: Sequence[bool] = (),
    fmt: Callable[[float], str] = _plain,
) -> Html:
    """Stacked bars, one per label."""
    n = max(1, len(labels))
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top_value = nice_ceiling(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.72)
    parts = [_highlights(highlight or [True] * n, slot), _y_axis(top_value, fmt)]
    for i, label in enumerate(labels):
        y = float(TOP + plot_h)
        x = LEFT + slot * i + (slot - bar_w) / 2
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            height = plot_h * value / top_value
            y -= height
            tip = tag("title", f"{label}: {s.name} {fmt(value)}")
            parts.append(
                Html(
                    f'<rect class="{esc(s.css)}" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{height:.1f}">'
                    f"{tip}</rect>"
                )
            )
    parts.append(_x_labels(labels, slot))
    return _svg(chart_id, title, desc, join(parts))


def line_chart(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    highlight: Sequence[bool] = (),
    top: float | None = None,
    fmt: Callable[[float], str] = _plain,
) -> Html:
    """One line per series; a missing value (None) breaks its line."""
    n = max(1, len(labels))
    values = [v for s in series for v in s.values if v is not None]
    top_value = top if top is not None else nice_ceiling(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / n
    parts = [_highlights(highlight or [True] * n, slot), _y_axis(top_value, fmt)]
    for s in series:
        run: list[str] = []
        points = []
        for i, value in enumerate([*s.values, None]):
            if value is None:
                if len(run) > 1:
                    parts.append(Html(f'<polyline class="line {esc(s.css)}" points="{" ".join(run)}"/>'))
                run = []
                continue
            x = LEFT + slot * (i + 0.5)
            y = TOP + plot_h * (1 - min(value, top_value) / top_value)
            run.append(f"{x:.1f},{y:.1f}")
            tip = tag("title", f"{labels[i]}: {s.name} {fmt(value)}")
            points.append(f'<circle class="dot {esc(s.css)}" cx="{x:.1f}" cy="{y:.1f}" r="3">{tip}</circle>')
        parts.append(Html("".join(points)))
    parts.append(_x_labels(labels, slot))
    return _svg(chart_id, title, desc, join(parts))


def hbar_chart(
    chart_id: str,
    title: str,
    desc: str,
    items: Sequence[tuple[str, float]],
    *,
    css: str = "s1",
    top: float | None = None,
    fmt: Callable[[float], str] = _plain,
) -> Html:
    """Horizontal bars, one per (label, value), in the given order."""
    row_h, label_w, value_w = 22, 130, 80
    height = max(1, len(items)) * row_h + 8
    top_value = top if top is not None else nice_ceiling(max((v for _, v in items), default=0))
    plot_w = WIDTH - label_w - value_w
    parts = []
    for i, (label, value) in enumerate(items):
        y = 4 + i * row_h
        width = plot_w * min(max(0.0, value), top_value) / top_value  # a rate can pass 100 %
        parts.append(
            f'<text class="axis" x="{label_w - 8}" y="{y + 15}" text-anchor="end">{esc(label)}</text>'
            f'<rect class="{esc(css)}" x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row_h - 6}">'
            f"{tag('title', f'{label}: {fmt(value)}')}</rect>"
            f'<text class="axis" x="{label_w + width + 6:.1f}" y="{y + 15}">{esc(fmt(value))}</text>'
        )
    if not items:
        parts.append(f'<text class="axis" x="{label_w}" y="18">Nothing in this window.</text>')
    return _svg(chart_id, title, desc, Html("".join(parts)), height=height)


SPARK_H = 100  # the viewBox's height; CSS sets the drawn size (svg.spark)


def sparkline(chart_id: str, title: str, values: Sequence[int], labels: tuple[str, str]) -> Html:
    """A small line of ``values`` (one per minute or hour, oldest first) for a table cell, with a
    title naming the span, the peak and the total for tooltips and screen readers. ``labels``: the
    first and last slot's times. One viewBox unit per slot, stretched to the cell by CSS (strokes
    keep their width: ``vector-effect``); a flat run is drawn by its two ends only, so six hours of
    minutes with a burst in them cost a few points, not 360."""
    n = len(values)
    peak = max(values, default=0)
    top = max(1, peak)
    width = max(1, n - 1)

    def y(v: int) -> int:
        return round(SPARK_H - 4 - (SPARK_H - 8) * v / top)

    points = [
        f"{i},{y(v)}" for i, v in enumerate(values) if i in (0, n - 1) or v != values[i - 1] or v != values[i + 1]
    ]
    if n == 1:
        points.append(f"{width},{y(values[0])}")
    line = " ".join(points)
    desc = f"{labels[0]} to {labels[1]}: peak {peak:,}, total {sum(values):,}"
    return Html(
        f'<svg class="spark" viewBox="0 0 {width} {SPARK_H}" preserveAspectRatio="none" role="img" '
        f'aria-labelledby="{esc(chart_id)}-t" id="{esc(chart_id)}">'
        f"{tag('title', f'{title}. {desc}', id=chart_id + '-t')}"
        f'<polygon class="area" points="0,{SPARK_H} {line} {width},{SPARK_H}"/>'
        f'<polyline class="line" points="{line}"/></svg>'
    )
