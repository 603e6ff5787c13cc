"""Office files (rag.ingest.office): Word, Excel, CSV and PowerPoint → Documents whose tables read
row by row under their headers, and whose bad inputs say why and what to do.

Every file is made in the test with the library that reads it (python-docx, openpyxl, python-pptx);
a test whose library is missing skips.
"""
from __future__ import annotations

import io
import zipfile

import pytest

from rag.errors import LoadError
from rag.index.store import Index
from rag.ingest.build import ingest
from rag.ingest.chunk import chunk_document, estimate_tokens
from rag.ingest.parse import content_kind, parse
from rag.ingest.rows import is_row
from tests.conftest import write_docs

LAYOFFS = [
    ["Company", "Employees", "Type", "Notice date"],
    ["Aramark Healthcare", "53", "Closure Permanent", "2024-03-01"],
    ["Sodexo Dining. Unit 4", "12", "Layoff Temporary", "2024-03-08"],  # a period inside a cell
    ["Compass Group", "140", "Closure Permanent", "2024-04-15"],
]


def rows_of(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if is_row(p)]


def assert_load_error(err: LoadError, source: str, reason_start: str) -> None:
    assert err.path == source
    assert err.reason.startswith(reason_start), err.reason
    assert err.fix, "every error must say how to fix it"


def load_error(source: str, data: bytes) -> LoadError:
    with pytest.raises(LoadError) as info:
        parse(source, data)
    return info.value


# ------------------------------------------------------------------------------------------ Word


def make_docx(*, title: str = "Layoff notices 2024", hash_line: bool = False) -> bytes:
    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.core_properties.title = title
    d.add_heading("Notices", level=1)
    d.add_paragraph("The state publishes every notice it receives under the WARN Act.")
    d.add_heading("March and April", level=2)
    table = d.add_table(rows=len(LAYOFFS), cols=len(LAYOFFS[0]))
    for r, row in enumerate(LAYOFFS):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_paragraph("Dates are those of the notice, not of the layoff.")
    d.add_paragraph("First item", style="List Bullet")
    if hash_line:
        d.add_paragraph("# 5 is the form number, not a heading")
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def test_docx_headings_paragraphs_and_table_rows_with_their_headers():
    doc = parse("warn.docx", make_docx())
    assert doc.kind == "docx" and doc.title == "Layoff notices 2024" and not doc.paginated
    assert rows_of(doc.text) == [
        "Company: Aramark Healthcare | Employees: 53 | Type: Closure Permanent | Notice date: 2024-03-01",
        "Company: Sodexo Dining. Unit 4 | Employees: 12 | Type: Layoff Temporary | Notice date: 2024-03-08",
        "Company: Compass Group | Employees: 140 | Type: Closure Permanent | Notice date: 2024-04-15",
    ]
    assert "- First item" in doc.text.split("\n")
    chunks = chunk_document(doc)
    table_chunk = next(c for c in chunks if "Aramark" in c.text)
    assert table_chunk.heading_path == ("Notices", "March and April")
    assert next(c for c in chunks if "WARN Act" in c.text).heading_path == ("Notices",)


def test_a_body_line_that_looks_like_a_heading_stays_body_text():
    doc = parse("form.docx", make_docx(hash_line=True))
    chunk = next(c for c in chunk_document(doc) if "form number" in c.text)
    assert chunk.heading_path == ("Notices", "March and April")  # not a new section '5 is the form…'


def test_docx_title_falls_back_to_the_first_heading():
    assert parse("warn.docx", make_docx(title="")).title == "Notices"


