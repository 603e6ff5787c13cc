"""OCR (rag.ingest.ocr): scanned pages are read, garbage text layers replaced, OCR pages marked.

Scans are made in the test (`rag.testing.scanned_pdf`: text drawn to an image with noise and a
0.6° rotation, the image alone embedded in a PDF). Tests that run the real OCR model skip when the
`ocr` extra is not installed, and are slow (several seconds a page on 2 cores).
"""
from __future__ import annotations

import random

import pytest

from eval.metrics.ocr import char_error_rate
from rag.answer.retrieve import Retriever
from rag.cli.ask import format_sources
from rag.errors import LoadError
from rag.index.store import Index
from rag.ingest import ocr as ocr_module
from rag.ingest.build import ingest
from rag.ingest.ocr import QUALITY_THRESHOLD, needs_ocr, ocr_available, text_quality
from rag.ingest.parse import parse
from rag.ingest.pdf import FIX_OCR
from rag.records import Answer, Chunk, Citation, Hit
from rag.testing import cjk_font, scan_image, scanned_pdf
from tests.conftest import shared_path, write_docs

ENGLISH = ("Retrieval-augmented generation combines a search step with a language model. The retriever "
           "finds passages that are likely to contain the answer, and the generator writes a response that "
           "cites them. In our experiments we measured recall at ten on a laptop with two cores.")
CHINESE = ("检索增强生成把搜索步骤和语言模型结合起来。检索器找到可能包含答案的段落，生成器写出引用这些段落的回答。"
           "在实验中，我们测量了前十召回率和有依据句子的比例。")
JUNK = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!|#@$%&*~^"

needs_engine = pytest.mark.skipif(not ocr_available(), reason="the 'ocr' extra (rapidocr) is not installed")


def garble(text: str, share: float, seed: int = 0) -> str:
    """A bad OCR layer: `share` of the characters replaced by junk letters, digits and signs."""
    rng = random.Random(seed)
    return "".join(rng.choice(JUNK) if not c.isspace() and rng.random() < share else c for c in text)


def squash(text: str) -> str:
    return "".join(text.split())


@pytest.fixture(scope="module")
def ocr():
    if not ocr_available():
        pytest.skip("the 'ocr' extra (rapidocr) is not installed")
    return ocr_module.load_ocr()


@pytest.fixture(scope="module")
def zh_font():
    font = cjk_font()
    if font is None:
        pytest.skip("no font with Chinese glyphs (fc-list :lang=zh); apt-get install fonts-wqy-microhei")
    return font


# --- the quality gate (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize("text", [ENGLISH, CHINESE, "Q4_K_M needs 4.4 GB; LLMs (e.g. GPT-4) cite [1][2].",
                                  "score(d) = Σ 1 / (k + rank_i(d)), k = 60 ≈ 0.0323"])
def test_clean_text_layers_pass_the_gate(text: str) -> None:
    assert text_quality(text) >= 0.95 and not needs_ocr(text)


@pytest.mark.parametrize("text", [ENGLISH, CHINESE])
def test_a_layer_with_a_third_of_its_characters_garbled_fails_the_gate(text: str) -> None:
    bad = garble(text, 0.3)
    assert text_quality(bad) < QUALITY_THRESHOLD and needs_ocr(bad)


def test_the_gate_orders_layers_by_how_garbled_they_are() -> None:
    scores = [text_quality(garble(ENGLISH, share)) for share in (0.0, 0.1, 0.3, 0.6)]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0


def test_rare_characters_count_against_a_chinese_layer() -> None:
    rare = "".join(chr(0x3400 + i * 37) for i in range(40))  # CJK extension A: no everyday text uses these
    assert text_quality(rare) < 0.1 and text_quality(CHINESE) == 1.0


# --- reading scans -------------------------------------------------------------------------------


