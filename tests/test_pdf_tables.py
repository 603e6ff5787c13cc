"""Ruled tables in PDFs come out one row a paragraph, each cell under its header
(rag/ingest/pdf_tables.py). The PDFs are drawn here with fpdf2, so every cell is known."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from rag.ingest.chunk import chunk_document
from rag.ingest.pdf import parse_pdf
from rag.ingest.pdf_tables import content_bytes, join_cell_lines, looks_ruled, table_grid
from rag.ingest.rows import row_text

pytest.importorskip("pdfplumber", reason="the tables extra (pdfplumber) is not installed")
fpdf = pytest.importorskip("fpdf", reason="fpdf2 (dev extra) draws the test PDFs")

SHARED_PDFS = Path(__file__).resolve().parents[2] / "shared" / "pdfs"

HEADERS = ["Company", "City", "County", "Employees", "Type", "Notice", "Effective", "Sector", "Union",
           "Site", "Region", "Code", "Status"]


def _rows(n: int) -> list[list[str]]:
    """Data rows whose first and eighth cells wrap over several lines in a 60-point column."""
    return [[f"Company {i} Healthcare Services International", f"City{i}", f"County{i}", str(10 + 7 * i),
             "Closure Permanent" if i % 2 else "Layoff Temporary", f"2024-03-{i + 1:02d}",
             f"2024-05-{i + 1:02d}", "Food service and hospitality", "Yes" if i % 3 else "No",
             f"Site {i}", f"R{i}", f"C{i:03d}", "Received"] for i in range(n)]


def _table_pdf(header_rows: list[list[tuple[str, int, int]]], rows: list[list[str]], *,
               before: str = "Layoff notices received in March.", after: str = "Source: state agency.") -> bytes:
    """A landscape page: a paragraph, a ruled table (header cells as (text, colspan, rowspan)), a paragraph."""
    pdf = fpdf.FPDF(orientation="L")
    pdf.add_page()
    pdf.set_font("Helvetica", size=7)
    pdf.multi_cell(0, 5, before)
    with pdf.table(first_row_as_headings=False) as table:
        for header in header_rows:
            row = table.row()
            for text, colspan, rowspan in header:
                row.cell(text, colspan=colspan, rowspan=rowspan)
        for cells in rows:
            row = table.row()
            for text in cells:
                row.cell(text)
    pdf.multi_cell(0, 5, after)
    return bytes(pdf.output())


def _plain_header() -> list[list[tuple[str, int, int]]]:
    return [[(h, 1, 1) for h in HEADERS]]


def test_wide_table_with_wrapped_cells_round_trips_every_cell_to_its_row_and_header() -> None:
    rows = _rows(6)
    doc = parse_pdf("layoffs.pdf", _table_pdf(_plain_header(), rows))
    paragraphs = doc.text.split("\n\n")
    for cells in rows:
        assert row_text(HEADERS, cells) in paragraphs  # the whole row, wrapped cells joined, one paragraph
    assert paragraphs[0] == "Layoff notices received in March."
    assert paragraphs[-1] == "Source: state agency."
    # The text around the table does not repeat the cells.
    for cells in rows:
        assert doc.text.count(cells[0]) == 1
        assert doc.text.count(f"Site {cells[9][-1]}") == 1


def test_two_header_rows_are_joined_into_one_name_per_column() -> None:
    header = [[("State", 1, 2), ("2023", 2, 1), ("2024", 2, 1)],
              [("Total", 1, 1), ("Change", 1, 1), ("Total", 1, 1), ("Change", 1, 1)]]
    rows = [["Texas", "14,753", "778", "15,005", "252"], ["Oklahoma", "1,200", "-15", "1,185", "-15"]]
    doc = parse_pdf("stats.pdf", _table_pdf(header, rows))
    names = ["State", "2023 Total", "2023 Change", "2024 Total", "2024 Change"]
    paragraphs = doc.text.split("\n\n")
    for cells in rows:
        assert row_text(names, cells) in paragraphs


def test_a_chunk_holds_each_row_whole() -> None:
    rows = _rows(7)  # one page: a table continued on the next page is a limit (module docstring)
    doc = parse_pdf("layoffs.pdf", _table_pdf(_plain_header(), rows))
    chunks = chunk_document(doc, max_tokens=150, overlap_tokens=20)
    assert len(chunks) > 3  # small chunks: rows must be packed, not cut
    for cells in rows:
        line = row_text(HEADERS, cells)
        start = doc.text.index(line)
        end = start + len(line)
        assert any(c.start <= start and end <= c.end for c in chunks), cells[0]
        for c in chunks:  # no chunk takes part of the row
            assert c.end <= start or c.start >= end or (c.start <= start and end <= c.end)


def test_text_pages_skip_the_table_finder() -> None:
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 5, "Plain prose, no table here. " * 40)
    pdf.line(10, 200, 200, 200)  # a rule under the text is no grid
    from pypdf import PdfReader

    page = PdfReader(io.BytesIO(bytes(pdf.output()))).pages[0]
    assert not looks_ruled(content_bytes(page))
    table_page = PdfReader(io.BytesIO(_table_pdf(_plain_header(), _rows(2)))).pages[0]
    assert looks_ruled(content_bytes(table_page))


def test_a_cell_spanning_rows_repeats_and_one_spanning_columns_is_written_once() -> None:
    # Region spans both data rows; 'n/a' spans the Q1 and Q2 columns of the second row.
    cells = [((0, 0, 10, 10), "Region"), ((10, 0, 20, 10), "Site"), ((20, 0, 30, 10), "Q1"), ((30, 0, 40, 10), "Q2"),
             ((0, 10, 10, 30), "North"), ((10, 10, 20, 20), "A"), ((20, 10, 30, 20), "5"), ((30, 10, 40, 20), "6"),
             ((10, 20, 20, 30), "B"), ((20, 20, 40, 30), "n/a")]
    headers, rows = table_grid(cells)
    assert headers == ["Region", "Site", "Q1", "Q2"]
    assert rows == [["North", "A", "5", "6"], ["North", "B", "n/a", ""]]


@pytest.mark.parametrize(("cell", "line"), [
    ("Closure\nPermanent", "Closure Permanent"),
    ("智能作业功能\n标志", "智能作业功能标志"),
    ("本 规 范 第 10 章\n10.2", "本规范第 10 章 10.2"),
])
def test_wrapped_cell_lines_join(cell: str, line: str) -> None:
    assert join_cell_lines(cell) == line


def _shared(name: str) -> bytes:
    path = SHARED_PDFS / name
    if not path.is_file():
        pytest.skip(f"{path} is not present (../shared is for development only)")
    return path.read_bytes()


def test_zh_regulations_table_comes_out_row_by_row() -> None:
    doc = parse_pdf("zh-regulations.pdf", _shared("zh-regulations.pdf"))
    paragraphs = doc.text.split("\n\n")
    rows = [p for p in paragraphs if p.startswith("职位: ")]
    assert len(rows) == 7
    assert "职位: 工会主席 | 人数: 1 | 工作职责: 全面负责工会工作" in rows
    assert "职位: 宣传委员 | 人数: 1 | 工作职责: 负责工会宣传工作" in rows
    assert "工会主席 1 全面负责工会工作" not in doc.text  # pypdf's loose line is gone
    assert "第四章 工作职责" in doc.text  # the text after the table stays


def test_zh_ship_rules_table_keeps_the_wrapped_cells_in_their_row() -> None:
    doc = parse_pdf("zh-ship-rules.pdf", _shared("zh-ship-rules.pdf"))
    rows = [p for p in doc.text.split("\n\n") if p.startswith("智能作业功能标志: ")]
    assert len(rows) == 1
    row = rows[0]
    assert row.startswith("智能作业功能标志: Dx | 功能标志含义说明: 智能疏浚 | ")
    assert "规定的一键疏浚功能" in row  # a cell of six lines, joined
    assert row.endswith("技术要求: 本规范第 10 章 10.2")
    assert "本 规 范" not in doc.text
