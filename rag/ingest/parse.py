"""Parse: bytes → `Document`, by the file's kind; the one table of what the ingest reads.

    doc = parse("guide/intro.md", data)        # a Document with pages, title and kind 'md'

`FORMATS` maps each kind to its suffixes and its parser (`rag.ingest.pdf`, `rag.ingest.html`,
`rag.ingest.decode` for Markdown and plain text, `rag.ingest.office` for Word, Excel, CSV and
PowerPoint); discovery, the loader and the upload check all read it, so a new format is one row
here. `parse` picks the parser by the
name's suffix, as the ingest always has; `content_kind` is what the bytes say they are, which the
upload check holds the suffix to.

Every bad input raises `LoadError(source, reason, fix)`; the ingest reports it and goes on.
Deliberately skipped: EPUB and the old binary Office formats (.doc, .xls, .ppt), and parsing by
content when the suffix disagrees (a parser refuses what is plainly not its format, e.g. a PNG
named .pdf).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from rag.errors import LoadError
from rag.ingest.decode import decode_text, parse_text, sniff_type
from rag.ingest.html import parse_html
from rag.ingest.office import MAIN_PART, open_container, parse_csv, parse_docx, parse_pptx, parse_xlsx
from rag.ingest.pdf import parse_pdf
from rag.records import Document

if TYPE_CHECKING:
    from rag.ingest.ocr import PdfOcr

Kind = Literal["pdf", "html", "md", "txt", "docx", "xlsx", "csv", "pptx"]  # Document.kind

# Recorded in every index manifest (rag.ingest.build.settings_signature), like the tokenizer's:
# bump it whenever a parser gives different pages, text or labels for the same bytes, so the next
# ingest parses every file again instead of keeping what an older parser made of it.
# 2: printed page labels; the CJK Radicals Supplement folded in PDF text (rag.text.RADICAL_TABLE).
# 3: ruled PDF tables one row a paragraph (rag.ingest.pdf_tables).
# 4: Chinese PDF wraps and layout gaps joined (rag.ingest.cjk_layout), running headers and footers
#    removed (rag.ingest.furniture), PDF titles from the largest text of page 1.
EXTRACT_VERSION = "4"


@dataclass(frozen=True)
class Format:
    suffixes: tuple[str, ...]  # lower case, with the dot; the first is the one to rename to
    parse: Callable[[str, bytes], Document]
    text: bool  # read as text, so text content with this suffix is this kind


FORMATS: dict[Kind, Format] = {
    "pdf": Format((".pdf",), parse_pdf, text=False),
    "html": Format((".html", ".htm"), parse_html, text=True),
    "md": Format((".md", ".markdown"), partial(parse_text, kind="md"), text=True),
    "txt": Format((".txt",), partial(parse_text, kind="txt"), text=True),
    "docx": Format((".docx",), parse_docx, text=False),
    "xlsx": Format((".xlsx",), parse_xlsx, text=False),
    "csv": Format((".csv",), parse_csv, text=True),
    "pptx": Format((".pptx",), parse_pptx, text=False),
}
# What users are told they can add, in error messages and fixes.
SUPPORTED_NAMES = "PDF, Word (.docx), Excel (.xlsx), CSV, PowerPoint (.pptx), Markdown, plain text or HTML"
SUFFIX_KINDS: dict[str, Kind] = {s: kind for kind, f in FORMATS.items() for s in f.suffixes}
SUPPORTED_SUFFIXES = frozenset(SUFFIX_KINDS)


def suffix_kind(name: str) -> Kind | None:
    """The kind a file name's suffix stands for, any case: 'a.HTM' → 'html'; None if unsupported."""
    return SUFFIX_KINDS.get(PurePosixPath(name).suffix.lower())


def parse(source: str, data: bytes, *, ocr: PdfOcr | None = None) -> Document:
    """Bytes → Document by suffix of `source`. Raises LoadError with reason and fix for every bad input.

    `ocr` (rag.ingest.ocr.load_ocr) reads the PDF pages that have no usable text layer; None: no OCR.
    """
    kind = suffix_kind(source)
    if kind is None:
        suffix = PurePosixPath(source).suffix.lower()
        raise LoadError(source, f"unsupported file type ({suffix or 'no suffix'})",
                        f"convert it to {SUPPORTED_NAMES}")
    if not data:
        raise LoadError(source, "empty file", "remove the file or add content to it")
    if kind == "pdf":
        return parse_pdf(source, data, ocr=ocr)
    return FORMATS[kind].parse(source, data)


# --- what the content is ----------------------------------------------------------------------------

_HTML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]",
                         re.IGNORECASE | re.DOTALL)


def content_kind(data: bytes, name: str) -> tuple[Kind | None, str]:
    """(kind, '') from the bytes, or (None, why they are no document the loader reads).

    PDF by its `%PDF` magic, HTML by its opening tags; other text (any encoding `decode_text`
    accepts) is the kind of a text suffix in `name`, Markdown, HTML or text, else 'txt'.
    Archives, images and other binaries are refused whatever the name says.
    """
    if not data:
        return None, "empty file"
    looks = sniff_type(data)
    if looks == "PDF":
        return "pdf", ""
    if looks.startswith(("ZIP", "old Office")):  # encrypted Office files are OLE containers
        return _office_kind(data, name, looks)
    if looks not in ("plain text", "HTML", "XML", "binary data"):
        return None, f"the content is a {looks}, not a document"
    try:
        decode_text(name, data)  # BOMs, UTF-16, legacy encodings: what the loader accepts
    except LoadError as err:
        return None, err.reason
    if looks == "HTML" or _HTML_START.match(data[:4096]):
        return "html", ""
    kind = suffix_kind(name)
    return (kind if kind is not None and FORMATS[kind].text else "txt"), ""


def _office_kind(data: bytes, name: str, looks: str) -> tuple[Kind | None, str]:
    """'docx', 'xlsx' or 'pptx' by the zip's main part, or (None, why): for a file named as
    that kind, the reason its parser would give (encrypted, damaged, a zip bomb)."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        names = set()
    office: tuple[Kind, ...] = ("docx", "xlsx", "pptx")
    found = next((k for k in office if MAIN_PART[k] in names), None) or suffix_kind(name)
    if found not in office:
        return None, f"the content is a {looks}, not a document"
    try:
        open_container(name, data, found).close()  # type: ignore[arg-type]  # found is in `office`
    except LoadError as err:
        return None, err.reason
    return found, ""


def sniff_kind(data: bytes, name: str) -> Kind | None:
    """'pdf', 'html', 'md' or 'txt' from the content (the name only tells the text kinds apart),
    or None for anything else.

    >>> sniff_kind(b"%PDF-1.7 ...", "a.pdf"), sniff_kind(b"<!DOCTYPE html><p>hi", "a.html")
    ('pdf', 'html')
    >>> sniff_kind(b"# Title", "a.md"), sniff_kind(b"hello", "a.txt"), sniff_kind(b"\\x89PNG\\r\\n", "a.pdf")
    ('md', 'txt', None)

    The content decides: a PDF named .txt is 'pdf' and a PNG named .pdf is None.
    """
    return content_kind(data, name)[0]
