"""Printed page labels: a PDF that numbers its pages 'iii' or '251' is cited by that number and
by its PDF page, the page viewer still opens the PDF page, and indexes from before labels load.

PDFs are made in the test (fpdf2 writes the pages, pypdf's writer sets /PageLabels).
"""
from __future__ import annotations

import io
import sqlite3

import pytest

from rag.cli.ask import format_sources
from rag.collection import cited_page
from rag.index.store import Index
from rag.ingest.build import ingest
from rag.ingest.chunk import chunk_document
from rag.ingest.parse import parse
from rag.pipeline import Pipeline
from rag.records import Chunk, pages_text
from rag.testing import FakeGenerator
from tests.conftest import make_pdf, write_docs

PAGES = [
    "Preface. This report covers the harbour dredging programme of the city.",
    "Contents. One chapter on costs and one on the schedule of the works.",
    "The dredging of the north basin cost 4.2 million euros in the second year.",
    "The schedule of the works ends in the spring after the survey of the channel.",
]


def with_labels(data: bytes, ranges: list[tuple[int, int, str, int]]) -> bytes:
    """`data` with /PageLabels: (first index, last index, style '/r' or '/D', first number)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    for first, last, style, start in ranges:
        writer.set_page_label(first, last, style, start=start)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# Front matter numbered i, ii; the body starts at the printed page 251.
LABELLED = [(0, 1, "/r", 1), (2, 3, "/D", 251)]


@pytest.mark.parametrize(("pages", "labels", "shown"), [
    ((3,), (), "p. 3"),
    ((3, 4), (), "p. 3-4"),
    ((1,), ("251",), "p. 251 (PDF page 1)"),
    ((3, 4), ("251", "252"), "p. 251-252 (PDF pages 3-4)"),
    ((2, 3), ("ii", "251"), "p. ii-251 (PDF pages 2-3)"),
    ((3, 4), ("3", "4"), "p. 3-4"),  # labels equal to the numbers add nothing
    ((3, 4), ("251",), "p. 3-4"),  # labels that do not line up with the pages are not guessed at
])
def test_pages_text(pages, labels, shown):
    assert pages_text(pages, labels) == shown


def test_pdf_pages_carry_their_printed_labels_beside_the_pdf_numbers():
    doc = parse("report.pdf", with_labels(make_pdf(PAGES), LABELLED))
    assert [(p.number, p.label) for p in doc.pages] == [(1, "i"), (2, "ii"), (3, "251"), (4, "252")]


def test_a_pdf_without_labels_has_none():
    doc = parse("plain.pdf", make_pdf(PAGES))
    assert [p.label for p in doc.pages] == ["", "", "", ""]
    assert all(c.page_labels == () for c in chunk_document(doc))


def test_labels_that_only_repeat_the_numbers_are_dropped():
    doc = parse("same.pdf", with_labels(make_pdf(PAGES), [(0, 3, "/D", 1)]))
    assert [p.label for p in doc.pages] == ["", "", "", ""]


def test_a_broken_label_tree_is_ignored_not_fatal():
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, NumberObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(PAGES))))
    writer._root_object[NameObject("/PageLabels")] = NumberObject(7)  # not a number tree
    out = io.BytesIO()
    writer.write(out)
    doc = parse("broken.pdf", out.getvalue())
    assert len(doc.pages) == 4 and all(p.label == "" for p in doc.pages)


def test_chunks_know_the_labels_of_their_pages():
    doc = parse("report.pdf", with_labels(make_pdf(PAGES), LABELLED))
    chunks = chunk_document(doc, max_tokens=24, overlap_tokens=0)
    by_page = {c.pages: c for c in chunks}
    dredging = next(c for c in chunks if "4.2 million" in c.text)
    assert dredging.pages == (3,) and dredging.page_labels == ("251",)
    assert dredging.label() == "report.pdf p. 251 (PDF page 3)"
    assert all(len(c.page_labels) == len(c.pages) for c in chunks), by_page
    # The viewer opens the PDF page, and shows the printed label with it.
    span = cited_page(doc, dredging, 0, 10)
    assert (span.number, span.label) == (3, "251")


@pytest.fixture
def labelled_index(tmp_path, make_cfg, fake_embedder):
    folder = write_docs(tmp_path / "docs", {"report.pdf": with_labels(make_pdf(PAGES), LABELLED),
                                            "notes.md": "# Notes\n\nThe ferry leaves at nine.\n"})
    cfg = make_cfg(abstain_threshold=0.0, chunk_tokens=24, chunk_overlap_tokens=0)  # about a chunk a page
    ingest(folder, cfg, embedder=fake_embedder)
    return folder, cfg


def test_labels_survive_the_index_and_reach_the_citation(labelled_index, fake_embedder):
    _, cfg = labelled_index
    idx = Index.open(cfg.index_dir)
    stored = [c for c in idx.source_chunks("report.pdf") if "4.2 million" in c.text]
    assert stored and stored[0].page_labels == ("251",)
    assert idx.chunk_by_id(stored[0].id) == stored[0]
    assert idx.source_chunks("notes.md")[0].page_labels == ()
    idx.close()

    gen = FakeGenerator("The dredging of the north basin cost 4.2 million euros [1].")
    ans = Pipeline(cfg, embedder=fake_embedder, generator=gen, reranker=None).ask(
        "How much did the dredging of the north basin cost?")
    assert ans.citations, ans
    c = ans.citations[0]
    assert c.source == "report.pdf" and c.pages == (3,) and c.page_labels == ("251",)
    assert "[1] report.pdf p. 251 (PDF page 3)" in format_sources(ans)


def test_an_index_from_before_labels_loads_and_is_reparsed(labelled_index, make_cfg, fake_embedder):
    """An index written before the page_labels column existed: its chunks open with no labels, and
    the next ingest parses every file again (the manifest lacks the extract version)."""
    import json

    folder, cfg = labelled_index
    idx = Index.open(cfg.index_dir)
    gen = idx.path
    idx.close()
    con = sqlite3.connect(gen / "chunks.sqlite")
    con.execute("ALTER TABLE chunks DROP COLUMN page_labels")
    con.commit()
    con.close()
    manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    del manifest["settings"]["extract"]
    (gen / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    old = Index.open(cfg.index_dir)
    chunks = old.source_chunks("report.pdf")
    assert chunks and all(isinstance(c, Chunk) and c.page_labels == () for c in chunks)
    assert old.chunks([0])[0].page_labels == ()
    old.close()

    report = ingest(folder, cfg, embedder=fake_embedder)
    assert report.unchanged == 0 and sorted(report.changed) == ["notes.md", "report.pdf"]
    new = Index.open(cfg.index_dir)
    assert any(c.page_labels == ("251",) for c in new.source_chunks("report.pdf"))
    new.close()


def test_unchanged_files_keep_their_labels_across_ingests(labelled_index, fake_embedder):
    folder, cfg = labelled_index
    (folder / "more.md").write_text("# More\n\nThe lock opens at ten.\n", encoding="utf-8")
    report = ingest(folder, cfg, embedder=fake_embedder)
    assert report.unchanged == 2 and report.new == ["more.md"]
    idx = Index.open(cfg.index_dir)
    assert any(c.page_labels == ("251",) for c in idx.source_chunks("report.pdf"))
    idx.close()
