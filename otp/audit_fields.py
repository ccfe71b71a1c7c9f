"""Which fields of an audit context reach a record or a log line: the one rule, shared by the Lua
writer (lib.lua's ``audit()`` skips the same names), the Python writer and the log mirror."""

from __future__ import annotations

from typing import Any

# For the hourly counters only, never written: the destination prefix beside the masked number's
# last digits would spell the whole number.
COUNTER_ONLY_PREFIX = "_prefix"


def recorded(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields a record or log line may carry: not the counter-only ones (``_…``), not empty."""
    return {k: v for k, v in fields.items() if not k.startswith("_") and v not in (None, "")}
