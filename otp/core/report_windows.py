"""The dashboard's reporting windows (``since=1h|24h|7d``): their names and how each is drawn.

Kept apart from otp.core.stats (which reads the counters through the store, so imports Redis): the
/v1 models (otp.web.models, which otp.client imports) name the windows without loading Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

from otp.errors import InvalidInput


@dataclass(frozen=True)
class Window:
    """A reporting window and how its chart is drawn."""

    name: str
    hours: int
    chart_hours: int  # hours the chart shows, ending with the current one
    bucket_hours: int  # hours per bar or point

    @property
    def label(self) -> str:
        return {"1h": "this hour", "24h": "last 24 hours", "7d": "last 7 days"}[self.name]


# The counters are hourly, so "1h" is one bucket: its chart shows the 12 hours around it for
# context, with the window's bucket highlighted. A week is drawn in 6-hour bars (28 of them).
WINDOWS: dict[str, Window] = {
    "1h": Window("1h", 1, 12, 1),
    "24h": Window("24h", 24, 24, 1),
    "7d": Window("7d", 168, 168, 6),
}
DEFAULT_WINDOW = "24h"


def window(name: str | None, default: str = DEFAULT_WINDOW) -> Window:
    """The window named by a ``since`` parameter; InvalidInput for anything else."""
    chosen = (name or "").strip() or default
    if chosen not in WINDOWS:
        raise InvalidInput(f"must be one of: {', '.join(WINDOWS)}", field="since")
    return WINDOWS[chosen]