@needs_engine
@pytest.mark.slow
def test_a_scanned_english_page_is_read_with_cer_at_most_5_percent(ocr) -> None:
    doc = parse("scan.pdf", scanned_pdf([ENGLISH]), ocr=ocr)
    assert [(p.number, p.ocr) for p in doc.pages] == [(1, True)]
    assert char_error_rate(" ".join(ENGLISH.split()), " ".join(doc.text.split())) <= 0.05


@needs_engine
@pytest.mark.slow
def test_a_scanned_chinese_page_is_read_with_cer_at_most_10_percent(ocr, zh_font) -> None:
    doc = parse("扫描.pdf", scanned_pdf([CHINESE], font=zh_font), ocr=ocr)
    assert doc.pages[0].ocr
    assert char_error_rate(squash(CHINESE), squash(doc.text)) <= 0.10


def test_without_ocr_a_scan_fails_with_the_old_clear_reason() -> None:
    with pytest.raises(LoadError) as info:
        parse("scan.pdf", scanned_pdf(["Some text."]))
    assert info.value.reason == "no text layer (scanned images?)" and info.value.fix == FIX_OCR
    assert "ocr = true" in FIX_OCR and ".[ocr]" in FIX_OCR


def garbage_layer_pdf(text: str, layer: str) -> bytes:
    """A scan of `text` with an invisible text layer `layer` over it, as a bad OCR tool leaves it."""
    from fpdf import FPDF
    from fpdf.enums import TextMode

    img = scan_image(text)
    w, h = img.width * 72 / 200, img.height * 72 / 200
    pdf = FPDF(unit="pt")
    pdf.set_auto_page_break(False)  # the layer stays on the scan's page
    pdf.add_page(format=(w, h))
    pdf.image(img, x=0, y=0, w=w, h=h)
    pdf.set_font("Helvetica", size=6)
    pdf.text_mode = TextMode.INVISIBLE
    pdf.set_xy(20, 20)
    pdf.multi_cell(w - 40, 7, layer)
    return bytes(pdf.output())


@needs_engine
@pytest.mark.slow
def test_a_garbage_text_layer_is_replaced_by_ocr_not_indexed(ocr) -> None:
    data = garbage_layer_pdf(ENGLISH, garble(ENGLISH, 0.3))
    assert needs_ocr(parse("bad-layer.pdf", data).text)  # without OCR the junk would be indexed
    doc = parse("bad-layer.pdf", data, ocr=ocr)
    assert doc.pages[0].ocr
    assert char_error_rate(" ".join(ENGLISH.split()), " ".join(doc.text.split())) <= 0.05


# --- through the ingest: searchable, marked, counted; off means the old failure ---------------------


@needs_engine
@pytest.mark.slow
def test_a_scan_is_indexed_through_ocr_marked_and_counted(tmp_path, make_cfg, fake_embedder) -> None:
    folder = write_docs(tmp_path / "docs", {"scan.pdf": scanned_pdf(["Cheap text.", ENGLISH]),
                                            "notes.md": "# Notes\n\nNothing about retrieval here.\n"})
    cfg = make_cfg()
    seen: list[tuple[int, int]] = []
    report = ingest(folder, cfg, embedder=fake_embedder,
                    progress=lambda stage, done, total: seen.append((done, total)) if stage == "ocr" else None)
    assert report.failed == [] and sorted(report.new) == ["notes.md", "scan.pdf"]
    assert report.ocr_pages == 2 and seen[-1] == (2, 2) and "2 read by OCR" in report.summary()
    idx = Index.open(cfg.index_dir)
    hits = Retriever(idx, fake_embedder).search("retriever finds passages answer", k=2)
    assert hits[0].chunk.source == "scan.pdf" and 2 in hits[0].chunk.pages
    assert hits[0].chunk.ocr_pages == hits[0].chunk.pages  # both pages were scans
    assert all(c.ocr_pages == () for c in idx.source_chunks("notes.md"))


