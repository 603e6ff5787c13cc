"""Text normalisation for search: a Chinese PDF whose font maps glyphs to radical look-alikes
(Kangxi radicals, the CJK Radicals Supplement) is found by the normal characters, and so is a
query typed with them.

The PDF is drawn with a CJK font (WenQuanYi, when the system has it) and its ToUnicode map is then
rewritten the way such fonts ship: the glyph of 见 maps to ⻅ (U+2EC5), 骨 to ⻣, 角 to ⻆, 用 to ⽤.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from rag.index.tokenize import tokenize
from rag.ingest.parse import parse
from rag.text import RADICAL_TABLE, fold, fold_radicals

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
TEXT = "常见的骨架结构，键角为一百零九度。用于计算。"
LOOKALIKES = {"见": "⻅", "骨": "⻣", "角": "⻆", "用": "⽤"}


def radical_pdf() -> bytes:
    if not CJK_FONT.exists():
        pytest.skip(f"{CJK_FONT} is not installed (fonts-wqy-microhei)")
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter

    pdf = FPDF()
    pdf.add_font("wqy", fname=str(CJK_FONT))
    pdf.set_font("wqy", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, TEXT)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(pdf.output()))))
    for font in writer.pages[0]["/Resources"]["/Font"].values():
        cmap = font.get_object()["/ToUnicode"].get_object()
        data = cmap.get_data()
        for plain, lookalike in LOOKALIKES.items():
            data = data.replace(f"<{ord(plain):04X}>".encode(), f"<{ord(lookalike):04X}>".encode())
        cmap.set_data(data)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_the_test_pdf_really_has_a_radical_text_layer():
    from pypdf import PdfReader

    raw = PdfReader(io.BytesIO(radical_pdf())).pages[0].extract_text()
    assert "键⻆" in raw and "⻣架" in raw and "⽤于" in raw and "键角" not in raw


def test_radical_lookalikes_in_a_pdf_become_the_normal_characters():
    doc = parse("kangxi.pdf", radical_pdf())
    assert "".join(doc.text.split()) == TEXT
    assert set(tokenize("键角")) <= set(tokenize(doc.text))  # searching 键角 finds it


@pytest.mark.parametrize(("typed", "meant"), [
    ("键⻆", "键角"), ("常⻅", "常见"), ("⻣架", "骨架"), ("⽤于", "用于"), ("⻳", "龟"), ("⻢上", "马上"),
])
def test_fold_maps_lookalikes_for_queries_and_every_format(typed, meant):
    assert fold(typed) == meant and fold_radicals(typed) == meant
    assert tokenize(typed) == tokenize(meant)


def test_the_radical_table_maps_only_radicals_to_ideographs():
    import unicodedata

    for code, ideograph in RADICAL_TABLE.items():
        assert 0x2E80 <= code <= 0x2EFF
        assert unicodedata.name(ideograph).startswith("CJK UNIFIED IDEOGRAPH"), hex(code)


def test_text_without_radicals_is_returned_as_it_is():
    text = "No radicals here, 常见 ones only."
    assert fold_radicals(text) is text
