"""A cited table row ('Header: value | Header: value', rag/ingest/rows.py) shows in the source card
as a small table, header row over value row, every cell escaped (app/render.py)."""
from __future__ import annotations

import re

from app.render import ROW_MARK_STYLE, chunk_html, highlight_html, rows_as_tables_html
from rag.ingest.rows import table_text


def _cells(html: str, tag: str) -> list[str]:
    return re.findall(f"<{tag} [^>]*>(.*?)</{tag}>", html)


def test_a_row_line_is_a_two_row_table_under_its_headers() -> None:
    text = "Layoffs in March\n\n" + table_text([["Company", "Employees"], ["Aramark", 53], ["Sodexo", 12]])
    html = rows_as_tables_html(text)
    assert html.count("<table") == 2 and html.count("<tr>") == 4
    assert _cells(html, "th") == ["Company", "Employees", "Company", "Employees"]
    assert _cells(html, "td") == ["Aramark", "53", "Sodexo", "12"]
    assert html.startswith("Layoffs in March")


def test_cells_are_escaped_and_markup_cannot_arise() -> None:
    html = rows_as_tables_html("Name: <script>alert(1)</script> | Link: [x](javascript:y)")
    assert "<script>" not in html and "javascript:" not in html
    assert _cells(html, "td")[0] == "&#60;script&#62;alert&#40;1&#41;&#60;&#47;script&#62;"


def test_the_quoted_row_is_highlighted_whole_and_other_rows_are_not() -> None:
    text = "Company: Aramark | Employees: 53\n\nCompany: Sodexo | Employees: 12"
    at = text.index("Sodexo")
    html = rows_as_tables_html(text, at, at + 6)
    tables = html.split("</table>")[:2]
    assert ROW_MARK_STYLE not in tables[0] and "Aramark" in tables[0]
    assert ROW_MARK_STYLE in tables[1] and "Sodexo" in tables[1]


def test_text_without_rows_renders_as_before() -> None:
    assert rows_as_tables_html("no rows here", 0, 2) == highlight_html("no rows here", 0, 2)
    assert "<table" not in rows_as_tables_html("Home | About | Contact\nnext line")  # no headers: text
    assert "<table" in chunk_html("City: Oslo | Staff: 9")
