"""Ruled tables in PDF pages → one row paragraph per row, each cell under its column header.

    Company: Aramark Healthcare | Employees: 53 | Type: Closure Permanent

pypdf reads a table as loose lines: a wrapped cell's second line lands on a line of its own and
headers end up far from their values. On a page that draws a grid, pdfplumber's table finder
(the 'lines' strategy: cells are the boxes the ruling lines enclose) gives the cells, and
`page_text_with_tables` writes the page as pypdf reads it with each table's text replaced, where
the table was, by its rows (`rag.ingest.rows.row_text`), so the cells are not repeated outside.

1. `looks_ruled(content)` decides from the raw content stream, with regular expressions and no
   layout analysis (a few milliseconds), whether a page draws a grid: at least 3 horizontal
   lines of one extent crossed by the same 3 vertical ones, on a page that draws few curves
   (a chart's gridlines and bars look like a grid, but charts draw curves too). Only those
   pages pay for pdfplumber (~0.3 s a page), so text pages stay as fast as before.
2. `table_grid(cells)` turns the finder's cells (boxes with text) into headers and rows. Merged
   cells: a cell spanning columns is written once, under its first column; a cell spanning rows
   repeats in each (a category down the first column). Header groups: while the next row is
   still under a header cell that spans rows into it, it is a header row too, and each column's
   name joins its header cells top to bottom ('2023' over 'Total' → '2023 Total').
3. Wrapped cells keep their lines together: 'Closure\\nPermanent' → 'Closure Permanent', and
   Chinese lines join without a space ('智能作业功能\\n标志' → '智能作业功能标志').

Deliberately skipped: tables without ruling lines (aligned columns of numbers, booktabs rules
only; they stay lines of text), rules drawn inside form XObjects or placed by `cm` translations
(LaTeX figures), tables continued over a page break (each page's part takes its first row as
the header), rotated pages, and pdfplumber's text strategy (it finds tables in ordinary prose).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag.ingest.rows import row_text

if TYPE_CHECKING:  # annotations only: both are imported when a page is read
    from pdfplumber.page import Page as PlumberPage
    from pdfplumber.pdf import PDF
    from pypdf import PageObject

BBox = tuple[float, float, float, float]  # x0, top, x1, bottom (pdfplumber: y grows downwards)

_NUM = rb"[-+]?(?:\d+\.?\d*|\.\d+)"
# `x y m`, `x y l` (move, line) and `x y w h re` (rectangle): the path operators of ruling lines.
_PATH_OP = re.compile(rb"(?<![\w.])(" + _NUM + rb")\s+(" + _NUM + rb")\s+(?:(" + _NUM + rb")\s+("
                      + _NUM + rb")\s+(re)|([ml]))(?![\w*])")
_THIN = 2.0  # a rectangle this thin (in user units) is a rule, not a box
_MIN_RULE = 8.0  # shorter segments are tick marks and glyph parts, not borders
_MAX_SEGMENTS = 4000  # a plot with more segments than this is no table worth the finder's time
_MIN_OPERATORS = 8  # prefilter: fewer line and rectangle operators than this and there is no grid
_LINE_OR_RECT = re.compile(rb"\d\s(?:l|re)\s")  # a simple pattern scans a text page in microseconds
_CURVE_OP = re.compile(rb"(?<![\w.])c(?![\w*])")
_MAX_CURVES = 16  # charts draw curves (markers, rounded bars, error bars); ruled tables barely any


def ruling_segments(content: bytes) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]:
    """Axis-parallel segments a content stream draws: (y, x0, x1) horizontal, (x, y0, y1) vertical.

    >>> ruling_segments(b"10 20 m 110 20 l S 50 0 0.5 40 re f")
    ([(20.0, 10.0, 110.0)], [(50.0, 0.0, 40.0)])

    A rectangle thicker than a rule gives its four edges. Coordinates are user space as written:
    a `cm` transform in front is not applied (ruling lines of one table share it).
    """
    horizontal: list[tuple[float, float, float]] = []
    vertical: list[tuple[float, float, float]] = []
    at: tuple[float, float] | None = None
    for m in _PATH_OP.finditer(content):
        a, b = float(m.group(1)), float(m.group(2))
        if m.group(5):  # rectangle
            w, h = float(m.group(3)), float(m.group(4))
            x0, x1, y0, y1 = min(a, a + w), max(a, a + w), min(b, b + h), max(b, b + h)
            if y1 - y0 > _THIN:
                vertical += [(x0, y0, y1)] if x1 - x0 <= _THIN else [(x0, y0, y1), (x1, y0, y1)]
            if x1 - x0 > _THIN:
                horizontal += [(y0, x0, x1)] if y1 - y0 <= _THIN else [(y0, x0, x1), (y1, x0, x1)]
            at = None
        elif m.group(6) == b"m":
            at = (a, b)
        else:
            if at is not None:
                if abs(at[1] - b) < 0.5:
                    horizontal.append((b, min(at[0], a), max(at[0], a)))
                elif abs(at[0] - a) < 0.5:
                    vertical.append((a, min(at[1], b), max(at[1], b)))
            at = (a, b)
        if len(horizontal) + len(vertical) > _MAX_SEGMENTS:
            break  # looks_ruled gives up on this many
    return horizontal, vertical


def _merge(segments: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Collinear segments (same position to the point) that touch or overlap joined into one
    line, of at least `_MIN_RULE`: a table drawn cell by cell has one line per row border."""
    by_position: dict[int, list[tuple[float, float]]] = {}
    for pos, a, b in segments:
        by_position.setdefault(round(pos), []).append((a, b))
    lines = []
    for pos, spans in by_position.items():
        spans.sort()
        lo, hi = spans[0]
        for a, b in spans[1:]:
            if a <= hi + 2:
                hi = max(hi, b)
            else:
                lines.append((float(pos), lo, hi))
                lo, hi = a, b
        lines.append((float(pos), lo, hi))
    return [line for line in lines if line[2] - line[1] >= _MIN_RULE]


