"""Uploads and the documents folder: what the UI may write, and where.

    saved = save_upload(docs, "../../etc/report.pdf", data, max_bytes=limit, existing_hashes=hashes)
    saved.source   # 'report.pdf' — always a plain name inside `docs`, never a path out of it

The rules, each a pure function the UI calls (and the tests call directly):

- `sanitize_filename` keeps only the last path component, drops control and shell-hostile
  characters and leading dots (hidden files are skipped by the ingest), and bounds the length;
- `sniff_kind` decides the type from the bytes: PDF by its `%PDF` magic, HTML by its opening tags,
  Markdown/text by decoding as text; archives, images and other binaries are refused whatever
  their name says, and the name's suffix must agree with the content (the loader parses by suffix);
- `save_upload` refuses files over the size limit and content already in the collection (by
  SHA-256, the hash the ingest records), never writes outside `docs_dir` and never overwrites:
  a taken name gets a `-1`, `-2`… suffix. The file appears whole or not at all (written to a hidden
  temporary file, then hard-linked into place), so a concurrent ingest never reads half a file;
- `delete_document` removes one document file, only inside `docs_dir`;
- `documents_folder` says which folder a collection's documents live in;
- `load_document` and `cited_page` find the page a citation points into, for the page viewer.

Deliberately skipped: virus scanning, quotas per user, and content checks beyond the type (a
well-formed PDF can still fail to parse; the ingest reports that with its reason).
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping

from rag.errors import LoadError, RagError
from rag.records import Chunk, Document

DEFAULT_DOCS_DIR = Path("documents")
MAX_NAME_CHARS = 120  # well under the 255-byte limit of common file systems, even in UTF-8 CJK
KIND_SUFFIXES = {"pdf": (".pdf",), "html": (".html", ".htm"), "md": (".md", ".markdown"), "txt": (".txt",)}
UPLOAD_SUFFIXES = tuple(s for suffixes in KIND_SUFFIXES.values() for s in suffixes)


class UploadRejected(RagError):
    """An uploaded file that was not stored; `reason` says why, `fix` what to do."""

    def __init__(self, name: str, reason: str, fix: str = "") -> None:
        self.name, self.reason, self.fix = name, reason, fix
        super().__init__(f"{name}: {reason}" + (f" (fix: {fix})" if fix else ""))


class DocumentError(RagError):
    """A document file that cannot be deleted or opened (not found, outside the folder…)."""


@dataclass(frozen=True)
class SavedUpload:
    source: str  # the name inside docs_dir: what the ingest will call the document
    path: Path
    kind: str  # pdf | html | md | txt
    sha256: str
    size: int
    renamed_from: str = ""  # the sanitized name, when it was taken and a suffix was added


# --- names ------------------------------------------------------------------------------------------

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\/]')  # controls, and characters Windows or shells trip on
_SPACES = re.compile(r"\s+")


def sanitize_filename(name: str) -> str:
    """A plain file name that is safe to create inside a folder.

    >>> sanitize_filename("../../etc/x.pdf"), sanitize_filename("C:\\\\Users\\\\me\\\\notes.md")
    ('x.pdf', 'notes.md')
    >>> sanitize_filename(".bashrc.txt"), sanitize_filename("a<b>|c?.html"), sanitize_filename("..")
    ('bashrc.txt', 'a_b__c_.html', 'upload')

    Only the last component of a '/' or '\\' path is kept; the result never starts with a dot,
    holds no separators or control characters, and is at most MAX_NAME_CHARS long (suffix kept).
    """
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base)
    base = _SPACES.sub(" ", base).strip(" .")  # leading dots hide a file; trailing ones vanish on Windows
    if not base or set(base) <= {"_", "."}:
        return "upload"
    stem, suffix = _split_suffix(base)
    if len(base) > MAX_NAME_CHARS:
        stem = stem[: MAX_NAME_CHARS - len(suffix)].rstrip(" .") or "upload"
    return stem + suffix


def _split_suffix(name: str) -> tuple[str, str]:
    suffix = PurePosixPath(name).suffix
    if not suffix or len(suffix) > 12:
        return name, ""
    return name[: -len(suffix)], suffix


def _numbered(name: str, n: int) -> str:
    """'report.pdf', 2 → 'report-2.pdf'."""
    stem, suffix = _split_suffix(name)
    return f"{stem}-{n}{suffix}"


# --- types ------------------------------------------------------------------------------------------

_HTML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]",
                         re.IGNORECASE | re.DOTALL)


def _classify(data: bytes, name: str) -> tuple[str | None, str]:
    """(kind, '') or (None, why the content is not a document we read)."""
    from rag.ingest.load import decode_text, sniff_type

    if not data:
        return None, "empty file"
    looks = sniff_type(data)
    if looks == "PDF":
        return "pdf", ""
    if looks not in ("plain text", "HTML", "XML", "binary data"):
        return None, f"the content is a {looks}, not a document"
    try:
        decode_text(name, data)  # BOMs, UTF-16, legacy encodings: what the loader accepts
    except LoadError as err:
        return None, err.reason
    if looks == "HTML" or _HTML_START.match(data[:4096]):
        return "html", ""
    return "text", ""


def sniff_kind(data: bytes, name: str) -> str | None:
    """'pdf', 'html', 'md' or 'txt' from the content (the name only tells Markdown from text),
    or None for anything else.

    >>> sniff_kind(b"%PDF-1.7 ...", "a.pdf"), sniff_kind(b"<!DOCTYPE html><p>hi", "a.html")
    ('pdf', 'html')
    >>> sniff_kind(b"# Title", "a.md"), sniff_kind(b"hello", "a.txt"), sniff_kind(b"\\x89PNG\\r\\n", "a.pdf")
    ('md', 'txt', None)

    The content decides: a PDF named .txt is 'pdf' and a PNG named .pdf is None.
    """
    kind, _ = _classify(data, name)
    if kind == "text":
        return "md" if PurePosixPath(name).suffix.lower() in KIND_SUFFIXES["md"] else "txt"
    return kind


def _check_type(name: str, data: bytes) -> str:
    """The kind of an upload whose suffix agrees with its content, else UploadRejected."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UploadRejected(name, f"unsupported file type ({suffix or 'no suffix'})",
                             "upload PDF, Markdown (.md), text (.txt) or HTML files")
    kind, why = _classify(data, name)
    if kind is None:
        raise UploadRejected(name, why, "upload a PDF, Markdown, text or HTML file")
    if kind == "text":
        kind = "md" if suffix in KIND_SUFFIXES["md"] else "txt" if suffix == ".txt" else "html"
    if suffix not in KIND_SUFFIXES[kind]:
        wanted = KIND_SUFFIXES[kind][0]
        raise UploadRejected(name, f"the name ends in {suffix} but the content is {kind.upper()}",
                             f"rename it to end in {wanted}")
    return kind


