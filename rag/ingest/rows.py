"""Table rows as text: one line per row, each cell named by its column header.

    >>> row_text(["Company", "Employees", "Type"], ["Aramark", 53, ""])
    'Company: Aramark | Employees: 53'

Every parser that meets a table (Word, Excel, CSV, PowerPoint) writes its rows this way, one row
a paragraph, so a retrieved chunk carries the header beside every value ("Employees: 53", not a
bare 53 the reader must match to a column), and the chunker (`rag.ingest.chunk`, which keeps a
paragraph that fits in a chunk whole and takes an `is_row` paragraph as one sentence) never cuts
a row in two.

Deliberately skipped: header rows beyond the first (grouped headers are joined by the parsers
that know them), merged cells beyond repeating their value, and cell formatting.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

CELL_SEPARATOR = " | "
_SPACES = re.compile(r"\s+")


def is_row(text: str, start: int = 0, end: int | None = None) -> bool:
    """Whether text[start:end] is one row: a single line holding a cell separator.

    >>> is_row("Company: Aramark | Employees: 53"), is_row("a | b\\nc | d"), is_row("Dr. Smith left.")
    (True, False, False)
    """
    stop = len(text) if end is None else end
    return text.find("\n", start, stop) == -1 and text.find(CELL_SEPARATOR, start, stop) != -1


def cell_text(value: object) -> str:
    """A cell as text: whitespace collapsed, whole floats without '.0', dates without midnight.

    >>> cell_text(53.0), cell_text(4.25), cell_text(" two\\nlines "), cell_text(None), cell_text(True)
    ('53', '4.25', 'two lines', '', 'TRUE')
    >>> cell_text(dt.datetime(2024, 3, 1)), cell_text(dt.datetime(2024, 3, 1, 9, 30))
    ('2024-03-01', '2024-03-01 09:30:00')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return _SPACES.sub(" ", str(value)).strip()


def headers_of(row: Sequence[object]) -> list[str]:
    """Column names from a header row; a blank header is named by its position ('Column 3').

    >>> headers_of(["Name", None, " Age "])
    ['Name', 'Column 2', 'Age']
    """
    return [cell_text(v) or f"Column {i}" for i, v in enumerate(row, 1)]


def row_text(headers: Sequence[str], cells: Sequence[object]) -> str:
    """'Header: value | Header: value' for the non-empty cells of a row; cells beyond the
    headers are named by position. '' when every cell is empty."""
    parts = []
    for i, value in enumerate(cells):
        text = cell_text(value)
        if text:
            name = headers[i] if i < len(headers) else f"Column {i + 1}"
            parts.append(f"{name}: {text}")
    return CELL_SEPARATOR.join(parts)


def table_text(rows: Sequence[Sequence[object]]) -> str:
    """A table, its first non-empty row the header, as one row paragraph per data row.

    >>> print(table_text([["Company", "Employees"], ["Aramark", 53], [], ["Sodexo", 12]]))
    Company: Aramark | Employees: 53
    <BLANKLINE>
    Company: Sodexo | Employees: 12

    A table of a single row is that row's cells joined by the separator.
    """
    filled = [list(r) for r in rows if any(cell_text(v) for v in r)]
    if not filled:
        return ""
    if len(filled) == 1:
        return CELL_SEPARATOR.join(t for t in map(cell_text, filled[0]) if t)
    headers = headers_of(filled[0])
    return "\n\n".join(t for t in (row_text(headers, r) for r in filled[1:]) if t)
