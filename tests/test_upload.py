"""Upload safety (rag.ingest.upload) and the collection operations (rag.collection): names, types, size
limit, duplicates, never writing outside the folder."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rag.collection import DocumentError, add_documents, cited_page, delete_document, documents_folder, remove_document
from rag.errors import LoadError
from rag.ingest.decode import sniff_type
from rag.ingest.parse import FORMATS, SUFFIX_KINDS, SUPPORTED_SUFFIXES, parse, sniff_kind
from rag.ingest.upload import SavedUpload, UploadRejected, sanitize_filename, save_upload
from rag.records import Chunk, Document, Failure, Page
from tests.test_load import make_pdf
from tests.test_office import make_docx, make_pptx, make_xlsx

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40
LIMIT = 1000


@pytest.mark.parametrize("name, expected", [
    ("report.pdf", "report.pdf"),
    ("../../etc/x.pdf", "x.pdf"),
    ("/etc/passwd.txt", "passwd.txt"),
    ("..\\..\\windows\\evil.md", "evil.md"),
    (".bashrc.txt", "bashrc.txt"),
    ("..", "upload"),
    ("../", "upload"),
    ("", "upload"),
    ("a\x00b\nc.txt", "a_b_c.txt"),
    ("what?<is>|this*.html", "what__is__this_.html"),
    ("  spaced   name .md", "spaced name .md"),
    ("量化指南.pdf", "量化指南.pdf"),
])
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected


def test_sanitize_filename_bounds_length_and_keeps_suffix():
    out = sanitize_filename("a" * 500 + ".pdf")
    assert out.endswith(".pdf") and len(out) <= 120


@pytest.mark.parametrize("data, name, kind", [
    (PDF, "a.pdf", "pdf"),
    (b"  %PDF-1.7 junk before the magic", "a.pdf", "pdf"),
    (b"<!DOCTYPE html><html><body><p>hi</p></body></html>", "a.html", "html"),
    (b"<html><head><title>t</title></head></html>", "a.htm", "html"),
    (b"# Title\n\nSome <b>inline</b> HTML in Markdown is still Markdown.", "a.md", "md"),
    ("Plain text, caf\u00e9, 量化.".encode(), "a.txt", "txt"),
    ("UTF-16 text".encode("utf-16"), "a.txt", "txt"),
    (PNG, "a.pdf", None),
    (ZIP, "a.txt", None),
    (b"\x00\x01\x02\x03binary" * 20, "a.txt", None),
    (b"\x7fELF\x02\x01\x01" + b"\x00" * 50, "a.md", None),
    (b"", "a.txt", None),
])
def test_sniff_kind_decides_by_content(data, name, kind):
    assert sniff_kind(data, name) == kind


# --- the upload check and the loader agree: one table (rag.ingest.parse.FORMATS), one sniffer -------

GOOD = {  # a readable document of each kind
    "pdf": lambda: make_pdf(["Otters build their dens along quiet rivers."]),
    "html": lambda: b"<!DOCTYPE html><html><body><h1>Otters</h1><p>Otters build dens.</p></body></html>",
    "md": lambda: "# Otters\n\nOtters build dens along rivers, caf\u00e9.".encode(),
    "txt": lambda: "Otters build dens along rivers. \u6c34\u736d\u3002".encode("utf-16"),
    "docx": lambda: make_docx(),
    "xlsx": lambda: make_xlsx(),
    "csv": lambda: b"Animal,Den\nOtter,river bank\n",
    "pptx": lambda: make_pptx(),
}
DISGUISED = {  # contents no suffix makes a document
    "PNG": PNG, "ZIP": ZIP, "ELF": b"\x7fELF\x02\x01\x01" + b"\x00" * 50, "NULs": b"\x00\x01\x02\x03binary" * 20,
    "empty": b"",
}


def upload_and_load(tmp_path: Path, name: str,
                    data: bytes) -> tuple[SavedUpload | UploadRejected, Document | LoadError]:
    try:
        saved: SavedUpload | UploadRejected = save_upload(tmp_path / "docs", name, data, max_bytes=10**6)
    except UploadRejected as err:
        saved = err
    try:
        doc: Document | LoadError = parse(name, data)
    except LoadError as err:
        doc = err
    return saved, doc


def test_the_supported_suffixes_are_the_formats_table():
    assert set(GOOD) == set(FORMATS)
    assert SUPPORTED_SUFFIXES == {s for f in FORMATS.values() for s in f.suffixes}
    assert all(SUFFIX_KINDS[s] == kind for kind, f in FORMATS.items() for s in f.suffixes)


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES))
def test_upload_and_loader_read_a_good_file_of_every_suffix_as_the_same_kind(tmp_path, suffix):
    kind = SUFFIX_KINDS[suffix]
    data = GOOD[kind]()
    saved, doc = upload_and_load(tmp_path, "doc" + suffix, data)
    assert isinstance(saved, SavedUpload) and isinstance(doc, Document)
    assert saved.kind == doc.kind == sniff_kind(data, "doc" + suffix) == kind


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES))
@pytest.mark.parametrize("content", sorted(set(GOOD) | set(DISGUISED)))
def test_what_the_upload_accepts_the_loader_reads_as_the_same_kind(tmp_path, suffix, content):
    """Every supported suffix × every content: an accepted upload is read by the ingest as the kind
    the upload recorded; content the loader refuses is refused at the upload too."""
    data = GOOD[content]() if content in GOOD else DISGUISED[content]
    saved, doc = upload_and_load(tmp_path, "doc" + suffix, data)
    if isinstance(saved, SavedUpload):
        assert isinstance(doc, Document), doc
        assert doc.kind == saved.kind
    if isinstance(doc, LoadError):
        assert isinstance(saved, UploadRejected)


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES))
@pytest.mark.parametrize("content", sorted(DISGUISED))
def test_disguised_content_is_refused_by_both_naming_what_it_looks_like(tmp_path, suffix, content):
    data = DISGUISED[content]
    saved, doc = upload_and_load(tmp_path, "doc" + suffix, data)
    assert isinstance(saved, UploadRejected) and isinstance(doc, LoadError)
    looks = sniff_type(data)
    if looks not in ("binary data", "an empty file"):
        assert looks in saved.reason and looks in doc.reason


@pytest.mark.parametrize("name, content", [("page.pdf", "html"), ("page.pdf", "md"), ("page.pdf", "txt")])
def test_text_named_pdf_is_refused_by_both(tmp_path, name, content):
    saved, doc = upload_and_load(tmp_path, name, GOOD[content]())
    assert isinstance(saved, UploadRejected) and isinstance(doc, LoadError)
    assert "rename" in saved.fix and doc.reason.startswith("not a PDF")


def test_save_upload_strips_path_traversal(tmp_path):
    docs = tmp_path / "docs"
    saved = save_upload(docs, "../../etc/x.pdf", PDF, max_bytes=LIMIT)
    assert saved.source == "x.pdf" and saved.kind == "pdf"
    assert (docs / "x.pdf").read_bytes() == PDF
    assert not (tmp_path / "etc").exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x.pdf"]  # no temp file left


def test_save_upload_size_limit_is_exact(tmp_path):
    at_limit = b"a" * LIMIT
    assert save_upload(tmp_path, "ok.txt", at_limit, max_bytes=LIMIT).size == LIMIT
    with pytest.raises(UploadRejected) as err:
        save_upload(tmp_path, "big.txt", b"b" * (LIMIT + 1), max_bytes=LIMIT)
    assert "too large" in err.value.reason.lower() or "limit" in err.value.reason.lower()
    assert not (tmp_path / "big.txt").exists()


@pytest.mark.parametrize("name, data, words", [
    ("photo.pdf", PNG, "PNG"),
    ("archive.txt", ZIP, "ZIP"),
    ("real.txt", PDF, "rename"),
    ("page.md", b"<!DOCTYPE html><html><body>x</body></html>", "rename"),
    ("tool.exe", b"MZ\x90\x00", "unsupported"),
    ("empty.md", b"", "empty"),
])
def test_save_upload_rejects_wrong_types_with_a_reason(tmp_path, name, data, words):
    with pytest.raises(UploadRejected) as err:
        save_upload(tmp_path, name, data, max_bytes=LIMIT)
    assert words.lower() in str(err.value).lower()
    assert list(tmp_path.iterdir()) == []


def test_save_upload_never_overwrites_a_different_file(tmp_path):
    (tmp_path / "notes.md").write_text("# mine\n\nkeep me")
    saved = save_upload(tmp_path, "notes.md", b"# theirs\n\nnew text", max_bytes=LIMIT)
    assert saved.source == "notes-1.md" and saved.renamed_from == "notes.md"
    assert (tmp_path / "notes.md").read_text() == "# mine\n\nkeep me"
    again = save_upload(tmp_path, "notes.md", b"# third\n\nother text", max_bytes=LIMIT)
    assert again.source == "notes-2.md"


def test_save_upload_rejects_duplicates_by_hash(tmp_path):
    data = b"# Zebra\n\nStripes."
    with pytest.raises(UploadRejected) as err:
        save_upload(tmp_path, "copy.md", data, max_bytes=LIMIT,
                    existing_hashes={hashlib.sha256(data).hexdigest(): "zebra.md"})
    assert "duplicate" in err.value.reason and "zebra.md" in err.value.reason
    save_upload(tmp_path, "zebra.md", data, max_bytes=LIMIT)
    with pytest.raises(UploadRejected, match="already saved as zebra.md"):
        save_upload(tmp_path, "zebra.md", data, max_bytes=LIMIT)  # same name, same bytes, not yet indexed


def test_save_upload_does_not_follow_a_planted_symlink(tmp_path):
    docs, outside = tmp_path / "docs", tmp_path / "outside.txt"
    docs.mkdir()
    outside.write_text("secret")
    os.symlink(outside, docs / "x.txt")
    saved = save_upload(docs, "x.txt", b"uploaded text", max_bytes=LIMIT)
    assert saved.source == "x-1.txt"
    assert outside.read_text() == "secret"


def test_delete_document_only_inside_the_folder(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "a.md").write_text("a")
    (tmp_path / "victim.md").write_text("v")
    for bad in ["../victim.md", "/etc/passwd", "sub/../../victim.md", "", "missing.md"]:
        with pytest.raises(DocumentError):
            delete_document(docs, bad)
    assert (tmp_path / "victim.md").exists()
    assert delete_document(docs, "sub/a.md") == (docs / "sub" / "a.md").resolve()
    assert not (docs / "sub" / "a.md").exists()


def test_delete_document_removes_a_link_not_its_target(tmp_path):
    docs, target = tmp_path / "docs", tmp_path / "target.md"
    docs.mkdir()
    target.write_text("t")
    os.symlink(target, docs / "link.md")
    delete_document(docs, "link.md")
    assert target.exists() and not (docs / "link.md").is_symlink()


def test_documents_folder_precedence():
    assert documents_folder("mine", {"folder": "/x"}) == Path("mine")
    assert documents_folder(None, {"folder": "/x"}) == Path("/x")
    assert documents_folder(None, {}) == Path("documents")


def test_cited_page_finds_the_quote_on_its_page():
    doc = Document("r.pdf", "pdf", (Page(1, "First page."), Page(2, "GGUF stores weights. The end.")), paginated=True)
    start = doc.page_starts[1]
    chunk = Chunk("c", "r.pdf", doc.text[start:], start, len(doc.text), (2,))
    span = cited_page(doc, chunk, quote_start=0, quote_len=len("GGUF stores weights."))
    assert span.number == 2 and span.text[span.start:span.end] == "GGUF stores weights."
    stale = Chunk("c", "r.pdf", "something else", start, start + 14, (2,))
    with pytest.raises(DocumentError):
        cited_page(doc, stale, 0, 4)


class FakePipe:
    """The two things add_documents / remove_document use: the index's file hashes and ingest."""

    def __init__(self, fail_sources=(), error: Exception | None = None):
        self.fail_sources, self.error, self.calls = set(fail_sources), error, []

    @property
    def index(self):
        from rag.errors import IndexMissingError

        raise IndexMissingError("no index yet")

    def ingest(self, folder, progress=None):
        self.calls.append(sorted(p.name for p in Path(folder).iterdir()))
        if self.error:
            raise self.error
        report = type("Report", (), {})()
        report.failed = [Failure(s, "no text to index") for s in self.fail_sources]
        report.skipped = [Failure(p.name, "hidden file", kind="skipped") for p in Path(folder).glob(".*")]
        return report