def looks_ruled(content: bytes) -> bool:
    """Whether a page's content stream draws a table grid: 3 or more horizontal lines of the
    same extent (the borders between rows) crossed or touched by the same 3 or more vertical
    lines, on a page that draws at most 16 curves: a chart's gridlines and bars make a grid too,
    but charts draw markers and error bars as curves.

    >>> grid = b" ".join(b"%d 0 m %d 60 l S 0 %d m 90 %d l S" % (v, v, v * 2 // 3, v * 2 // 3) for v in (0, 30, 60, 90))
    >>> looks_ruled(grid), looks_ruled(b"0 0 m 90 0 l S 0 30 m 90 30 l S BT (text) Tj ET")
    (True, False)
    """
    if len(_LINE_OR_RECT.findall(content)) < _MIN_OPERATORS or len(_CURVE_OP.findall(content)) > _MAX_CURVES:
        return False
    horizontal, vertical = ruling_segments(content)
    if len(horizontal) + len(vertical) > _MAX_SEGMENTS:
        return False
    rows, columns = _merge(horizontal), _merge(vertical)
    crossed = []
    for y, x0, x1 in rows:
        xs = frozenset(round(x) for x, y0, y1 in columns if x0 - 1 <= x <= x1 + 1 and y0 - 1 <= y <= y1 + 1)
        if len(xs) >= 3:
            crossed.append((x0, x1, xs))
    return any(sum(1 for b0, b1, other in crossed
                   if abs(a0 - b0) <= 2 and abs(a1 - b1) <= 2 and len(xs & other) >= 3) >= 3
               for a0, a1, xs in crossed[:100])


# ------------------------------------------------------------------------------- cells → rows

_CJK = "\u3000-\u303f\u3400-\u9fff\uff00-\uffef"  # ideographs and CJK / full-width punctuation
_CJK_END = re.compile(f"[{_CJK}]$")
_CJK_START = re.compile(f"^[{_CJK}]")
_CJK_SPACE = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")
# Characters closer than this share a word (x_tolerance as a share of the font size): the fixed
# default of 3 points glues small-print words ('GreatBritain').
_X_TOLERANCE_RATIO = 0.15


