"""Text for a terminal: fixed-width tables (how ``status`` and ``history`` print their rows), and
text from files made safe to print."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """The rows (the first one the header) in left-aligned columns, two spaces apart; control
    characters in cells (text from files) are escaped."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows) + "\n"


def cut(text: str, width: int) -> str:
    """``text`` shortened to ``width`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


# C0 controls (ESC among them), DEL and C1 controls: a terminal acts on them (moves the cursor,
# sets the window title, ...) instead of showing them.
_CONTROLS = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}


def printable(text: str) -> str:
    """``text`` with each control character written as ``\\xNN``: text read from files, safe to print."""
    return text.translate(_CONTROLS)
