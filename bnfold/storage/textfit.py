"""Fitting names and numbers into terminal columns: the rules every report's table shares.

Numbers are never cut: a numeric column is as wide as its widest cell. Names (node, output,
file paths) are wrapped whole at ``/`` boundaries, so a line never ends mid-word, and only a
single segment wider than its column is shortened from the left with ``…`` (its tail is what
tells names apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ELLIPSIS = "…"
# The gap rich puts between two columns (padding 1 on each side, no outer edge).
COLUMN_GAP = 2


def shorten_left(text: str, width: int) -> str:
    """``text`` if it fits in ``width``, else ``…`` and its tail (at a ``/`` when possible)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    tail = text[len(text) - (width - 1) :]
    cut = tail.find("/")
    if 0 < cut < len(tail) - 1:
        tail = tail[cut:]
    return ELLIPSIS + tail


def wrap_name(name: str, width: int) -> str:
    """``name`` on lines of at most ``width``, broken only after a ``/`` (or ``.``, ``_``)."""
    if len(name) <= width or width < 4:
        return name
    pieces: list[str] = []
    current = ""
    for piece in _segments(name):
        if len(piece) > width:
            piece = shorten_left(piece, width)
        if current and len(current) + len(piece) > width:
            pieces.append(current)
            current = ""
        current += piece
    if current:
        pieces.append(current)
    return "\n".join(pieces)


def _segments(name: str) -> list[str]:
    """``/a/b.c`` → ``["/", "a/", "b.c"]``: break points after each separator."""
    segments: list[str] = []
    current = ""
    for char in name:
        current += char
        if char == "/":
            segments.append(current)
            current = ""
    if current:
        segments.append(current)
    return segments


def name_widths(
    total: int, fixed: Sequence[int], names: Sequence[Sequence[str]], minimum: int = 12
) -> list[int]:
    """Widths for the name columns ``names`` (their cells) in ``total`` columns.

    ``fixed`` are the widths of the other columns (numbers, codes: never shrunk). Each name
    column gets its natural width when everything fits; otherwise the room left is shared in
    proportion to the natural widths, never below ``minimum``.
    """
    natural = [max((len(cell) for cell in cells), default=1) for cells in names]
    columns = len(fixed) + len(names)
    room = total - sum(fixed) - COLUMN_GAP * max(columns - 1, 0)
    if sum(natural) <= room:
        return natural
    share = sum(natural) or 1
    widths = [max(minimum, min(n, room * n // share)) for n in natural]
    return widths


def cell_width(header: str, cells: Sequence[str]) -> int:
    """The width that shows ``header`` and every (single-line) cell whole."""
    return max([len(header), *(len(line) for cell in cells for line in cell.split("\n"))])


def print_table(console: Any, table: Any) -> None:
    """Print a rich ``Table`` with its title on a line of its own (wrapped at the console's
    width, not the table's, which may be narrower)."""
    title, table.title = table.title, None
    if title:
        console.print(title, markup=False, highlight=False)
    console.print(table)
    table.title = title
