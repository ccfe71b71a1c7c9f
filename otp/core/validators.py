"""Shared field rules for client input: whole numbers from query strings, forms, headers and paths.

``int()`` is the wrong parser for client text: it accepts ``" 12 "``, ``"+12"``, ``"1_2"`` and
non-ASCII digits (``"١٢"``), and past 4,300 digits it raises ``ValueError: Exceeds the limit``
(CPython's guard against quadratic conversion), which escaped as a 500. Here the text is checked
first, as plain ASCII digits, and its length is bounded before any conversion.
"""

from __future__ import annotations

from otp.errors import InvalidInput

# Longer than any number this service takes (the largest is a 20-digit Content-Length).
MAX_DIGITS = 20


def digits(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """The value of ``text`` when it is only ASCII digits, at most ``max_digits`` of them once
    leading zeros are dropped; otherwise None. Never raises."""
    if not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0") or "0"
    return int(significant) if len(significant) <= max_digits else None


def whole_number(text: str, *, field: str, low: int, high: int) -> int:
    """``text`` as an integer in ``low..high`` (a leading ``-`` only when ``low`` is negative), or
    InvalidInput naming ``field``."""
    negative = text.startswith("-") and low < 0
    value = digits(text[1:] if negative else text)
    if value is not None and negative:
        value = -value
    if value is None or not low <= value <= high:
        raise InvalidInput(f"must be a whole number from {low} to {high}", field=field)
    return value