def test_add_documents_keeps_good_files_reports_bad_ones(tmp_path):
    pipe = FakePipe(fail_sources={"scan.pdf"})
    result = add_documents(pipe, tmp_path, [("good.md", b"# Good\n\ntext"), ("bad.pdf", PNG), ("scan.pdf", PDF),
                                            ("dup.md", b"# Good\n\ntext")], max_bytes=LIMIT)
    assert [s.source for s in result.saved] == ["good.md"]
    assert {r.name for r in result.rejected} == {"bad.pdf", "dup.md"}
    assert [f.source for f in result.failed] == ["scan.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.md"]  # the unreadable upload is gone again
    assert pipe.calls == [["good.md", "scan.pdf"]]


def test_add_documents_is_all_or_nothing_when_the_ingest_fails(tmp_path):
    from rag.errors import IndexLockedError

    pipe = FakePipe(error=IndexLockedError("another ingest is writing"))
    with pytest.raises(IndexLockedError):
        add_documents(pipe, tmp_path, [("a.md", b"# A\n\ntext")], max_bytes=LIMIT)
    assert list(tmp_path.iterdir()) == []


def test_remove_document_puts_the_file_back_when_the_ingest_fails(tmp_path):
    from rag.errors import IngestError

    (tmp_path / "only.md").write_text("# Only\n\ntext")
    with pytest.raises(IngestError):
        remove_document(FakePipe(error=IngestError("no supported documents")), tmp_path, "only.md")
    assert (tmp_path / "only.md").read_text() == "# Only\n\ntext"
    (tmp_path / "other.md").write_text("# Other\n\ntext")
    pipe = FakePipe()
    report = remove_document(pipe, tmp_path, "only.md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.md"]
    assert report.skipped == []  # the set-aside file is not reported
    assert len(pipe.calls) == 1 and pipe.calls[0][1:] == ["other.md"] and pipe.calls[0][0].startswith(".deleting-")