def test_ocr_off_gives_the_old_no_text_layer_failure(tmp_path, make_cfg, fake_embedder) -> None:
    folder = write_docs(tmp_path / "docs", {"scan.pdf": scanned_pdf(["Some text."]), "ok.md": "# Ok\n\nFine.\n"})
    report = ingest(folder, make_cfg(ocr=False), embedder=fake_embedder)
    assert [(f.source, f.reason, f.fix) for f in report.failed] == [
        ("scan.pdf", "no text layer (scanned images?)", FIX_OCR)]
    assert report.ocr_pages == 0


def test_without_the_extra_a_scan_fails_and_says_to_install_it(tmp_path, make_cfg, fake_embedder,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(ocr_module, "ocr_available", lambda: False)
    folder = write_docs(tmp_path / "docs", {"scan.pdf": scanned_pdf(["Some text."]), "ok.md": "# Ok\n\nFine.\n"})
    report = ingest(folder, make_cfg(), embedder=fake_embedder)
    assert [(f.source, f.reason) for f in report.failed] == [("scan.pdf", "no text layer (scanned images?)")]
    assert "pip install -e '.[ocr]'" in report.failed[0].fix


@needs_engine
@pytest.mark.slow
def test_the_shared_image_only_scan_is_indexed_searchable_and_answers(tmp_path, make_cfg, fake_embedder) -> None:
    scan = shared_path("bad-inputs", "image-only-scan.pdf")
    folder = write_docs(tmp_path / "docs", {"scan.pdf": scan.read_bytes()})
    cfg = make_cfg()
    report = ingest(folder, cfg, embedder=fake_embedder)
    assert report.failed == [] and report.new == ["scan.pdf"] and report.ocr_pages == 8
    idx = Index.open(cfg.index_dir)
    chunks = idx.source_chunks("scan.pdf")
    assert all(c.ocr_pages for c in chunks)
    assert sum("使用价值" in c.text for c in chunks) >= 3  # the scan is a chapter on use value
    hits = Retriever(idx, fake_embedder).search("商品的使用价值", k=3)
    assert hits and "使用价值" in hits[0].chunk.text
    idx.close()
    from rag.pipeline import Pipeline

    answer = Pipeline(cfg, embedder=fake_embedder, generator=None, reranker=None).ask("什么是商品的使用价值？")
    assert not answer.refused and "使用价值" in answer.text  # answered from the OCR text, in extractive mode
    assert answer.citations and all(c.source == "scan.pdf" for c in answer.citations)  # OCR chunks, all of them


# --- citations say OCR ------------------------------------------------------------------------------


def test_a_citation_of_an_ocr_page_says_so() -> None:
    scanned = Chunk("c1", "scan.pdf", "Text read from a scan.", 0, 22, (3,), ocr_pages=(3,))
    typed = Chunk("c2", "typed.pdf", "Text from a text layer.", 0, 23, (5,))
    answer = Answer(question="q", query="q", mode="extractive", text="A [1]. B [2].", raw_text="",
                    citations=(Citation(1, "c1", "scan.pdf", (3,), "Text read from a scan."),
                               Citation(2, "c2", "typed.pdf", (5,), "Text from a text layer.")),
                    sources=(Hit(scanned, 1.0), Hit(typed, 0.9)))
    out = format_sources(answer)
    assert "[1] scan.pdf p. 3, OCR" in out and "[2] typed.pdf p. 5\n" in out


@needs_engine
@pytest.mark.slow
def test_the_shared_mojibake_pdf_is_read_by_ocr_instead_of_failing(ocr) -> None:
    data = shared_path("bad-inputs", "mojibake-encoding.pdf").read_bytes()
    with pytest.raises(LoadError, match="broken font encoding"):
        parse("mojibake.pdf", data)  # without OCR: the old report
    doc = parse("mojibake.pdf", data, ocr=ocr)
    assert doc.pages[0].ocr and "基因" in doc.text and "FHIT" in doc.text  # the glyphs are right, the map was not
