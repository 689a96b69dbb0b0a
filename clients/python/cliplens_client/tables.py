"""Plain-text tables for the command line."""

from __future__ import annotations

from collections.abc import Sequence

Cell = str | int | float | None


def format_cell(value: Cell, digits: int = 4) -> str:
    """Floats with ``digits`` decimals, ``None`` as ``-``, everything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """Columns separated by two spaces; numeric columns right-aligned, others left-aligned."""
    cells = [[format_cell(value) for value in row] for row in rows]
    numeric = [
        bool(rows) and all(isinstance(row[column], int | float) for row in rows)
        for column in range(len(headers))
    ]
    widths = [
        max(len(text) for text in [header, *(row[i] for row in cells)]) for i, header in enumerate(headers)
    ]

    def line(texts: Sequence[str]) -> str:
        padded = [
            text.rjust(width) if right else text.ljust(width)
            for text, width, right in zip(texts, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in cells)])