def test_queries_keep_working_while_an_upload_is_ingested(tmp_path):
    """The upload's ingest holds the index lock for seconds; another session's questions are answered
    from the live generation meanwhile, and see the new document once it is committed."""
    import threading
    import time

    from rag.config import load_config
    from rag.pipeline import Pipeline
    from rag.testing import FakeEmbedder
    from tests.conftest import write_docs

    cfg = load_config(env={}, overrides={"index_dir": str(tmp_path / "index"), "embed_model": "fake-embedder",
                                         "rerank": False, "chunk_tokens": 40, "chunk_overlap_tokens": 0})
    docs = write_docs(tmp_path / "docs", {"quant.md": "# Quantization\n\nA 7B model in Q4_K_M needs about 4.8 GB."})
    reader = Pipeline(cfg, embedder=FakeEmbedder(), generator=None, reranker=None)
    reader.ingest(docs)
    writer = Pipeline(cfg, embedder=FakeEmbedder(delay=0.05, batch_size=1), generator=None, reranker=None)
    otters = "# Otters\n\n" + "\n\n".join(f"Sea otters hold hands while sleeping, fact number {i}." for i in range(40))
    result = {}
    ingest = threading.Thread(target=lambda: result.update(
        add=add_documents(writer, docs, [("otters.md", otters.encode())], max_bytes=10**6)))
    ingest.start()
    lock = tmp_path / "index" / ".lock"
    deadline = time.monotonic() + 10
    while not (lock.exists() and lock.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lock.read_bytes(), "the ingest never took the lock"
    answers = []
    while ingest.is_alive():
        answers.append(reader.ask("How much memory does a 7B model need in Q4_K_M?"))
    ingest.join()
    assert answers and all("4.8 GB" in a.text for a in answers)
    assert [s.source for s in result["add"].saved] == ["otters.md"]
    assert "otters.md" in {f.source for f in reader.index.files()}  # the reader switched generations