def join_cell_lines(text: str) -> str:
    """A wrapped cell as one line: Latin lines joined by a space, Chinese ones without; the
    spaces of justified Chinese text go ('本 规 范' → '本规范').

    >>> join_cell_lines("Closure\\nPermanent"), join_cell_lines("智能作业功能\\n标志"), join_cell_lines(" 本 规 范 10 ")
    ('Closure Permanent', '智能作业功能标志', '本规范 10')
    """
    lines = [_CJK_SPACE.sub("", line.strip()) for line in text.split("\n")]
    out = ""
    for line in lines:
        if not line:
            continue
        if out and not (_CJK_END.search(out) and _CJK_START.match(line)):
            out += " "
        out += line
    return out


def table_grid(cells: Sequence[tuple[BBox, str]]) -> tuple[list[str], list[list[str]]]:
    """(column headers, data rows) of a table given as cell boxes with their text.

    Columns start at the distinct left edges of the cells and rows at the distinct tops; a cell
    covers every grid position inside its box. Header groups and merged cells as in the module
    docstring. A table of a single row is all data with numbered columns.

    >>> cells = [((0, 0, 10, 20), "State"), ((10, 0, 30, 10), "2023"),
    ...          ((10, 10, 20, 20), "Total"), ((20, 10, 30, 20), "Change"),
    ...          ((0, 20, 10, 30), "Texas"), ((10, 20, 20, 30), "778"), ((20, 20, 30, 30), "-2")]
    >>> table_grid(cells)
    (['State', '2023 Total', '2023 Change'], [['Texas', '778', '-2']])
    """
    xs = sorted({round(b[0], 1) for b, _ in cells})
    tops = sorted({round(b[1], 1) for b, _ in cells})
    col = {x: j for j, x in enumerate(xs)}
    row = {y: i for i, y in enumerate(tops)}
    # covering[i][j]: index of the cell over grid position (i, j), or -1 for a hole in the grid
    covering = [[-1] * len(xs) for _ in tops]
    origin: list[tuple[int, int]] = []
    for k, (box, _) in enumerate(cells):
        i0, j0 = row[round(box[1], 1)], col[round(box[0], 1)]
        origin.append((i0, j0))
        for i in range(i0, len(tops)):
            if tops[i] >= box[3] - 0.5:
                break
            for j in range(j0, len(xs)):
                if xs[j] >= box[2] - 0.5:
                    break
                covering[i][j] = k
    texts = [join_cell_lines(t) for _, t in cells]

    if len(tops) < 2:
        return [f"Column {j + 1}" for j in range(len(xs))], [[texts[k] if k >= 0 else "" for k in covering[0]]]
    header_rows = 1
    while header_rows < min(3, len(tops) - 1):
        below = covering[header_rows]
        spans_down = any(k >= 0 and origin[k][0] < header_rows for k in below)
        own = any(k >= 0 and origin[k][0] == header_rows for k in below)
        if not (spans_down and own):
            break
        header_rows += 1
    headers = []
    for j in range(len(xs)):
        names: list[str] = []
        for i in range(header_rows):
            k = covering[i][j]
            if k >= 0 and texts[k] and (not names or names[-1] != texts[k]):
                names.append(texts[k])
        headers.append(" ".join(names) or f"Column {j + 1}")
    rows = []
    for i in range(header_rows, len(tops)):
        rows.append([texts[k] if k >= 0 and origin[k][1] == j else "" for j, k in enumerate(covering[i])])
    return headers, rows


def rows_text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """One row paragraph per non-empty row, blank lines between (`rag.ingest.rows.row_text`)."""
    return "\n\n".join(t for t in (row_text(headers, r) for r in rows) if t)


def _useful(cells: Sequence[tuple[BBox, str]]) -> bool:
    """A table worth writing as rows: 2+ rows and 2+ columns, and at least half its cells hold
    text (a plot's grid or a framed box encloses empty cells)."""
    xs = {round(b[0], 1) for b, _ in cells}
    tops = {round(b[1], 1) for b, _ in cells}
    filled = sum(1 for _, t in cells if t.strip())
    return len(xs) >= 2 and len(tops) >= 2 and filled * 2 >= len(cells)


