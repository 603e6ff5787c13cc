"""PDF text as people's PDFs lay it out (rag/ingest/cjk_layout.py, rag/ingest/furniture.py, the
title in rag/ingest/pdf.py): Chinese lines wrapped by the layout come back joined without stray
spaces, running headers and footers leave the pages, the title is what page 1 shows largest.

The PDFs are drawn here with fpdf2, so the text each should give back is known exactly.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from rag.ingest.chunk import chunk_document
from rag.ingest.cjk_layout import drop_layout_spaces, join_cjk_wraps
from rag.ingest.pdf import parse_pdf

fpdf = pytest.importorskip("fpdf", reason="fpdf2 (dev extra) draws the test PDFs")

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
SHARED_PDFS = Path(__file__).resolve().parents[2] / "shared" / "pdfs"

HEADING = "第一章 总则"
PARAGRAPHS = [
    "公司发布2021年业绩预告，预计全年净利润同比增长百分之三十以上，主要原因是涉及海外市场的业务收入"
    "大幅增加，同时成本控制取得明显成效。本公司将继续推进数字化转型，加大研发投入，提升核心竞争力。",
    "工会经费审查委员会委员名额一般为3至7人，设主任委员1人，候选人应熟悉工会财务和审计业务，"
    "熟悉国家财政政策及相关规定，办事公道，坚持原则，并在职工中有一定威信和号召力。",
]
ITEMS = ["（一）短的列表项。", "（二）另一个列表项。"]
ENGLISH = ("Mixed pages keep English words apart: a long English paragraph wraps over two lines "
           "of this page and every word stays a word after the lines are joined.")


def _cjk_pdf(blocks: list[str]) -> bytes:
    if not CJK_FONT.exists():
        pytest.skip(f"{CJK_FONT} is not installed (apt-get install fonts-wqy-microhei)")
    pdf = fpdf.FPDF()
    pdf.add_font("wqy", fname=str(CJK_FONT))
    pdf.set_font("wqy", size=12)
    pdf.add_page()
    for block in blocks:
        pdf.multi_cell(0, 8, block, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _raw_lines(data: bytes) -> list[str]:
    from pypdf import PdfReader

    return PdfReader(io.BytesIO(data)).pages[0].extract_text().split("\n")


def test_wrapped_chinese_paragraphs_come_back_exactly() -> None:
    data = _cjk_pdf([HEADING, *PARAGRAPHS, *ITEMS, ENGLISH])
    raw = _raw_lines(data)
    assert len(raw) > 8  # the paragraphs really wrap: each is two or three lines on the page
    lines = parse_pdf("wrapped.pdf", data).pages[0].text.split("\n")
    assert lines[:5] == [HEADING, *PARAGRAPHS, *ITEMS]  # heading, list items, last lines keep their ends
    english = " ".join(lines[5:])
    assert " ".join(english.split()) == ENGLISH  # not glued: every English word stays apart


def test_a_chinese_line_beside_a_wider_latin_line_still_joins() -> None:
    """Counted in characters an English line is twice as long as a Chinese one of the same width."""
    data = _cjk_pdf([PARAGRAPHS[0], ENGLISH])
    assert parse_pdf("mixed.pdf", data).pages[0].text.split("\n")[0] == PARAGRAPHS[0]


def test_chunks_show_no_space_where_a_chinese_line_wrapped() -> None:
    doc = parse_pdf("wrapped.pdf", _cjk_pdf([HEADING, *PARAGRAPHS]))
    shown = " ".join(" ".join(c.text.split()) for c in chunk_document(doc, max_tokens=2000))
    assert "业绩预告" in shown and "涉及海外" in shown and "业务收入" in shown
    assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", shown.replace(HEADING, ""))


def _spaced(data: bytes, line: int, gaps: set[int] | None) -> bytes:
    """The PDF with one line's glyphs drawn apart, as justified layouts do: a TJ offset of 0.4 em
    before glyph i for i in `gaps` (before every glyph when None)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    contents = writer.pages[0].get_contents()
    assert contents is not None
    stream = contents.get_data()
    shows = list(re.finditer(rb"\((.*?)\) Tj", stream, re.S))
    m = shows[line]
    escapes = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
    raw = re.sub(rb"\\(.)", lambda e: escapes.get(e.group(1), e.group(1)), m.group(1), flags=re.S)
    glyphs = [raw[i:i + 2] for i in range(0, len(raw), 2)]

    def literal(glyph: bytes) -> bytes:
        for plain, escaped in ((b"\\", b"\\\\"), (b"(", b"\\("), (b")", b"\\)"), (b"\r", b"\\r"), (b"\n", b"\\n")):
            glyph = glyph.replace(plain, escaped)
        return b"(" + glyph + b")"

    parts = [literal(glyphs[0])]
    for i, glyph in enumerate(glyphs[1:], 1):
        if gaps is None or i in gaps:
            parts.append(b"-400")
        parts.append(literal(glyph))
    stream = stream[:m.start()] + b"[" + b" ".join(parts) + b"] TJ" + stream[m.end():]
    contents.set_data(stream)
    writer.pages[0].replace_contents(contents)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_gaps_of_justified_chinese_layout_are_not_spaces() -> None:
    text = "本规范第十章的要求"
    sentence = "公司发布年业绩预告，涉及海外市场。"
    data = _cjk_pdf([HEADING, text, sentence])
    # the later line first, so the earlier one's Tj index holds: '本 规 范 …', '年业 绩预告，涉 及'
    data = _spaced(_spaced(data, 2, {6, 11}), 1, None)
    raw = _raw_lines(data)
    assert raw[1] == "本 规 范 第 十 章 的 要 求" and "业 绩" in raw[2] and "涉 及" in raw[2]
    assert parse_pdf("justified.pdf", data).pages[0].text.split("\n") == [HEADING, text, sentence]