# --- saving -----------------------------------------------------------------------------------------


def _inside(root: Path, path: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return path != root


def _same_content(path: Path, digest: str) -> bool:
    try:
        if not path.is_file() or path.is_symlink():
            return False
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest() == digest
    except OSError:
        return False


def save_upload(docs_dir: str | Path, name: str, data: bytes, *, max_bytes: int,
                existing_hashes: Mapping[str, str] | None = None) -> SavedUpload:
    """Store one uploaded file in `docs_dir`, or raise UploadRejected with the reason.

    `existing_hashes` maps SHA-256 hex digests of documents already in the collection to their
    source names (the index's FileRecord.hash); content found there is rejected as a duplicate.
    """
    shown = sanitize_filename(name)
    if len(data) > max_bytes:
        from rag.ingest.load import too_large_reason

        raise UploadRejected(shown, too_large_reason(len(data), max_bytes),
                             "raise RAG_MAX_FILE_MB (max_file_mb) or split the file")
    kind = _check_type(shown, data)
    digest = hashlib.sha256(data).hexdigest()
    if existing_hashes and digest in existing_hashes:
        raise UploadRejected(shown, f"duplicate: the same content is already in the collection as "
                                    f"{existing_hashes[digest]}", "nothing to do")
    root = Path(docs_dir)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    tmp = root / f".upload-{secrets.token_hex(8)}.part"  # hidden: the ingest skips it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        for n in range(1000):
            candidate = shown if n == 0 else _numbered(shown, n)
            target = root / candidate
            if not _inside(root, target.parent.resolve() / target.name):
                raise UploadRejected(shown, "the name points outside the documents folder", "rename the file")
            if _same_content(target, digest):
                raise UploadRejected(shown, f"duplicate: the same content is already saved as {candidate}",
                                     "nothing to do")
            try:
                os.link(tmp, target, follow_symlinks=False)  # fails if the name exists: never overwrites
            except FileExistsError:
                continue
            return SavedUpload(candidate, target, kind, digest, len(data), shown if n else "")
        raise UploadRejected(shown, "too many files with this name in the documents folder", "rename the file")
    finally:
        tmp.unlink(missing_ok=True)


def delete_target(docs_dir: str | Path, source: str) -> Path:
    """The file of document `source` inside `docs_dir`, or DocumentError when the name leaves the
    folder ('../x', absolute paths) or names no file."""
    root = Path(docs_dir).resolve()
    rel = PurePosixPath(source)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts or "\\" in source:
        raise DocumentError(f"{source!r} is not a document name inside {root}")
    path = root.joinpath(*rel.parts)
    if not _inside(root, path.parent.resolve() / path.name):
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


# --- the documents folder and the page viewer -------------------------------------------------------


def documents_folder(docs_dir: str | Path | None, manifest: Mapping | None = None) -> Path:
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
    from rag.ingest.load import FoundFile, parse, read_bytes

    root = Path(docs_dir).resolve()
    rel = PurePosixPath(source)
    path = root.joinpath(*rel.parts)
    if rel.is_absolute() or ".." in rel.parts or not _inside(root, path.parent.resolve() / path.name):
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
    return PageSpan(page.number, page.text, a, b)


# --- uploads and deletions as the UI runs them: save, then the same incremental ingest -------------


@dataclass
class AddResult:
    saved: list[SavedUpload]  # stored and indexed
    rejected: list[UploadRejected]  # not stored: size, type, duplicate…
    failed: list  # rag.records.Failure: stored, but the ingest could not read them, so removed again
    report: object = None  # the IngestReport, or None when nothing was stored


def collection_hashes(pipe) -> dict[str, str]:
    """SHA-256 → source of every indexed document ({} when there is no index yet)."""
    from rag.errors import IndexMissingError

    try:
        return {f.hash: f.source for f in pipe.index.files()}
    except IndexMissingError:
        return {}


def add_documents(pipe, docs_dir: str | Path, files: list[tuple[str, bytes]], *, max_bytes: int,
                  progress=None) -> AddResult:
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


def remove_document(pipe, docs_dir: str | Path, source: str, *, progress=None):
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