# ------------------------------------------------------------------------------------- pages


def find_tables(page: PlumberPage) -> list[tuple[BBox, str]]:
    """(bbox, rows text) of each useful ruled table on a pdfplumber page, top to bottom."""
    found = []
    for table in page.find_tables():
        texts = [t or "" for row in table.extract(x_tolerance_ratio=_X_TOLERANCE_RATIO) for t in row]
        boxes = [c for row in table.rows for c in row.cells]
        cells = [(box, text) for box, text in zip(boxes, texts) if box is not None]
        if not _useful(cells):
            continue
        text = rows_text(*table_grid(cells))
        if text:
            found.append((table.bbox, text))
    return found


def page_text_with_tables(page: PageObject, tables: Sequence[tuple[BBox, str]], height: float) -> str | None:
    """The page's text as pypdf extracts it, each table's text replaced by its rows where the
    table begins; None when pypdf places no text inside any of the tables.

    pypdf hands every piece of text to a visitor with its position, and the pieces join to
    exactly what `extract_text` returns; a piece whose start lies in a table box is dropped, and
    the first one of each table is replaced by the table's rows. `height` is the pdfplumber
    page height, which turns its top-down boxes into PDF coordinates (y up).
    """
    boxes = [(x0 - 1, height - bottom - 1, x1 + 1, height - top + 1) for (x0, top, x1, bottom), _ in tables]
    out: list[str] = []
    placed: set[int] = set()
    in_table = False  # the last positioned piece was in a table: spaces and breaks after it go too

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: object) -> None:
        nonlocal in_table
        if not text:
            return
        if text.isspace():
            if not in_table:
                out.append(text)
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        hit = next((k for k, (x0, y0, x1, y1) in enumerate(boxes) if x0 <= x <= x1 and y0 <= y <= y1), -1)
        in_table = hit >= 0
        if not in_table:
            out.append(text)
        elif hit not in placed:
            placed.add(hit)
            out.append(f"\n\n{tables[hit][1]}\n\n")

    page.extract_text(visitor_text=visit)
    return "".join(out) if placed else None



def content_bytes(page: PageObject) -> bytes:
    """The page's content stream, decoded. pypdf keeps the decoded data, so the extraction that
    follows does not decode it again."""
    from pypdf.generic import ArrayObject

    contents = page.get("/Contents")
    if contents is None:
        return b""
    contents = contents.get_object()
    if isinstance(contents, ArrayObject):
        return b"\n".join(part.get_object().get_data() for part in contents)
    data = contents.get_data()
    return data if isinstance(data, bytes) else b""


class TableReader:
    """Rewrites the text of the pages of one PDF that draw tables; opens the file with pdfplumber
    on the first such page, so a text-only PDF never does. Without pdfplumber installed (the
    `tables` extra), or when it fails on a page, the page keeps pypdf's text."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pdf: PDF | None = None
        self._failed = False

    def page_text(self, page: PageObject, index: int, raw: str) -> str:
        """`raw` (pypdf's text of page `index`) with each ruled table written row by row."""
        try:
            if not raw or not looks_ruled(content_bytes(page)):
                return raw
            pdf = self._open()
            if pdf is None:
                return raw
            plumber_page = pdf.pages[index]
            try:
                if plumber_page.rotation:
                    return raw
                tables = find_tables(plumber_page)
                text = page_text_with_tables(page, tables, plumber_page.height) if tables else None
            finally:
                plumber_page.close()
        except Exception:  # a table finder failing on a damaged page costs the rows, not the page
            return raw
        return raw if text is None else text

    def _open(self) -> PDF | None:
        if self._pdf is None and not self._failed:
            try:
                import io

                import pdfplumber

                self._pdf = pdfplumber.open(io.BytesIO(self._data))
            except Exception:  # not installed, or pdfminer refuses the file: plain text it is
                self._failed = True
        return self._pdf

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()
            self._pdf = None