@pytest.mark.parametrize(("text", "expected"), [
    ("第三章 职工代表大会与工会委员会", "第三章 职工代表大会与工会委员会"),  # a heading's space
    ("职位 人数 工作职责", "职位 人数 工作职责"),  # a table without rules: its columns
    ("附件一 申请表，见下文。", "附件一 申请表，见下文。"),  # a leading label
    ("年业 绩预告，涉 及海外。", "年业绩预告，涉及海外。"),
    ("English words stay, 中文 also.", "English words stay, 中文 also."),  # no Chinese punctuation
])
def test_only_layout_spaces_between_ideographs_go(text: str, expected: str) -> None:
    assert drop_layout_spaces(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("长" * 30 + "\n续行。", "长" * 30 + "续行。"),
    ("长" * 29 + "见\n2021年。", "长" * 29 + "见2021年。"),  # beside a digit: no space
    ("长" * 29 + "用\nPython。", "长" * 29 + "用 Python。"),  # beside a Latin letter: a space
    ("长" * 29 + "。\n下一段。", "长" * 29 + "。\n下一段。"),  # a sentence ended: maybe the paragraph too
    ("长" * 29 + "：\n（一）项。", "长" * 29 + "：\n（一）项。"),  # a list follows
    ("短行\n" + "长" * 30, "短行\n" + "长" * 30),  # a short line is a real end
    ("a" * 60 + "\nb" + "长" * 29, "a" * 60 + "\nb" + "长" * 29),  # Latin to Latin: untouched
])
def test_wraps_join_only_inside_chinese_sentences(text: str, expected: str) -> None:
    assert join_cjk_wraps(text) == expected


@pytest.mark.parametrize("name", ["zh-regulations.pdf", "zh-ship-rules.pdf"])
def test_shared_chinese_pdfs_join_their_wraps_and_keep_their_lines(name: str) -> None:
    path = SHARED_PDFS / name
    if not path.exists():
        pytest.skip(f"{path} is not present (public test data lives beside the checkout)")
    text = parse_pdf(name, path.read_bytes()).text
    lines = text.split("\n")
    if name == "zh-regulations.pdf":
        assert "候选人应符合以下条件：" in text and "由符合相应条件的女性工会委员担任。" in text
        assert "第三章 职工代表大会与工会委员会" in lines and "(三) 有较强的参政议事能力。" in lines
    else:
        assert "智能能效管理" in text and "只能选择一个" in text and "可有多个功能补充标志" in text
        assert "1.4.2 功能标志的含义如下：" in lines and "1.4 智能船舶附加标志" in lines
    # no Chinese line still ends mid-sentence before a Chinese line, unless it is short
    for prev, line in zip(lines, lines[1:]):
        if re.search(r"[\u4e00-\u9fff，]$", prev) and re.match(r"[\u4e00-\u9fff]", line):
            assert len(prev) < 30, (prev, line)


# --- running headers and footers; the title --------------------------------------------------------

HEADER = "Acme Corp Annual Report 2024"
TITLE = "Quarterly Results of Acme"
REPEATED = "All figures are in thousands of euros."


REGIONS = ["Alsace", "Brittany", "Corsica", "Dauphine", "Gascony", "Lorraine", "Normandy", "Picardy",
           "Provence", "Savoy", "Touraine", "Vendee", "Anjou", "Berry", "Champagne"]