@pytest.mark.parametrize("max_tokens", [30, 45, 64, 200])
def test_a_chunk_never_splits_a_row(max_tokens):
    doc = parse("warn.docx", make_docx())
    rows = rows_of(doc.text)
    assert all(estimate_tokens(r) <= 30 for r in rows)
    chunks = chunk_document(doc, max_tokens=max_tokens, overlap_tokens=max_tokens // 3)
    for chunk in chunks:
        for piece in chunk.text.split("\n\n"):
            if "Company:" in piece or "Employees:" in piece:
                assert piece in rows, (max_tokens, piece)  # whole rows only, overlap included
    found = {p for c in chunks for p in c.text.split("\n\n")}
    assert set(rows) <= found  # and every row is in some chunk


@pytest.mark.parametrize("max_tokens", [8, 12, 20])
def test_a_row_longer_than_a_chunk_is_cut_between_cells(max_tokens):
    doc = parse("warn.docx", make_docx())
    cells = {cell for row in rows_of(doc.text) for cell in row.split(" | ")}
    for chunk in chunk_document(doc, max_tokens=max_tokens, overlap_tokens=0):
        for piece in chunk.text.split("\n\n"):
            if "Company:" in piece or "Employees:" in piece:
                parts = [p.strip(" |") for p in piece.split(" | ")]
                assert set(parts) <= cells, (max_tokens, piece)


def test_encrypted_docx_is_reported_with_the_fix():
    msoffcrypto = pytest.importorskip("msoffcrypto")
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = io.BytesIO(make_docx())
    locked = io.BytesIO()
    OOXMLFile(plain).encrypt("secret", locked)
    assert msoffcrypto.OfficeFile(io.BytesIO(locked.getvalue())).is_encrypted()
    err = load_error("locked.docx", locked.getvalue())
    assert_load_error(err, "locked.docx", "encrypted Word file (password required)")
    assert "remove the password" in err.fix
    # the upload refuses it for the same reason
    assert content_kind(locked.getvalue(), "locked.docx") == (None, "encrypted Word file (password required)")


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("cut.docx", lambda: make_docx()[:2000], "corrupt or truncated Word file"),
    ("empty-zip.docx", lambda: _zip({"hello.txt": b"hi"}), "not a Word file: the zip has no word/document.xml"),
    ("old.docx", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old binary Word format (.doc)"),
    ("cut.xlsx", lambda: make_xlsx()[:1500], "corrupt or truncated Excel file"),
    ("broken.pptx", lambda: _zip({"ppt/presentation.xml": b"<not xml"}), "corrupt PowerPoint file"),
])
def test_bad_office_files_say_why_and_what_to_do(name, data, reason):
    assert_load_error(load_error(name, data()), name, reason)


def test_a_zip_bomb_is_refused_before_it_is_unpacked(monkeypatch):
    import rag.ingest.office as office

    monkeypatch.setattr(office, "_MIN_BOMB_BYTES", 1000)  # a small bomb stands in for a 10 GB one
    bomb = _zip({"word/document.xml": b"<w/>" + b" " * 2_000_000})
    assert_load_error(load_error("bomb.docx", bomb), "bomb.docx", "the file unpacks to")


def test_an_empty_docx_has_no_text():
    docx = pytest.importorskip("docx")
    out = io.BytesIO()
    docx.Document().save(out)
    assert_load_error(load_error("blank.docx", out.getvalue()), "blank.docx", "no text")


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


# ----------------------------------------------------------------------------------- Excel, CSV


def make_xlsx() -> bytes:
    openpyxl = pytest.importorskip("openpyxl")
    import datetime as dt

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Notices"
    sheet.append(["Company", "Employees", "Type", None])
    sheet.append(["Aramark Healthcare", 53, "Closure Permanent", "no WARN"])
    sheet.append([None, None, None, None])
    sheet.append(["Compass Group", 140.0, "Closure Permanent", dt.datetime(2024, 4, 15)])
    other = book.create_sheet("Totals")
    other.append(["State", "Total"])
    other.append(["Texas", 15005])
    book.create_sheet("Empty")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xlsx_sheets_are_sections_and_rows_keep_their_headers():
    doc = parse("warn.xlsx", make_xlsx())
    assert doc.kind == "xlsx" and doc.title == "warn"
    assert rows_of(doc.text) == [
        "Company: Aramark Healthcare | Employees: 53 | Type: Closure Permanent | Column 4: no WARN",
        "Company: Compass Group | Employees: 140 | Type: Closure Permanent | Column 4: 2024-04-15",
        "State: Texas | Total: 15005",
    ]
    by_sheet = {c.heading_path: c.text for c in chunk_document(doc)}
    assert "Texas" in by_sheet[("Totals",)] and "Aramark" in by_sheet[("Notices",)]
    assert ("Empty",) not in by_sheet


