"""The collection: the documents folder and its index, kept in step, as the UI changes them.

    result = add_documents(pipe, docs, [("report.pdf", data)], max_bytes=limit)
    result.saved, result.rejected, result.failed   # indexed · not stored (why) · unreadable, removed

- `add_documents` saves uploads (`rag.ingest.upload`) and runs the same incremental ingest, under
  the same lock, as `python -m rag.ingest`; `remove_document` deletes a file and re-ingests; either
  undoes its file changes when the ingest fails, so the folder and the index never disagree;
- `delete_document` / `delete_target` remove or find one document file, only inside the folder;
- `documents_folder` says which folder a collection's documents live in;
- `load_document` and `cited_page` find the page and span a citation points into, for the page
  viewer. They sit here, not in app/, because they are library logic the tests reach without
  Streamlit; `app.pdfpage` only draws the page image.

Which collection (folder and index) is in use is rag.collections' business: this module works on
whichever Pipeline and folder it is given.

Deliberately skipped: several folders per collection, and moving or renaming documents (delete and
upload again).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from rag.errors import IndexMissingError, LoadError, RagError
from rag.ingest.discover import FoundFile, read_bytes
from rag.ingest.parse import parse
from rag.ingest.upload import SavedUpload, UploadRejected, inside, save_upload
from rag.records import Chunk, Document, Failure

if TYPE_CHECKING:
    from rag.ingest.build import IngestReport, Progress
    from rag.pipeline import Pipeline

DEFAULT_DOCS_DIR = Path("documents")


class DocumentError(RagError):
    """A document file that cannot be deleted or opened (not found, outside the folder…)."""


# --- deleting ---------------------------------------------------------------------------------------


def delete_target(docs_dir: str | Path, source: str) -> Path:
    """The file of document `source` inside `docs_dir`, or DocumentError when the name leaves the
    folder ('../x', absolute paths) or names no file."""
    root = Path(docs_dir).resolve()
    rel = PurePosixPath(source)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts or "\\" in source:
        raise DocumentError(f"{source!r} is not a document name inside {root}")
    path = root.joinpath(*rel.parts)
    if not inside(root, path.parent.resolve() / path.name):
        raise DocumentError(f"{source!r} is outside the documents folder {root}")
    if not (path.is_symlink() or path.is_file()):
        raise DocumentError(f"{source} is not in {root} (already deleted, or the index was built from "
                            "another folder; fix: set RAG_DOCS_DIR to the collection's documents folder)")
    return path


def delete_document(docs_dir: str | Path, source: str) -> Path:
    """Remove the file of document `source` (a path relative to `docs_dir`) and return its path.

    Raises DocumentError for names that leave the folder or name no file. A symlinked document
    loses its link, never the file the link points to.
    """
    path = delete_target(docs_dir, source)
    path.unlink()
    return path


# --- the documents folder and the page viewer --------------------------------------------------------


def documents_folder(docs_dir: str | Path | None, manifest: Mapping[str, Any] | None = None) -> Path:
    """Where a collection's documents live: the configured docs_dir, else the folder the index
    was last ingested from (its manifest's 'folder'), else ./documents.

    >>> documents_folder(None, {"folder": "/data/docs"}), documents_folder("mine", {"folder": "/x"})
    (PosixPath('/data/docs'), PosixPath('mine'))
    """
    if docs_dir:
        return Path(docs_dir)
    folder = (manifest or {}).get("folder")
    return Path(folder) if folder else DEFAULT_DOCS_DIR


def load_document(docs_dir: str | Path, source: str, *, max_bytes: int, sha256: str = "") -> Document:
    """Parse document `source` again from the documents folder (for the page viewer).

    With `sha256` (the index's FileRecord.hash), a file changed since the ingest raises
    DocumentError: offsets stored in the index would point to the wrong text.
    """
    root = Path(docs_dir).resolve()
    rel = PurePosixPath(source)
    path = root.joinpath(*rel.parts)
    if rel.is_absolute() or ".." in rel.parts or not inside(root, path.parent.resolve() / path.name):
        raise DocumentError(f"{source!r} is outside the documents folder {root}")
    try:
        data = read_bytes(FoundFile(path, source), max_bytes=max_bytes)
    except LoadError as err:
        raise DocumentError(str(err)) from err
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise DocumentError(f"{source} changed since it was indexed (fix: run the ingest again)")
    try:
        return parse(source, data)
    except LoadError as err:
        raise DocumentError(str(err)) from err


@dataclass(frozen=True)
class PageSpan:
    number: int  # 1-based page number
    text: str  # the whole page's text
    start: int  # the quote is text[start:end]; start == end when it could not be placed
    end: int
    label: str = ""  # the printed page number (Page.label), '' when the PDF defines none


def cited_page(doc: Document, chunk: Chunk, quote_start: int, quote_len: int) -> PageSpan:
    """The page holding a citation's quote, with the quote's span inside the page text.

    `quote_start` is the quote's offset inside `chunk.text` (Citation.quote_start). A quote that
    runs over a page break is cut at the end of its first page. Raises DocumentError when the
    chunk is not where the index says it is in `doc` (the file changed since the ingest).
    """
    text = doc.text
    if text[chunk.start:chunk.end] != chunk.text:
        raise DocumentError(f"{doc.source} no longer matches its index entry (fix: run the ingest again)")
    at = chunk.start + max(0, min(quote_start, len(chunk.text)))
    starts = doc.page_starts
    i = max((k for k, s in enumerate(starts) if s <= at), default=0)
    page = doc.pages[i]
    a = min(at - starts[i], len(page.text))
    b = min(a + max(0, quote_len), len(page.text))
    return PageSpan(page.number, page.text, a, b, page.label)


# --- uploads and deletions as the UI runs them: save, then the same incremental ingest -------------


@dataclass
class AddResult:
    saved: list[SavedUpload]  # stored and indexed
    rejected: list[UploadRejected]  # not stored: size, type, duplicate…
    failed: list[Failure]  # stored, but the ingest could not read them, so removed again
    report: IngestReport | None = None  # None when nothing was stored


def collection_hashes(pipe: Pipeline) -> dict[str, str]:
    """SHA-256 → source of every indexed document ({} when there is no index yet)."""
    try:
        return {f.hash: f.source for f in pipe.index.files()}
    except IndexMissingError:
        return {}


def add_documents(pipe: Pipeline, docs_dir: str | Path, files: list[tuple[str, bytes]], *, max_bytes: int,
                  progress: Progress | None = None) -> AddResult:
    """Save uploaded (name, bytes) pairs into `docs_dir` and run the incremental ingest over it.

    `pipe` is a rag.pipeline.Pipeline: its `ingest` is the code and the lock `python -m rag.ingest`
    uses. An upload the ingest cannot read (a PDF without text…) is removed again and returned in
    `failed` with the loader's reason. When the ingest itself fails (another ingest holds the lock,
    a disk error) every file saved here is removed and the RagError propagates: all or nothing.
    """
    hashes = collection_hashes(pipe)
    result = AddResult([], [], [])
    for name, data in files:
        try:
            saved = save_upload(docs_dir, name, data, max_bytes=max_bytes, existing_hashes=hashes)
        except UploadRejected as err:
            result.rejected.append(err)
            continue
        hashes[saved.sha256] = saved.source
        result.saved.append(saved)
    if not result.saved:
        return result
    try:
        report = pipe.ingest(docs_dir, progress=progress)
    except RagError:
        for s in result.saved:
            s.path.unlink(missing_ok=True)
        raise
    mine = {s.source: s for s in result.saved}
    result.failed = [f for f in report.failed if f.source in mine]
    for f in result.failed:
        mine.pop(f.source).path.unlink(missing_ok=True)
    result.saved = list(mine.values())
    result.report = report
    return result


def remove_document(pipe: Pipeline, docs_dir: str | Path, source: str, *,
                    progress: Progress | None = None) -> IngestReport:
    """Delete document `source` from `docs_dir` and from the index; returns the IngestReport.

    The file is first set aside under a hidden name (the ingest skips hidden files); when the ingest
    fails — the last document of a collection, another ingest holding the lock — it is put back, so
    the folder and the index never disagree.
    """
    root = Path(docs_dir).resolve()
    path = delete_target(root, source)
    aside = path.with_name(f".deleting-{secrets.token_hex(4)}-{path.name}")
    os.rename(path, aside)
    try:
        report = pipe.ingest(root, progress=progress)
    except RagError:
        os.rename(aside, path)
        raise
    aside.unlink(missing_ok=True)
    report.skipped = [f for f in report.skipped if ".deleting-" not in f.source]
    return report
