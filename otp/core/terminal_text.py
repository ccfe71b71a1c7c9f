"""Stored text on a terminal: what the command line prints of values a client may have chosen
(an API key's name, an admin entry), so that none can move the cursor, recolour, clear or retitle
the screen, hide or reorder what follows, or forge a line.

Tables drop them: an ANSI escape sequence (CSI ``ESC [ … m``, OSC ``ESC ] … BEL``, and the other
``ESC x`` forms) or a run of control, format (bidirectional overrides, zero-width characters) and
separator characters becomes one ``�``, so a value that carried any shows it was altered without
the bytes themselves reaching the terminal. Widths count what a terminal shows: two columns for a
wide (CJK) character, none for a combining mark. JSON keeps every value as stored, escaped.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Final

MARK: Final = "\ufffd"  # where something unprintable was taken out
ELLIPSIS: Final = "…"

# Whole escape sequences first (their parameters are printable and would otherwise stay):
# CSI (7-bit and the 8-bit 0x9b), OSC / DCS / PM / APC / SOS strings up to BEL or ST (or the end),
# and the two-character escapes.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
# Control (Cc), format (Cf), line and paragraph separators (Zl, Zp), surrogates (Cs): never shown.
_HIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def clean(text: str) -> str:
    """``text`` without escape sequences or unprintable characters: each run of them is one ``�``."""
    text = _ESCAPES.sub(MARK, text)
    if text.isprintable():  # the usual case, and cheap: nothing else to take out
        return text
    out: list[str] = []
    for char in text:
        if char == MARK or _hidden(char):
            if not out or out[-1] != MARK:
                out.append(MARK)
        else:
            out.append(char)
    return "".join(out)


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """The columns ``text`` (already ``clean``) takes on a terminal."""
    if text.isascii():
        return len(text)
    return sum(_char_width(char) for char in text)


def fit(text: str, columns: int) -> str:
    """``text`` in at most ``columns`` columns: cut, with ``…`` as its last one, when longer."""
    if width(text) <= columns:
        return text
    kept, used = [], 0
    for char in text:
        size = _char_width(char)
        if used + size > columns - 1:
            break
        kept.append(char)
        used += size
    return "".join(kept).rstrip() + ELLIPSIS


def pad(text: str, columns: int) -> str:
    """``text`` followed by spaces up to ``columns`` columns (``str.ljust`` counts characters)."""
    return text + " " * max(0, columns - width(text))


def _json_escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:  # JSON spells it as its UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def json_text(value: Any, **options: Any) -> str:
    """``json.dumps(value)`` safe on a terminal: every character ``clean`` would take out escaped
    (``\\u001b``, ``\\u202e``; json.dumps itself escapes only C0 controls), so the text decodes
    to the values as stored. Only string contents can hold such a character, so escaping it
    wherever it is keeps the JSON valid."""
    text = json.dumps(value, ensure_ascii=False, **options)
    if text.isprintable():
        return text
    return "".join(_json_escape(char) if _hidden(char) else char for char in text)