@pytest.mark.parametrize(("data", "delimiter"), [
    ("Company,Employees,Type\nAramark Healthcare,53,Closure Permanent\n"
     "\"Smith, Jones & Co\",7,\"Layoff\nTemporary\"\n", ","),
    ("Company;Employees;Type\r\nAramark Healthcare;53;Closure Permanent\r\n"
     "\"Smith, Jones & Co\";7;\"Layoff\nTemporary\"\r\n", ";"),
])
def test_csv_rows_under_the_header_row(data, delimiter):
    doc = parse("warn.csv", ("\ufeff" + data).encode("utf-8"))
    assert doc.kind == "csv", delimiter
    assert rows_of(doc.text) == ["Company: Aramark Healthcare | Employees: 53 | Type: Closure Permanent",
                                 "Company: Smith, Jones & Co | Employees: 7 | Type: Layoff Temporary"]


def test_csv_in_a_legacy_encoding():
    data = "城市,人数\n上海,53\n北京,12\n".encode("gb18030")
    assert rows_of(parse("cities.csv", data).text) == ["城市: 上海 | 人数: 53", "城市: 北京 | 人数: 12"]


def test_content_kind_tells_office_zips_apart():
    assert content_kind(make_docx(), "a.docx") == ("docx", "")
    assert content_kind(make_xlsx(), "a.xlsx") == ("xlsx", "")
    assert content_kind(make_docx(), "a.xlsx") == ("docx", "")  # the upload check then asks for a rename
    assert content_kind(_zip({"a.txt": b"x"}), "a.docx")[0] is None
    assert content_kind(b"a,b\n1,2\n", "t.csv") == ("csv", "")


# ------------------------------------------------------------------------------------ PowerPoint


def make_pptx() -> bytes:
    pptx = pytest.importorskip("pptx")
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
    slide.shapes.title.text = "Harbour works"
    slide.placeholders[1].text = "Dredging of the north basin\nSurvey of the channel"
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Costs"
    table = slide.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([["Item", "Cost"], ["Dredging", "4.2 M€"], ["Survey", "0.3 M€"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    deck.slides.add_slide(deck.slide_layouts[6])  # blank: no page
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def test_pptx_slides_are_pages_with_their_titles_and_tables():
    doc = parse("works.pptx", make_pptx())
    assert doc.kind == "pptx" and doc.paginated and doc.title == "Harbour works"
    assert [p.number for p in doc.pages] == [1, 2]
    assert "Survey of the channel" in doc.pages[0].text
    assert rows_of(doc.pages[1].text) == ["Item: Dredging | Cost: 4.2 M€", "Item: Survey | Cost: 0.3 M€"]
    costs = next(c for c in chunk_document(doc) if "Dredging | Cost" in c.text)
    assert costs.heading_path == ("Costs",) and costs.pages == (2,)


# ----------------------------------------------------------------------------------------- ingest


def test_office_files_are_ingested_and_found(tmp_path, make_cfg, fake_embedder):
    from rag.answer.retrieve import Retriever

    folder = write_docs(tmp_path / "docs", {"warn.docx": make_docx(), "warn.xlsx": make_xlsx(),
                                            "works.pptx": make_pptx(), "cities.csv": "City,People\nTurin,8\n",
                                            "locked.docx": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64)})
    cfg = make_cfg()
    report = ingest(folder, cfg, embedder=fake_embedder)
    assert sorted(report.new) == ["cities.csv", "warn.docx", "warn.xlsx", "works.pptx"]
    assert [(f.source, f.reason.split(" (")[0]) for f in report.failed] == [
        ("locked.docx", "old binary Word format")]
    idx = Index.open(cfg.index_dir)
    hits = Retriever(idx, fake_embedder).search("Texas Total 15005", k=3)
    assert hits[0].chunk.source == "warn.xlsx" and "State: Texas | Total: 15005" in hits[0].chunk.text
    assert {f.kind for f in idx.files()} == {"csv", "docx", "xlsx", "pptx"}
    idx.close()
