"""What the ``otp`` commands print: a table with a header row for people, or ``--json`` for programs.

Every listing command prints a header row first, even when it lists nothing, then one row per
item; with ``--json`` it prints one JSON array of objects instead (``otp audit --json``: JSON lines,
one object per event, since ``--follow`` streams). A command that prints a result prints it as
one JSON object with ``--json``. Table cells go through ``terminal_text.clean``: a value a client
chose (an API key's name) can't reach the terminal as control characters or escape sequences;
JSON keeps the values as stored, escaped.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any

from otp.core import terminal_text

GAP = "  "
JSON_HELP = "print JSON (an array of objects for a listing) instead of a table"


def add_json_option(parser: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    parser.add_argument("--json", action="store_true", help=help)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The header row and the rows, each column as wide as its widest cell (the last one unpadded)."""
    lines = [[terminal_text.clean(str(cell)) or "-" for cell in row] for row in [header, *rows]]
    widths = [max(terminal_text.width(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        GAP.join(terminal_text.pad(cell, size) for cell, size in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    print(table(header, rows))


def print_json(value: Any) -> None:
    print(terminal_text.json_text(value))


def print_result(fields: dict[str, Any], text: str, *, as_json: bool) -> None:
    """A command's result: ``text`` for people, or ``fields`` as one JSON object."""
    if as_json:
        print_json(fields)
    else:
        print(text)