def _body(n: int) -> str:
    """A paragraph of its own on every page (body text differs in more than its numbers)."""
    region, rival = REGIONS[n % len(REGIONS)], REGIONS[(n * 7 + 3) % len(REGIONS)]
    return (f"Sales in {region} grew by {n + 3} percent over the year, ahead of {rival}, while costs "
            f"in {region} stayed flat, so the margin there widened for the {n}th quarter in a row.")


def _report_pdf(pages: int, *, meta_title: str | None = None, header: bool = True) -> bytes:
    """A report: a running header, a footer 'Page n of N' over a VerDate-style production line,
    a 20-point title on page 1, and body text with one sentence repeated mid-page on every page."""

    class Report(fpdf.FPDF):
        def header(self) -> None:
            if header:
                self.set_font("Helvetica", size=9)
                self.cell(0, 6, HEADER, new_x="LMARGIN", new_y="NEXT")
                self.ln(4)

        def footer(self) -> None:
            self.set_y(-20)
            self.set_font("Helvetica", size=9)
            self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", new_x="LMARGIN", new_y="NEXT")
            self.cell(0, 5, f"VerDate Sep 11 2014 15:49 Jan 02, 2015 Jkt 235001 PO 00000 Frm {self.page_no():05d}",
                      new_x="LMARGIN", new_y="NEXT")

    pdf = Report()
    if meta_title:
        pdf.set_title(meta_title)
    for n in range(1, pages + 1):
        pdf.add_page()
        if n == 1:
            pdf.set_font("Helvetica", size=20)
            pdf.multi_cell(0, 10, TITLE, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, _body(n), new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 6, REPEATED, new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 6, _body(n + 10), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_running_headers_and_footers_leave_the_pages_and_the_body_stays() -> None:
    data = _report_pdf(4, meta_title=HEADER)
    from pypdf import PdfReader

    assert HEADER in PdfReader(io.BytesIO(data)).pages[2].extract_text()  # the layer really has them
    doc = parse_pdf("report.pdf", data)
    assert [p.number for p in doc.pages] == [1, 2, 3, 4]
    for page in doc.pages:
        flat = _flat(page.text)
        n = page.number
        assert _body(n) in flat and _body(n + 10) in flat and REPEATED in flat  # body intact, repeat kept
        assert HEADER not in page.text and "Page " not in page.text and "VerDate" not in page.text
    chunks = chunk_document(doc, max_tokens=60)
    assert len(chunks) > 4 and not any(HEADER in c.text or "VerDate" in c.text for c in chunks)
    assert doc.title == TITLE  # the metadata names the header, which page 1 shows only as furniture


def test_a_two_page_document_keeps_its_repeated_lines() -> None:
    doc = parse_pdf("short.pdf", _report_pdf(2))
    assert all(HEADER in p.text and "Page " in p.text for p in doc.pages)


def test_the_title_is_the_largest_text_on_page_one() -> None:
    doc = parse_pdf("report.pdf", _report_pdf(3, header=False))
    assert doc.pages[0].text.startswith(TITLE)
    assert doc.title == TITLE
    plain = parse_pdf("plain.pdf", _report_pdf(1, meta_title="Slide 1"))  # junk metadata, one size…
    assert plain.title == TITLE  # …but page 1 prints the title larger than the header and body


def test_the_title_is_never_a_running_header_printed_large() -> None:
    class Big(fpdf.FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", size=24)
            self.cell(0, 12, HEADER, new_x="LMARGIN", new_y="NEXT")

    pdf = Big()
    for n in range(1, 4):
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, _body(n), new_x="LMARGIN", new_y="NEXT")
    doc = parse_pdf("big.pdf", bytes(pdf.output()))
    assert doc.title == _flat(_body(1))[:len(doc.title)] and HEADER not in doc.text


def test_furniture_is_found_at_the_edges_only() -> None:
    from rag.ingest.furniture import strip_furniture

    def page(n: int) -> str:
        body = [f"{REGIONS[(n + i) % len(REGIONS)]} line {i} of the body on this page." for i in range(10)]
        body[5] = "Figures in thousands of euros."  # repeats on every page, mid-page: content
        return "\n".join(["Federal Register / Vol. 80, No. 1", *body, f"- {n} -"])

    pages = [page(n) for n in range(1, 6)]
    out = strip_furniture(pages)
    for before, after in zip(pages, out):
        assert after.split("\n") == before.split("\n")[1:-1]
    assert strip_furniture(pages[:2]) == pages[:2]  # two pages: left alone
