"""The dashboard's reporting windows (``window=1h|6h|24h|7d``, or ``since``, its older name): their
names, what each covers and how it is drawn.

Kept apart from otp.core.stats (which reads the counters through the store, so imports Redis): the
/v1 models (otp.web.models, which otp.client imports) name the windows without loading Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otp.errors import InvalidInput

HOUR_MS = 3_600_000
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Window:
    """A reporting window and how its chart is drawn. A short window (``minutes``) slides: the
    last ``minutes`` whole minutes of the minute counters, charted per ``bucket_minutes``; a long
    one is a run of whole clock hours ending with the current one, charted per ``bucket_hours``."""

    name: str
    hours: int
    chart_hours: int  # hours the chart shows, ending with the current one
    bucket_hours: int  # hours per bar or point
    minutes: int = 0  # a sliding window of this many minutes; 0: whole clock hours
    bucket_minutes: int = 0

    @property
    def label(self) -> str:
        return {"1h": "last hour", "6h": "last 6 hours", "24h": "last 24 hours", "7d": "last 7 days"}[self.name]


# 1h and 6h come from the minute counters (kept 7 hours), per minute and per 5 minutes; a day is
# drawn in hours and a week in 6-hour bars (28 of them).
WINDOWS: dict[str, Window] = {
    "1h": Window("1h", 1, 1, 1, minutes=60, bucket_minutes=1),
    "6h": Window("6h", 6, 6, 1, minutes=360, bucket_minutes=5),
    "24h": Window("24h", 24, 24, 1),
    "7d": Window("7d", 168, 168, 6),
}
DEFAULT_WINDOW = "24h"
# The pages' parameter, and its older name (still read when ``window`` is absent).
WINDOW_PARAM, OLD_WINDOW_PARAM = "window", "since"


def window(name: str | None, default: str = DEFAULT_WINDOW, *, field: str = OLD_WINDOW_PARAM) -> Window:
    """The window named ``name``; InvalidInput naming ``field`` for anything else."""
    chosen = (name or "").strip() or default
    if chosen not in WINDOWS:
        raise InvalidInput(f"must be one of: {', '.join(WINDOWS)}", field=field)
    return WINDOWS[chosen]


def window_of(params: Mapping[str, str]) -> Window:
    """The window of a page's query: ``window``, else the older ``since``."""
    if params.get(WINDOW_PARAM) is not None:
        return window(params.get(WINDOW_PARAM), field=WINDOW_PARAM)
    return window(params.get(OLD_WINDOW_PARAM), field=OLD_WINDOW_PARAM)


def window_slots(win: Window, now_ms: int) -> list[int]:
    """The minutes (short window) or hours (long one) since the epoch that ``win`` covers."""
    if win.minutes:
        last = now_ms // MINUTE_MS
        return list(range(last - win.minutes + 1, last + 1))
    last = now_ms // HOUR_MS
    return list(range(last - win.hours + 1, last + 1))
