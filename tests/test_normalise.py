"""Text normalisation for search: a Chinese PDF whose font maps glyphs to radical look-alikes
(Kangxi radicals, the CJK Radicals Supplement) is found by the normal characters, and so is a
query typed with them; so are CJK compatibility ideographs and full-width digits and letters, on
the BM25 side and the dense side, while the chunk users read keeps the text as written.

The PDF is drawn with a CJK font (WenQuanYi, when the system has it) and its ToUnicode map is then
rewritten the way such fonts ship: the glyph of 见 maps to ⻅ (U+2EC5), 骨 to ⻣, 角 to ⻆, 用 to ⽤.
"""
from __future__ import annotations

import hashlib
import io
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from rag.index.tokenize import tokenize
from rag.ingest.parse import parse
from rag.testing import FakeEmbedder
from rag.text import RADICAL_TABLE, fold, fold_radicals, normalise

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


# --- through ingest and search: the index finds the folded form, users see the text as written ----


class RawCharEmbedder(FakeEmbedder):
    """Hashes the characters it is given as they are (bigrams, no folding of its own), like a model
    whose vocabulary lacks look-alikes: only text normalised before embedding makes '常⻅' meet '常见'."""

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            chars = [c for c in t if not c.isspace()]
            for a, b in zip(chars, chars[1:]):
                h = int.from_bytes(hashlib.blake2b((a + b).encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0
            out[i, 0] += 1e-3  # never all zeros
        return out


OTHERS = {
    "memory.md": "# 内存\n\n显存不够时可以减小上下文，或者换更小的量化。The runtime also needs compute buffers.\n",
    "bm25.txt": "BM25 ranks documents by term frequency. 倒排索引为每个词保存一个文档列表。\n",
}

# (case, text as the file has it, the same words as a user types them, the original that must be shown)
CASES = [
    ("kangxi radicals", "# 骨架\n\n常⻅的⻣架结构⽤于计算键⻆。\n",
     "常见的骨架结构用于计算键角", "常⻅的⻣架结构⽤于计算键⻆"),
    ("compatibility ideographs", "# 领域\n\n\uf9b4域模型\uf900然不同，\uf9b4域专家更重要。\n",
     "領域模型豈然不同", "\uf9b4域模型\uf900然不同"),
    ("compatibility ideographs typed by the user", "# 领域\n\n領域模型豈然不同，領域专家更重要。\n",
     "\uf9b4域模型\uf900然不同", "領域模型豈然不同"),
    ("full-width digits and letters", "# Ｑ４\n\nＱ４＿Ｋ＿Ｍ 的 ７Ｂ 模型需要 ４.４ ＧＢ 内存。\n",
     "Q4_K_M 7B 4.4 GB", "Ｑ４＿Ｋ＿Ｍ 的 ７Ｂ 模型需要 ４.４ ＧＢ"),
    ("full-width typed by the user", "# Q4\n\nQ4_K_M quantization needs 4.4 GB for a 7B model.\n",
     "Ｑ４＿Ｋ＿Ｍ ４.４ ＧＢ", "Q4_K_M quantization needs 4.4 GB"),
]


@pytest.mark.parametrize(("case", "written", "typed", "shown"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("mode", ["bm25", "dense"])
def test_a_search_finds_the_folded_form_and_shows_the_text_as_written(tmp_path, make_cfg, case, written, typed,
                                                                      shown, mode):
    from rag.answer.retrieve import Retriever
    from rag.index.store import Index
    from rag.ingest.build import ingest
    from tests.conftest import write_docs

    folder = write_docs(tmp_path / "docs", {"target.md": written, **OTHERS})
    cfg = make_cfg()
    embedder = RawCharEmbedder()
    report = ingest(folder, cfg, embedder=embedder)
    assert report.failed == [] and report.files == 3
    idx = Index.open(cfg.index_dir)
    try:
        hits = Retriever(idx, embedder).search(typed, k=3, mode=mode)
    finally:
        idx.close()
    assert hits and hits[0].chunk.source == "target.md", [h.chunk.source for h in hits]
    # The chunk users read is the file's text, not the folded one. Decoding applies NFC (as every
    # text is), which maps a compatibility ideograph to its canonical equivalent: the same character
    # by Unicode's definition; NFKC's folds (full-width to ASCII, radicals) are for searching only.
    as_read = unicodedata.normalize("NFC", shown)
    assert as_read in hits[0].chunk.text
    assert normalise(as_read) == as_read or normalise(as_read) not in hits[0].chunk.text


def test_the_embedder_reads_the_normalised_text_of_a_chunk():
    from rag.ingest.build import index_text
    from rag.records import Chunk

    chunk = Chunk(id="c", source="a.md", text="常⻅ ＧＧＵＦ \uf9b4域", start=0, end=10, pages=(1,),
                  heading_path=("Ｑ４",), ordinal=0)
    assert index_text(chunk, "") == "Q4\n常见 GGUF 領域"
    assert chunk.text == "常⻅ ＧＧＵＦ \uf9b4域"


@pytest.mark.parametrize(("typed", "meant"), [
    ("\uf900\uf9b4", "豈領"), ("\U0002f800", "丽"), ("ＧＧＵＦ　Ｑ４＿Ｋ＿Ｍ", "GGUF Q4_K_M"), ("１２８Ｋ", "128K"),
    ("⽤⼿", "用手"), ("ｶﾀｶﾅ", "カタカナ"),
])
def test_normalise_folds_each_case_and_keeps_case(typed, meant):
    assert normalise(typed) == meant
    assert fold(typed) == meant.lower()
    assert tokenize(typed) == tokenize(meant)


def test_a_new_normalisation_version_re_embeds_every_file(tmp_path, make_cfg, monkeypatch):
    """An index built before normalisation (or with another version of it) has vectors of another
    text form: the next ingest processes every file again instead of mixing the two forms."""
    import rag.text
    from rag.index.store import Index
    from rag.ingest.build import ingest
    from tests.conftest import write_docs

    folder = write_docs(tmp_path / "docs", {"target.md": CASES[0][1], **OTHERS})
    cfg = make_cfg()
    first = ingest(folder, cfg, embedder=FakeEmbedder())
    assert ingest(folder, cfg, embedder=FakeEmbedder()).noop
    monkeypatch.setattr(rag.text, "NORMALISE_VERSION", rag.text.NORMALISE_VERSION + "-next")
    second = ingest(folder, cfg, embedder=FakeEmbedder())
    assert not second.noop and second.generation != first.generation
    assert second.unchanged == 0 and sorted(second.changed) == sorted(["target.md", *OTHERS])
    idx = Index.open(cfg.index_dir)
    try:
        assert idx.manifest["settings"]["normalise"] == rag.text.NORMALISE_VERSION
    finally:
        idx.close()
